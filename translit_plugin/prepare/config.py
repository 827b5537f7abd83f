"""What ``translit-ppa prepare`` is asked to do: :class:`PrepareConfig` (every option), the stage names, and
:class:`PrepareInputError` (inputs or options it cannot use as given)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from translit_plugin.core.names import DEFAULT_MAX_LENGTH
from translit_plugin.prepare.clean import CleanConfig
from translit_plugin.prepare.content_check import ContentCheckConfig
from translit_plugin.prepare.latn_check import LatnCheckConfig
from translit_plugin.prepare.sample import SampleConfig
from translit_plugin.transliterate import DEFAULT_CACHE_SIZE

STAGES = ("clean", "sample", "transliterate", "merge", "verify")


class PrepareInputError(ValueError):
    """Inputs or options prepare cannot use as given (the message says which and what to do); exit status 2."""

    exit_code = 2


@dataclass
class PrepareConfig:
    """All options of ``translit-ppa prepare`` (the CLI maps its flags onto these fields one to one)."""

    input: Path
    model_dir: Path
    output: Path
    langs: list[str] | None = None  # default: every {lang_Script}.txt in input (or the group's languages)
    group: Path | None = None
    latn_input: Path | None = None  # given transliterations {lang_Script}.txt, line-aligned with input: no uroman
    clean: CleanConfig = field(default_factory=CleanConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    sample_explicit: set[str] = field(default_factory=set)  # sampling fields set by the user: a group cannot override
    uroman_codes: dict[str, str | None] = field(default_factory=dict)  # overrides of the derived codes
    no_lang_code: bool = False  # call uroman without a language code (the paper's Perl setup)
    uroman_cache_size: int = DEFAULT_CACHE_SIZE
    max_length: int = DEFAULT_MAX_LENGTH  # tokens per sentence, <s> and </s> included (core.names)
    overlong: str = "truncate"
    workers: int = 1
    num_shards: int = 1
    shard_id: int = 0
    stop_after: str | None = None
    verify_samples: int = 1000
    verify_translit: int = 50
    progress: bool = True
    latn_check: LatnCheckConfig = field(default_factory=LatnCheckConfig)  # --latn-input pairs compared with uroman
    content_check: ContentCheckConfig = field(default_factory=ContentCheckConfig)  # --latn-input: every line
    allow_unknown_lang: bool = False  # accept codes that are not ISO 639-3 / ISO 15924 (with a warning)
    skip_unrecognized_files: bool = False  # skip (with a warning) input files not named {lang_Script}.txt
    allow_empty_lang: bool = False  # a language without usable lines is a warning, not an error
