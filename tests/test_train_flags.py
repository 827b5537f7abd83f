"""``translit-ppa train-flags``: the list is complete (every config field, with its default and help), it is what
fairseq's own ``fairseq-train`` parser builds and accepts, and the flags README's training sections name exist.

The reference is fairseq itself: ``options.get_training_parser()`` + ``options.parse_args_and_arch`` with our
``--user-dir``, ``--task``, ``--criterion`` and ``--arch``, i.e. the parser ``fairseq-train`` uses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import io
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "translit_plugin"
README = REPO / "README.md"


@pytest.fixture(scope="module")
def groups():
    from translit_plugin.flags import flag_groups

    return flag_groups()


def by_name(groups) -> dict:
    return {f.name: f for g in groups for f in g.flags}


def fairseq_parse(extra: list[str], arch: str = "translit_roberta_base"):
    """fairseq-train's parser for our task, criterion and arch, and the namespace it gives ``extra``."""
    from fairseq import options

    parser = options.get_training_parser()
    argv = ["DATA", "--user-dir", str(PLUGIN), "--task", "translit_align", "--criterion", "mlm_seq_tlm",
            "--arch", arch, *extra]  # fmt: skip
    args = options.parse_args_and_arch(parser, argv)
    return parser, args


# ---------------------------------------------------------------------------------------------------------------
# complete: every field of the dataclasses, default and help


def _field_default(f: dataclasses.Field):
    value = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    return value.value if isinstance(value, enum.Enum) else value


def test_every_config_field_is_listed_with_its_default_and_help(groups):
    from translit_plugin.criterions.mlm_seq_tlm import PassOptions
    from translit_plugin.method.terms import TERMS
    from translit_plugin.tasks.translit_align import TranslitAlignConfig

    listed = {g.name: {f.dest: f for f in g.flags} for g in groups}
    sources = [("task", TranslitAlignConfig), ("criterion", PassOptions)]
    sources += [(f"criterion.{t.name}", t.options) for t in TERMS]
    skipped = []
    n = 0
    for group, config in sources:
        for f in dataclasses.fields(config):
            if f.name == "_name":
                continue
            default = _field_default(f)
            if isinstance(default, str) and default.startswith("${") and "help" not in f.metadata:
                skipped.append(f.name)  # fairseq adds these in another group (checked below)
                continue
            assert f.name in listed[group], f"{config.__name__}.{f.name} missing from group {group}"
            flag = listed[group][f.name]
            assert flag.help == f.metadata["help"], f.name
            if f.name == "data":
                assert flag.required and flag.name == "data"
            else:
                assert not flag.required and flag.default == default, (f.name, flag.default, default)
                assert flag.name == "--" + f.name.replace("_", "-")
            n += 1
    assert n == sum(len(g.flags) for g in groups if g.name != "model") and n > 30
    # the interpolated fields are fairseq's own options, not ours
    parser, _ = fairseq_parse([])
    assert skipped and all("--" + s.replace("_", "-") in parser._option_string_actions for s in skipped), skipped


def test_the_criterion_groups_are_the_loss_terms(groups):
    from translit_plugin.method.terms import TERMS

    names = [g.name for g in groups]
    assert names == ["task", "criterion", *[f"criterion.{t.name}" for t in TERMS], "model"]
    anchor = next(g for g in groups if g.name == "criterion.anchor")
    assert {f.name for f in anchor.flags} >= {"--anchor-weight", "--anchor-layer", "--anchor-prompt", "--anchor-loss"}
    assert all(f.name.startswith("--anchor-") for f in anchor.flags)


# ---------------------------------------------------------------------------------------------------------------
# the same as fairseq's parser, and accepted by it


def test_every_flag_is_the_option_fairseq_train_builds(groups):
    parser, args = fairseq_parse([])
    actions = parser._option_string_actions
    for flag in (f for g in groups for f in g.flags):
        if flag.name == "data":
            assert args.data == "DATA"
            continue
        assert flag.name in actions, f"{flag.name} is not an option of fairseq-train"
        action = actions[flag.name]
        assert action.dest == flag.dest
        assert action.help == flag.help or (action.help and "%(default)s" in action.help), flag.name
        if flag.type == "switch":
            assert action.nargs == 0 and action.const is flag.sets, flag.name
        else:
            assert action.type in ({"int": int, "float": float}.get(flag.type),) or flag.type == "str", flag.name
        if flag.choices is not None:
            assert [str(c) for c in action.choices] == list(flag.choices), flag.name
        # the listed default is what fairseq-train's namespace holds when the flag is not given (the arch applied)
        assert getattr(args, flag.dest, None) == flag.default, (flag.name, getattr(args, flag.dest, None))


def _other_value(flag):
    """A valid value other than the default, as a command-line string and as parsed."""
    if flag.choices:
        value = next(c for c in reversed(flag.choices) if c != flag.default)
        return value, value
    if flag.type == "int":
        return str((flag.default or 0) + 3), (flag.default or 0) + 3
    if flag.type == "float":
        return "0.375", 0.375
    return "some,text", "some,text"


