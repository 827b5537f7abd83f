"""Helpers for the ``prepare`` tests: a small model directory trained on the shipped demo corpus, adversarial lines.

The model directory holds only what ``prepare`` reads (``sentencepiece.bpe.model`` + ``dict.txt``).  It is built once
per test session and cached under pytest's base temp directory.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO_TRAIN = REPO / "examples" / "data" / "train"
SPM_LANGS = ("ara_Arab", "ell_Grek", "heb_Hebr", "kor_Hang", "eng_Latn")

# Raw byte lines that any stage could split, merge or choke on.  Each is preceded/followed by real text in the tests,
# so a shift by one line anywhere changes which real sentence a pair holds.
ADVERSARIAL_LINES: list[bytes] = [
    b"",  # empty
    b"   \t  ",  # whitespace only
    "Καλημέρα\u2028κόσμε".encode(),  # LINE SEPARATOR inside a line
    "Γειά\u0085σου".encode(),  # NEL
    "مرحبا\u2029بالعالم".encode(),  # PARAGRAPH SEPARATOR
    b"form\x0cfeed and\x0bvtab",  # FF, VT
    b"lone\rcarriage return",  # CR inside a line
    b"nul\x00byte",  # NUL
    b"bad \xff\xfe utf8 \xc3",  # invalid UTF-8
    "\u200b\u200b".encode(),  # zero-width spaces only: survives cleaning, encodes to nothing
    "\ufeff".encode(),  # BOM only
    "שלום\x1cעולם\x1d!".encode(),  # file/group separators
    b"   leading and trailing   ",
    b"crlf line\r",  # (the \n is added by the writer) a CRLF line
]


def write_raw(path: Path, lines: list[bytes], final_newline: bool = True) -> None:
    data = b"\n".join(lines) + (b"\n" if final_newline else b"")
    path.write_bytes(data)


def demo_lines(lang: str, n: int, offset: int = 0) -> list[str]:
    with open(DEMO_TRAIN / f"{lang}.txt", encoding="utf-8") as f:
        lines = f.read().split("\n")[:-1]
    return lines[offset : offset + n]


def build_model_dir(out: Path) -> Path:
    """``out/sentencepiece.bpe.model`` + ``out/dict.txt`` (unigram, XLM-R layout) trained on demo text; cached."""
    from translit_plugin.conversion.start_model import train_sentencepiece
    from translit_plugin.vocab import write_fairseq_dict

    spm_model, dict_txt = out / "sentencepiece.bpe.model", out / "dict.txt"
    if spm_model.is_file() and dict_txt.is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    text = out / "spm_train.txt"
    lines = []
    for lang in SPM_LANGS:
        lines += demo_lines(lang, 800)
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    train_sentencepiece([text], spm_model, vocab_size=2000, max_sentences=10000, seed=0)
    write_fairseq_dict(spm_model, dict_txt)
    return out


def write_input(d: Path, langs=("ell_Grek", "heb_Hebr"), n: int = 24) -> Path:
    """``{lang}.txt`` input files of ``n`` demo lines each in ``d``."""
    d.mkdir(parents=True, exist_ok=True)
    for lang in langs:
        (d / f"{lang}.txt").write_text("\n".join(demo_lines(lang, n)) + "\n", encoding="utf-8")
    return d


def run_prepare(capsys, inp: Path, model_dir: Path, out: Path, *extra) -> tuple[int, str]:
    """``translit-ppa prepare`` of a small input (everything sampled, every pair checked) -> ``(rc, stderr)``."""
    from translit_plugin.cli import main

    argv = ["prepare", "--input", inp, "--model-dir", model_dir, "--output", out, "--workers", "1",
            "--valid-size", "0", "--sample-min", "1000000", "--chunk-size", "50", "--no-progress",
            "--verify-samples", "20", "--verify-translit", "2", *extra]
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def error_lines(err: str) -> list[str]:
    """What the CLI printed as errors (logging's INFO/WARNING lines also go to stderr)."""
    return [line for line in err.splitlines() if not line[:4].isdigit()]
