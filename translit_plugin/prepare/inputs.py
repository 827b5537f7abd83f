"""What prepare's options resolve to before any stage runs (:func:`resolve_inputs`): the input files and languages,
uroman codes, sampling; the option checks that come first, and the check that every language kept a line."""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from translit_plugin.prepare.config import STAGES, PrepareConfig, PrepareInputError
from translit_plugin.prepare.groups import LanguageGroup, load_group
from translit_plugin.prepare.sample import SampleConfig
from translit_plugin.transliterate import uroman_code

logger = logging.getLogger(__name__)

_LANG_FILE = re.compile(r"^[a-z]{2,3}_[A-Z][a-z]{3}$")


def discover_languages(input_dir: Path, wanted: list[str] | None, skip_unrecognized: bool = False) -> dict[str, Path]:
    """``{lang_Script: path}`` of the input files (``{lang_Script}.txt``), restricted to ``wanted`` if given.

    Without ``wanted``, any other (non-hidden) file in the directory is an error, or with ``skip_unrecognized`` a
    warning: a file named ``Greek.txt`` or ``ell_grek.txt`` must not silently drop a language."""
    if not input_dir.is_dir():
        raise FileNotFoundError(f"--input {input_dir} is not a directory of {{lang_Script}}.txt files")
    listed = [p for p in sorted(input_dir.iterdir()) if not p.name.startswith(".")]
    not_files = [p for p in listed if not p.is_file() and p.suffix == ".txt" and _LANG_FILE.match(p.stem)
                 and (wanted is None or p.stem in wanted)]
    if not_files:  # a language must not disappear from the run because its "file" is a folder or a broken link
        bad = not_files[0]
        what = "a dangling symlink" if bad.is_symlink() and not bad.exists() else "a directory" if bad.is_dir() \
            else "not a regular file"
        raise PrepareInputError(f"{bad} is named like a language file but is {what} (not a regular file); put "
                                "the language's text in a file of that name, or move it out of the folder"
                                + (f" (+{len(not_files) - 1} more: {', '.join(p.name for p in not_files[1:5])})"
                                   if len(not_files) > 1 else ""))
    entries = [p for p in listed if p.is_file()]
    found = {p.stem: p for p in entries if p.suffix == ".txt" and _LANG_FILE.match(p.stem)}
    if wanted is None:
        recognized = set(found.values())
        unrecognized = [p.name for p in entries if p not in recognized]
        if unrecognized:
            listed = ", ".join(unrecognized[:10]) + (f" (+{len(unrecognized) - 10} more)" if len(unrecognized) > 10
                                                     else "")
            msg = f"{input_dir}: {len(unrecognized)} file(s) not named {{lang_Script}}.txt: {listed}"
            if not skip_unrecognized:
                raise PrepareInputError(f"{msg}; rename them, move them away, or pass --skip-unrecognized-files to "
                                        "skip them")
            logger.warning("%s; skipped (--skip-unrecognized-files)", msg)
        if not found:
            raise FileNotFoundError(f"{input_dir}: no {{lang_Script}}.txt files (e.g. fas_Arab.txt)")
        return found
    missing = [lang for lang in wanted if lang not in found]
    if missing:
        raise FileNotFoundError(f"{input_dir}: no input file for {missing} (expected {input_dir / missing[0]}.txt)")
    return {lang: found[lang] for lang in wanted}


def model_files(model_dir: Path) -> tuple[Path, Path]:
    """``(sentencepiece.bpe.model, dict.txt)`` of a model directory; FileNotFoundError naming the missing one."""
    spm, dct = model_dir / "sentencepiece.bpe.model", model_dir / "dict.txt"
    for p in (spm, dct):
        if not p.is_file():
            raise FileNotFoundError(f"{p} not found: --model-dir must be a model directory made by `translit-ppa "
                                    "convert` (it holds sentencepiece.bpe.model and dict.txt)")
    return spm, dct


@dataclass
class PrepareInputs:
    """What the options resolve to before any stage runs: input files, languages, uroman codes, sampling."""

    files: dict[str, Path]  # lang_Script -> input file
    langs: list[str]  # sorted: the order of langs.txt and of the data-bin
    lcodes: dict[str, str | None]  # uroman language code per language (None: no code)
    sample_cfg: SampleConfig  # the CLI's sampling, with the group's where the user set nothing
    group: LanguageGroup | None = None  # the parsed --group file
    code_warnings: list[str] = field(default_factory=list)  # codes accepted with --allow-unknown-lang