def test_fairseq_train_accepts_every_listed_flag_with_a_value(groups):
    argv, expected = [], {}
    for flag in (f for g in groups for f in g.flags if f.name != "data"):
        if flag.type == "switch":
            argv.append(flag.name)
            expected[flag.dest] = flag.sets
        else:
            text, value = _other_value(flag)
            argv += [flag.name, text]
            expected[flag.dest] = value
    _, args = fairseq_parse(argv)  # a flag fairseq does not know would exit here (strict parse)
    got = {dest: getattr(args, dest) for dest in expected}
    assert got == expected


def test_the_model_group_follows_the_architecture():
    from translit_plugin.flags import flag_groups

    tiny = by_name(flag_groups("translit_roberta_tiny"))
    assert tiny["--encoder-layers"].default == 2 and tiny["--encoder-embed-dim"].default == 64
    _, args = fairseq_parse([], arch="translit_roberta_tiny")
    assert all(getattr(args, f.dest, None) == f.default for f in tiny.values() if f.name.startswith("--encoder-"))
    with pytest.raises(ValueError, match="unknown architecture 'roberta_base'"):
        flag_groups("roberta_base")


# ---------------------------------------------------------------------------------------------------------------
# README: the flags the training sections name exist (docs cannot drift)

OURS = ("anchor-", "seq-", "tlm-", "mlm-", "mask-")


def _expand(flag: str) -> list[str]:
    """``--{mlm-orig,seq}-weight`` -> ``["--mlm-orig-weight", "--seq-weight"]``."""
    m = re.search(r"\{([^{}]*)\}", flag)
    if not m:
        return [flag]
    return [x for alt in m.group(1).split(",") for x in _expand(flag[: m.start()] + alt + flag[m.end() :])]


def readme_flag_problems(text: str, known: dict) -> tuple[list[str], int]:
    """Flags of ours (``OURS`` prefixes) that ``text`` names but ``known`` lacks, values of a ``--flag a|b`` list that
    are not its choices; and how many flags were checked."""
    problems, checked = [], 0
    for raw in re.findall(r"--[a-z{][a-z0-9{},-]*[a-z0-9}]", text):
        for flag in _expand(raw):
            if flag[2:].startswith(OURS):
                checked += 1
                if flag not in known:
                    problems.append(f"{flag} (written {raw})")
    for flag, values in re.findall(r"(--[a-z][a-z0-9-]*) ([a-z0-9_]+(?:\|[a-z0-9_]+)+)", text):
        if flag in known and known[flag].choices is not None:
            problems += [f"{flag} {v}: not a choice" for v in values.split("|") if v not in known[flag].choices]
    return problems, checked


def training_sections() -> str:
    text = README.read_text(encoding="utf-8")
    start, end = text.index("\n## Training"), text.index("\n## Evaluation")
    return text[start:end]


def test_readme_training_flags_all_exist(groups):
    known = by_name(groups)
    problems, checked = readme_flag_problems(training_sections(), known)
    assert not problems, "README names flags that do not exist: " + "; ".join(problems)
    assert checked >= 20  # the sections do name them (a broken pattern would check nothing)
    assert "translit-ppa train-flags" in training_sections()


def test_a_misspelt_or_removed_flag_in_the_docs_is_caught(groups):
    known = by_name(groups)
    text = ("use `--anchor-layr 8`, `--{mlm-orig,mlm-latin}-weight`, `--seq-pooling mean_no_special|max` and "
            "`--tlm-weight 0`")  # fmt: skip
    problems, checked = readme_flag_problems(text, known)
    assert checked == 5
    assert problems == ["--anchor-layr (written --anchor-layr)",
                        "--mlm-latin-weight (written --{mlm-orig,mlm-latin}-weight)", "--seq-pooling max: not a choice"]


# ---------------------------------------------------------------------------------------------------------------
# the command


def run_cli(*argv: str) -> tuple[int, str, str]:
    from translit_plugin.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["train-flags", *argv])
    return code, out.getvalue(), err.getvalue()


def test_cli_formats(groups):
    code, out, _ = run_cli("--format", "json")
    assert code == 0
    data = json.loads(out)
    assert [g["name"] for g in data["groups"]] == [g.name for g in groups]
    assert data["groups"][0]["flags"][1] == groups[0].flags[1].as_dict()
    names = [f.name for g in groups for f in g.flags]
    code, text, _ = run_cli()
    assert code == 0 and all(f"  {n}  " in text for n in names)
    assert "  --anchor-layer  str  (default: 8)\n" in text
    code, md, _ = run_cli("--format", "markdown", "--group", "seq", "--group", "task")
    rows = [line for line in md.splitlines() if line.startswith("| `")]
    expected = [f for g in groups if g.name in ("task", "criterion.seq") for f in g.flags]
    assert code == 0 and [r.split("`")[1] for r in rows] == [f.name for f in expected]
    assert "| `--seq-negatives` | all\\|cross | all |" in md


def test_cli_group_filter_and_bad_group():
    code, out, _ = run_cli("--format", "json", "--group", "criterion")
    assert code == 0
    assert [g["name"] for g in json.loads(out)["groups"]][:2] == ["criterion", "criterion.mlm_orig"]
    assert all(g["name"].startswith("criterion") for g in json.loads(out)["groups"])
    code, out, err = run_cli("--group", "ankor")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("translit-ppa train-flags: error: unknown group 'ankor'")
