"""Every training flag of the plugin, read from the configs fairseq builds its parser from (``translit-ppa
train-flags``).

fairseq 0.12 adds a task's, a criterion's and a model's options to ``fairseq-train``'s parser only after a first
parse, and that first parse already answers ``--help`` (``fairseq.options.parse_args_and_arch``), so
``fairseq-train --task translit_align --criterion mlm_seq_tlm --help`` lists none of them.  This module lists them
from the same sources: the dataclass fairseq registered for the task (``TASK_DATACLASS_REGISTRY``) and for the
criterion (``CRITERION_DATACLASS_REGISTRY``), the latter grouped by the loss-term unit that declares each field
(:data:`translit_plugin.method.terms.TERMS`), and, for the model, the ``add_args`` of the ``translit_roberta`` model
with the defaults the chosen architecture function sets.  Names, types, choices and defaults follow fairseq's
``gen_parser_from_dataclass``: a field ``anchor_layer`` is ``--anchor-layer``, ``data`` is the positional argument,
a ``bool`` is a switch, and a field whose default is an interpolation (``${common.seed}``) and that has no help is a
flag of another group (fairseq skips it too).
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import typing
from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

TASK = "translit_align"
CRITERION = "mlm_seq_tlm"
MODEL = "translit_roberta"
DEFAULT_ARCH = "translit_roberta_base"


@dataclass(frozen=True)
class Flag:
    """One command-line option as fairseq spells and parses it.

    ``name``: ``--anchor-layer`` (``data`` for the positional data directory); ``dest``: the config field;
    ``type``: ``int``, ``float``, ``str`` or ``switch`` (the flag takes no value and sets ``sets``: a ``bool`` field
    of a config is a switch that sets the opposite of its default); ``choices``: the allowed values (None: any);
    ``default``: the value when the flag is not given (None: unset); ``required``: no default (``data``); ``help``:
    the field's help text.
    """

    name: str
    dest: str
    type: str
    choices: tuple[str, ...] | None
    default: Any
    required: bool
    help: str
    sets: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["choices"] = list(self.choices) if self.choices is not None else None
        return out


@dataclass(frozen=True)
class FlagGroup:
    """The flags of one config: ``name`` (``task``, ``criterion``, ``criterion.seq``, ``model``) and a title."""

    name: str
    title: str
    flags: tuple[Flag, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "flags": [f.as_dict() for f in self.flags]}


def _plain(value: Any) -> Any:
    """A default as JSON has it (an Enum member as its value)."""
    return value.value if isinstance(value, enum.Enum) else value


def _unwrap_optional(kind: Any) -> Any:
    """``Optional[X]`` -> ``X`` (what fairseq's ``interpret_dc_type`` does)."""
    if typing.get_origin(kind) is typing.Union:
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return kind


def dataclass_flags(config: type, owner: dict[str, str] | None = None) -> list[tuple[str, Flag]]:
    """The flags of a fairseq config dataclass as ``(group key, flag)`` pairs, in field order.

    ``owner`` maps a field name to a group key (default ``""``).  Fields fairseq does not turn into flags of this
    config (``_name``, nested configs, interpolated defaults without help) are left out.
    """
    hints = typing.get_type_hints(config)
    out: list[tuple[str, Flag]] = []
    for f in dataclasses.fields(config):
        if f.name == "_name":
            continue
        kind = _unwrap_optional(hints.get(f.name, f.type))
        if dataclasses.is_dataclass(kind):
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = MISSING
        help_text = f.metadata.get("help")
        interpolated = isinstance(default, str) and default.startswith("${")
        if interpolated and help_text is None:
            continue  # another group's option (fairseq skips it as well)
        choices = None
        if isinstance(kind, type) and issubclass(kind, enum.Enum):
            choices, type_name = tuple(str(e.value) for e in kind), "str"
        elif kind is bool:
            type_name = "switch"
        elif kind in (int, float, str):
            type_name = kind.__name__
        else:
            raise TypeError(f"{config.__name__}.{f.name}: no flag listing for type {kind!r}")
        required = default is MISSING or default == MISSING
        out.append(((owner or {}).get(f.name, ""), Flag(
            name=f.name if f.name == "data" else "--" + f.name.replace("_", "-"),
            dest=f.name, type=type_name, choices=choices,
            default=None if required else _plain(default), required=required, help=help_text or "",
            sets=(default is not True) if kind is bool else None,
        )))  # fmt: skip
    return out


def _model_group(arch: str) -> FlagGroup:
    """The ``translit_roberta`` flags (its ``add_args``) with the defaults architecture ``arch`` gives them."""
    from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_REGISTRY

    if arch not in ARCH_MODEL_REGISTRY or ARCH_MODEL_REGISTRY[arch] is not ARCH_MODEL_REGISTRY[DEFAULT_ARCH]:
        known = sorted(a for a, m in ARCH_MODEL_REGISTRY.items() if m is ARCH_MODEL_REGISTRY[DEFAULT_ARCH])
        raise ValueError(f"unknown architecture {arch!r}; expected one of {', '.join(known)}")
    parser = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    ARCH_MODEL_REGISTRY[arch].add_args(parser)
    arch_defaults = parser.parse_args([])  # the defaults add_args gives explicitly, then the arch's, as fairseq does
    ARCH_CONFIG_REGISTRY[arch](arch_defaults)
    flags = []
    for action in parser._actions:
        name = max(action.option_strings, key=len)
        switch = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
        default = getattr(arch_defaults, action.dest, None)  # None: unset (fairseq leaves it out of the namespace)
        kind = "switch" if switch else getattr(action.type, "__name__", "str")
        kind = kind if kind in ("int", "float", "switch") else "str"  # argparse: no type = str, a parser = str
        flags.append(Flag(name=name, dest=action.dest, type=kind,
                          choices=tuple(map(str, action.choices)) if action.choices else None, default=default,
                          required=False, help=(action.help or "").replace("%(default)s", str(default)),
                          sets=bool(action.const) if switch else None))  # fmt: skip
    return FlagGroup("model", f"model (--arch {arch}; defaults of that architecture)", tuple(flags))


def flag_groups(arch: str = DEFAULT_ARCH) -> list[FlagGroup]:
    """Every flag of ``--task translit_align``, ``--criterion mlm_seq_tlm`` (the criterion's own flags, then one
    group per loss term) and ``--arch ARCH``, as fairseq registered them."""
    from fairseq.criterions import CRITERION_DATACLASS_REGISTRY
    from fairseq.tasks import TASK_DATACLASS_REGISTRY

    import translit_plugin.plugin  # noqa: F401  (registers the task, criterion and model)
    from translit_plugin.method.terms import TERMS

    groups = [FlagGroup("task", f"task (--task {TASK})", tuple(f for _, f in dataclass_flags(
        TASK_DATACLASS_REGISTRY[TASK])))]  # fmt: skip
    owner = {f.name: t.name for t in TERMS for f in dataclasses.fields(t.options)}
    crit = dataclass_flags(CRITERION_DATACLASS_REGISTRY[CRITERION], owner)
    groups.append(FlagGroup("criterion", f"criterion (--criterion {CRITERION}): passes and workers",
                            tuple(f for key, f in crit if key == "")))  # fmt: skip
    for term in TERMS:
        groups.append(FlagGroup(f"criterion.{term.name}", f"criterion {CRITERION}, loss term {term.name}",
                                tuple(f for key, f in crit if key == term.name)))  # fmt: skip
    groups.append(_model_group(arch))
    return groups


def select_groups(groups: list[FlagGroup], wanted: list[str] | None) -> list[FlagGroup]:
    """The groups ``wanted`` names: ``criterion`` is the criterion with every term, ``criterion.seq`` or ``seq`` one
    term.  An unknown name is a ``ValueError`` listing the known ones."""
    if not wanted:
        return groups
    names = [g.name for g in groups]

    def hit(group: str, sel: str) -> bool:
        return group == sel or group.startswith(sel + ".") or group.endswith("." + sel)

    unknown = [w for w in wanted if not any(hit(n, w) for n in names)]
    if unknown:
        raise ValueError(f"unknown group {', '.join(map(repr, unknown))}; expected one of {', '.join(names)}")
    return [g for g in groups if any(hit(g.name, w) for w in wanted)]


def _shown(flag: Flag) -> str:
    if flag.required:
        return "required"
    if flag.type == "switch" and flag.default is not None:
        return "on" if flag.default else "off"
    return "unset" if flag.default is None else repr(flag.default) if flag.default == "" else str(flag.default)


def _kind(flag: Flag) -> str:
    if flag.type == "switch":
        return f"switch (sets {'on' if flag.sets else 'off'})"
    return "|".join(flag.choices) if flag.choices else flag.type


def format_text(groups: list[FlagGroup]) -> str:
    """Plain text: per group a title, then per flag ``NAME  TYPE  (default: ...)`` and its help indented."""
    lines: list[str] = []
    for g in groups:
        lines.append(f"{g.title}:")
        for f in g.flags:
            lines.append(f"  {f.name}  {_kind(f)}  (default: {_shown(f)})")
            if f.help:
                lines.append(f"      {f.help}")
        lines.append("")
    return "\n".join(lines)


def format_markdown(groups: list[FlagGroup]) -> str:
    """Markdown: per group a heading and a table ``flag | type / choices | default | help``."""
    lines: list[str] = []
    for g in groups:
        lines += [f"### {g.title}", "", "| flag | type / choices | default | help |", "|---|---|---|---|"]
        for f in g.flags:
            cells = [f"`{f.name}`", _kind(f).replace("|", "\\|"), _shown(f), f.help.replace("|", "\\|")]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