def check_options(cfg: PrepareConfig) -> None:
    """Refuse option values no stage can use (before anything is read or written)."""
    if cfg.stop_after is not None and cfg.stop_after not in STAGES:
        raise ValueError(f"stop_after must be one of {STAGES}")
    if not 0 <= cfg.shard_id < cfg.num_shards:
        raise ValueError(f"--shard-id {cfg.shard_id} must be in 0..{cfg.num_shards - 1} for --num-shards "
                         f"{cfg.num_shards}")
    if cfg.latn_input is not None and cfg.latn_input.resolve() == cfg.input.resolve():
        raise PrepareInputError(f"--latn-input {cfg.latn_input} is the --input folder itself: the Latin side would be "
                                "the original text; give the folder of its romanisations")


def check_sampling(sample: SampleConfig) -> None:
    """A sampling rule that keeps no sentence of any language is refused (it would prepare an empty data-bin)."""
    if sample.fraction == 0 and sample.min_sentences == 0:
        raise PrepareInputError("--sample-fraction 0 with --sample-min 0 samples no sentence of any language; give a "
                                "fraction in (0, 1] (paper: 0.1) or a --sample-min above 0")
    if sample.max_sentences == 0:
        raise PrepareInputError("--sample-max 0 samples no sentence of any language; give a cap above 0 or none")


def uroman_codes(cfg: PrepareConfig, langs: list[str], group: LanguageGroup | None) -> dict[str, str | None]:
    """Each language's uroman code: none with ``--no-lang-code``, else ``--uroman-code``, the group's, or derived."""
    lcodes: dict[str, str | None] = {}
    for lang in langs:
        if cfg.no_lang_code:
            lcodes[lang] = None
        elif lang in cfg.uroman_codes:
            lcodes[lang] = cfg.uroman_codes[lang]
        elif group and lang in group.uroman_codes:
            lcodes[lang] = group.uroman_codes[lang]
        else:
            lcodes[lang] = uroman_code(lang)
    return lcodes


def resolve_inputs(cfg: PrepareConfig) -> PrepareInputs:
    """Input files and languages (``--langs``, the group's, or every file), uroman codes (validated), sampling."""
    from translit_plugin.prepare.langcodes import validate_codes

    group = load_group(cfg.group) if cfg.group else None
    wanted = cfg.langs if cfg.langs is not None else (group.languages if group else None)
    files = discover_languages(cfg.input, wanted, cfg.skip_unrecognized_files)
    langs = sorted(files)
    sample_cfg = cfg.sample
    if group and group.sampling:
        from_group = {k: v for k, v in group.sampling.items() if k not in cfg.sample_explicit}
        sample_cfg = SampleConfig(**{**asdict(sample_cfg), **from_group})
    check_sampling(sample_cfg)
    stray = sorted(set(cfg.uroman_codes) - set(langs))
    if stray:
        raise PrepareInputError(f"--uroman-code for {', '.join(stray)}: not a language of this run "
                                f"({', '.join(langs)}); check the spelling (lang_Script, e.g. arz_Arab=ara) or drop "
                                "the flag")
    lcodes = uroman_codes(cfg, langs, group)
    code_warnings = validate_codes(files, lcodes, cfg.allow_unknown_lang)
    logger.info("prepare %d languages from %s into %s (uroman codes: %s)", len(langs), cfg.input, cfg.output, lcodes)
    return PrepareInputs(files=files, langs=langs, lcodes=lcodes, sample_cfg=sample_cfg, group=group,
                         code_warnings=code_warnings)


def check_not_empty(cfg: PrepareConfig, inputs: PrepareInputs, clean_records: dict[str, dict]) -> None:
    """A language without a usable line is an error, or with ``--allow-empty-lang`` a warning."""
    empty = [lang for lang in inputs.langs if clean_records[lang]["kept"] == 0]
    if not empty:
        return
    details = "; ".join(f"{inputs.files[lang]}: {_dropped(clean_records[lang])}" for lang in empty)
    msg = f"{len(empty)} language(s) without a usable line, they would get 0 pairs: {details}"
    if not cfg.allow_empty_lang:
        raise PrepareInputError(f"{msg}. Fix or remove the file(s), leave them out with --langs, or pass "
                                "--allow-empty-lang")
    logger.warning("%s (--allow-empty-lang)", msg)


def _dropped(record: dict) -> str:
    """Why a clean record kept nothing, e.g. '12 lines: 10 empty, 2 too long'."""
    reasons = [f"{record[k]} {k.replace('_', ' ')}" for k in ("empty", "too_short", "too_long", "duplicate")
               if record.get(k)]
    return f"{record['input_lines']} lines" + (f": {', '.join(reasons)}" if reasons else "")
