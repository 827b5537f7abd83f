"""From ``translit-ppa prepare``'s parsed flags to a :class:`~translit_plugin.prepare.config.PrepareConfig`.

:func:`config_from_options` first refuses a shard id out of range and an ``--output`` that is (inside, around) an
input or holds a ``data-bin/`` prepare did not write, then maps the flags onto the config's fields one to one."""

from __future__ import annotations

from typing import Any

from translit_plugin.prepare.config import PrepareConfig, PrepareInputError


def check_output_options(args: Any) -> None:
    """The checks the command makes before building its config (``args``: the parsed flags)."""
    from translit_plugin.core.safe_output import UnsafeOutputError, check_not_input

    if args.shard_id >= args.num_shards:
        raise PrepareInputError(f"--shard-id {args.shard_id} must be below --num-shards {args.num_shards}")
    # the output directory holds data-bin/, work/ and manifest.json: never an input, inside one, or around one
    check_not_input(args.output, [args.input, args.model_dir, args.latn_input, args.group], what="--output")
    data_bin = args.output / "data-bin"
    if data_bin.exists() and not (args.output / "work").exists() and not (args.output / "manifest.json").exists():
        raise UnsafeOutputError(f"{data_bin} exists and was not written by translit-ppa prepare (no work/ or "
                                "manifest.json next to it); prepare would overwrite it. Choose another --output")


def config_from_options(args: Any) -> PrepareConfig:
    """``args`` (the parsed flags of ``translit-ppa prepare``) checked (:func:`check_output_options`) and mapped."""
    from translit_plugin.prepare.clean import CleanConfig
    from translit_plugin.prepare.content_check import ContentCheckConfig
    from translit_plugin.prepare.latn_check import LatnCheckConfig
    from translit_plugin.prepare.sample import SampleConfig
    from translit_plugin.prepare.transliterate_job import parse_uroman_codes

    check_output_options(args)
    given = {"fraction": args.sample_fraction, "min_sentences": args.sample_min, "max_sentences": args.sample_max}
    explicit = {k: v for k, v in given.items() if v is not None}
    return PrepareConfig(
        input=args.input,
        model_dir=args.model_dir,
        output=args.output,
        langs=[x for x in args.langs.split(",") if x] if args.langs else None,
        group=args.group,
        latn_input=args.latn_input,
        clean=CleanConfig(dedupe=args.dedupe, max_chars=args.max_chars, min_chars=args.min_chars),
        sample=SampleConfig(seed=args.seed, valid_size=args.valid_size, valid_max_fraction=args.valid_max_fraction,
                            chunk_size=args.chunk_size, **explicit),
        sample_explicit=set(explicit),
        uroman_codes=parse_uroman_codes(args.uroman_code),
        no_lang_code=args.no_lang_code,
        uroman_cache_size=args.uroman_cache_size,
        max_length=args.max_length,
        overlong=args.overlong,
        workers=args.workers,
        num_shards=args.num_shards,
        shard_id=args.shard_id,
        stop_after=args.stop_after,
        verify_samples=args.verify_samples,
        verify_translit=args.verify_translit,
        progress=not args.no_progress,
        latn_check=LatnCheckConfig(lines=args.latn_check, min_similarity=args.latn_min_similarity, seed=args.seed),
        content_check=ContentCheckConfig(enabled=args.content_check == "on"),
        allow_unknown_lang=args.allow_unknown_lang,
        skip_unrecognized_files=args.skip_unrecognized_files,
        allow_empty_lang=args.allow_empty_lang,
    )
