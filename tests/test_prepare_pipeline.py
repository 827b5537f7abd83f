"""End-to-end tests of ``prepare``: pair identity after binarization under adversarial input, drop/truncate rules,
short transliterations, worker/shard invariance, the manifest and the CLI.

Deterministic: the sentencepiece model is trained single-threaded with a fixed seed; uroman is deterministic; the
sample is seeded.  Sizes are tiny (tens of lines per language) so the whole file runs in well under a minute after
uroman has loaded (~3 s).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from prepare_helpers import ADVERSARIAL_LINES, build_model_dir, demo_lines, write_raw

from translit_plugin.core.lines import to_single_line
from translit_plugin.prepare.chunks import AlignmentError
from translit_plugin.prepare.content_check import ContentCheckConfig
from translit_plugin.prepare.latn_check import LatnCheckConfig
from translit_plugin.prepare.pipeline import PrepareConfig, run_prepare
from translit_plugin.prepare.sample import SampleConfig

pytest.importorskip("uroman")
pytest.importorskip("fairseq")

LANGS = ("ara_Arab", "ell_Grek")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return build_model_dir(tmp_path_factory.getbasetemp() / "prepare_model")


@pytest.fixture(scope="module")
def tools(model_dir):
    """An independent encoder (raw sentencepiece + fairseq Dictionary) and a uroman instance."""
    from fairseq.data import Dictionary

    from translit_plugin.transliterate import Transliterator
    from translit_plugin.vocab import load_spm

    sp = load_spm(model_dir / "sentencepiece.bpe.model")
    return sp, Dictionary.load(str(model_dir / "dict.txt")), Transliterator()


def raw_corpus(lang: str, n_real: int = 30, offset: int = 0) -> list[bytes]:
    """Real lines interleaved with every adversarial line, plus one very long line."""
    real = [line.encode("utf-8") for line in demo_lines(lang, n_real, offset)]
    out: list[bytes] = []
    for i, line in enumerate(real):
        out.append(line)
        if i < len(ADVERSARIAL_LINES):
            out.append(ADVERSARIAL_LINES[i])
    out.insert(5, (" ".join(demo_lines(lang, 60, 100))).encode("utf-8"))  # very long line (> max_length)
    return out


def expected_pairs(raw: list[bytes], lcode: str, tools, max_length: int) -> list[tuple]:
    """What the data-bin must hold for one language, computed line by line without the pipeline."""
    sp, dictionary, tr = tools
    out = []
    for b in raw:
        if b.endswith(b"\r"):
            b = b[:-1]
        line = to_single_line(b.decode("utf-8", errors="replace"))
        if not line:
            continue
        latn = tr.transliterate(line, lcode)
        if not latn:
            continue
        ids = []
        for text in (line, latn):
            x = dictionary.encode_line(" ".join(sp.EncodeAsPieces(text)), append_eos=True,
                                       add_if_not_exist=False).numpy().astype(np.int64)
            if len(x) > max_length - 1:
                x = np.concatenate([x[: max_length - 2], [dictionary.eos()]])
            ids.append(x)
        if min(len(x) for x in ids) <= 1:
            continue
        out.append((line, latn, ids[0], ids[1]))
    return out


def make_input(tmp_path: Path, offset: int = 0) -> tuple[Path, dict[str, list[bytes]]]:
    inp = tmp_path / "input"
    inp.mkdir()
    raws = {}
    for lang in LANGS:
        raws[lang] = raw_corpus(lang, offset=offset)
        write_raw(inp / f"{lang}.txt", raws[lang], final_newline=(lang == "ara_Arab"))
    return inp, raws


def config(inp: Path, model_dir: Path, out: Path, **kw) -> PrepareConfig:
    sample = kw.pop("sample", SampleConfig(min_sentences=10**6, valid_size=0, chunk_size=7))
    return PrepareConfig(input=inp, model_dir=model_dir, output=out, sample=sample, progress=False,
                         verify_samples=kw.pop("verify_samples", 50), verify_translit=kw.pop("verify_translit", 5),
                         **kw)


def read_bin(data_bin: Path, split: str):
    from fairseq.data.indexed_dataset import MMapIndexedDataset

    return (MMapIndexedDataset(str(data_bin / "orig" / split)), MMapIndexedDataset(str(data_bin / "latn" / split)),
            np.load(data_bin / f"{split}.lang.npy"), (data_bin / "langs.txt").read_text().split())


def test_adversarial_lines_never_shift_pairs(tmp_path, model_dir, tools):
    """Every stored pair (all of them, not a sample) is the pair the line-by-line reference computes."""
    sp, dictionary, _ = tools
    inp, raws = make_input(tmp_path)
    max_length = 64  # the long line must be truncated
    manifest = run_prepare(config(inp, model_dir, tmp_path / "out", max_length=max_length))
    orig, latn, lang_ids, langs = read_bin(tmp_path / "out" / "data-bin", "train")
    assert langs == sorted(LANGS)
    expected = []
    for lang in langs:
        expected += [(lang, *p) for p in expected_pairs(raws[lang], lang[:3], tools, max_length)]
    assert len(orig) == len(latn) == len(lang_ids) == len(expected) == manifest["pairs"]["train"]
    for i, (lang, text, latin, o_ids, l_ids) in enumerate(expected):
        assert langs[lang_ids[i]] == lang
        np.testing.assert_array_equal(orig[i].numpy(), o_ids, err_msg=f"orig {i} {text!r}")
        np.testing.assert_array_equal(latn[i].numpy(), l_ids, err_msg=f"latn {i} {latin!r}")
        # decoding both sides gives back this pair's text (modulo unknown pieces / truncation)
        decoded = sp.DecodePieces([dictionary[t] for t in latn[i].numpy()[:-1]])
        if len(l_ids) < max_length - 1 and dictionary.unk() not in l_ids:
            assert decoded == sp.DecodePieces(sp.EncodeAsPieces(latin))
    # the adversarial rules did fire
    per = manifest["per_language"]
    assert all(per[lang]["clean"]["empty"] >= 3 for lang in LANGS)  # "", whitespace-only, BOM-only
    assert sum(per[lang]["clean"]["invalid_utf8"] for lang in LANGS) == 2
    assert sum(per[lang]["train"]["truncated"]["latn"] for lang in LANGS) >= 2
    dropped = sum(sum(per[lang]["train"]["dropped"].values()) for lang in LANGS)
    assert dropped >= 2  # the zero-width-space lines encode to nothing / transliterate to nothing
    for ds in (orig, latn):
        assert max(len(ds[i]) for i in range(len(ds))) <= max_length - 1
        assert all(ds[i][-1] == dictionary.eos() for i in range(len(ds)))


def test_overlong_drop_drops_both_sides(tmp_path, model_dir, tools):
    inp, raws = make_input(tmp_path)
    max_length = 64
    manifest = run_prepare(config(inp, model_dir, tmp_path / "out", max_length=max_length, overlong="drop"))
    orig, latn, _, _ = read_bin(tmp_path / "out" / "data-bin", "train")
    kept = []
    for lang in sorted(LANGS):
        kept += [p for p in expected_pairs(raws[lang], lang[:3], tools, 10**6)
                 if max(len(p[2]), len(p[3])) <= max_length - 1]
    assert len(orig) == len(latn) == len(kept)
    for i, (_, _, o_ids, l_ids) in enumerate(kept):
        np.testing.assert_array_equal(orig[i].numpy(), o_ids)
        np.testing.assert_array_equal(latn[i].numpy(), l_ids)
    assert sum(manifest["per_language"][lang]["train"]["dropped"]["overlong"] for lang in LANGS) >= 2


def test_short_transliteration_fails_loudly(tmp_path, model_dir, monkeypatch):
    from translit_plugin.transliterate import Transliterator

    inp, _ = make_input(tmp_path)
    original = Transliterator.transliterate_lines
    monkeypatch.setattr(Transliterator, "transliterate_lines",
                        lambda self, lines, lcode: original(self, lines, lcode)[:-1])  # one line short
    with pytest.raises(AlignmentError, match="returned"):
        run_prepare(config(inp, model_dir, tmp_path / "out"))


@pytest.mark.parametrize("damage", ["drop_last", "drop_middle"])
def test_damaged_transliteration_file_is_detected(tmp_path, model_dir, damage):
    """A TSV one record short (or with a record missing in the middle) is caught when it is binarized."""
    inp, _ = make_input(tmp_path)
    out = tmp_path / "out"
    run_prepare(config(inp, model_dir, out, stop_after="transliterate"))
    chunk = out / "work" / "translit" / "ell_Grek" / "train-00001.tsv"
    lines = chunk.read_text(encoding="utf-8").split("\n")[:-1]
    lines = lines[:-1] if damage == "drop_last" else lines[:2] + lines[3:]
    chunk.write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    for p in (out / "work" / "bin" / "ell_Grek").glob("train-00001.*"):
        p.unlink()  # force re-binarization of the damaged chunk
    with pytest.raises(AlignmentError, match="short|differs"):
        run_prepare(config(inp, model_dir, out))


def test_tampered_data_bin_fails_verification(tmp_path, model_dir):
    inp, _ = make_input(tmp_path)
    out = tmp_path / "out"
    run_prepare(config(inp, model_dir, out))
    lang_file = out / "data-bin" / "train.lang.npy"
    ids = np.load(lang_file)
    np.save(lang_file, np.roll(ids, 1))  # shift the language ids by one pair
    with pytest.raises(AlignmentError):
        run_prepare(config(inp, model_dir, out, verify_samples=10**6))


def _bin_bytes(data_bin: Path) -> dict[str, bytes]:
    return {str(p.relative_to(data_bin)): p.read_bytes() for p in sorted(data_bin.rglob("*")) if p.is_file()}


def test_workers_and_shards_give_identical_bytes(tmp_path, model_dir):
    inp, _ = make_input(tmp_path)
    sample = SampleConfig(min_sentences=10**6, valid_size=5, valid_max_fraction=0.2, chunk_size=6)
    one = run_prepare(config(inp, model_dir, tmp_path / "one", sample=sample, workers=1))
    two = run_prepare(config(inp, model_dir, tmp_path / "two", sample=sample, workers=2))
    for shard in (1, 0):  # shard 1 first: it must stop and wait for shard 0
        partial = run_prepare(config(inp, model_dir, tmp_path / "sharded", sample=sample, num_shards=2,
                                     shard_id=shard))
        assert partial["stopped_after"] == "transliterate"
    assert not (tmp_path / "sharded" / "data-bin").exists()
    merged = run_prepare(config(inp, model_dir, tmp_path / "sharded", sample=sample))
    reference = _bin_bytes(tmp_path / "one" / "data-bin")
    assert reference == _bin_bytes(tmp_path / "two" / "data-bin") == _bin_bytes(tmp_path / "sharded" / "data-bin")
    assert one["pairs"] == two["pairs"] == merged["pairs"]
    assert sum(one["per_language"][lang]["valid"]["sampled"] for lang in LANGS) == 10  # 5 per language
    assert 0 < one["pairs"]["valid"] <= 10  # an adversarial line may have been sampled and dropped


def test_manifest_and_resume(tmp_path, model_dir):
    inp, _ = make_input(tmp_path)
    out = tmp_path / "out"
    first = run_prepare(config(inp, model_dir, out))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["pairs"] == first["pairs"]
    assert manifest["uroman"]["codes"] == {"ara_Arab": "ara", "ell_Grek": "ell"}
    assert manifest["uroman"]["version"]
    assert manifest["tokens"]["train"]["orig"]["lines"] == manifest["pairs"]["train"]
    for lang in LANGS:
        entry = manifest["per_language"][lang]
        assert entry["train"]["pairs"] + sum(entry["train"]["dropped"].values()) == entry["train"]["sampled"]
        assert entry["sampled"] == entry["clean"]["kept"]  # min_sentences above the corpus size: take everything
    before = _bin_bytes(out / "data-bin")
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "work" / "translit").rglob("*.tsv")}
    second = run_prepare(config(inp, model_dir, out))
    assert _bin_bytes(out / "data-bin") == before
    assert mtimes == {p: p.stat().st_mtime_ns for p in (out / "work" / "translit").rglob("*.tsv")}  # nothing redone
    assert second["pairs"] == first["pairs"]


def test_group_file_and_codes(tmp_path, model_dir):
    inp, _ = make_input(tmp_path)
    group = tmp_path / "g.json"
    group.write_text(json.dumps({"name": "t", "languages": {"ell_Grek": {"uroman_code": None}},
                                 "sampling": {"fraction": 0.5, "min_sentences": 3}}))
    manifest = run_prepare(config(inp, model_dir, tmp_path / "out", group=group))
    assert manifest["languages"] == ["ell_Grek"]
    assert manifest["uroman"]["codes"] == {"ell_Grek": None}
    clean = manifest["per_language"]["ell_Grek"]["clean"]["kept"]
    assert manifest["per_language"]["ell_Grek"]["sampled"] == -(-clean // 2)


def test_cli_prepare(tmp_path, model_dir):
    from translit_plugin.cli import main

    inp, _ = make_input(tmp_path)
    out = tmp_path / "out"
    group = tmp_path / "g.json"
    group.write_text(json.dumps({"languages": {lang: {} for lang in LANGS},
                                 "sampling": {"fraction": 0.5, "min_sentences": 3}}))
    rc = main(["prepare", "--input", str(inp), "--model-dir", str(model_dir), "--output", str(out), "--workers", "1",
               "--valid-size", "3", "--valid-max-fraction", "0.5", "--chunk-size", "10", "--no-progress",
               "--uroman-code", "ara_Arab=none", "--group", str(group), "--sample-min", "1000000"])
    assert rc == 0
    manifest = json.loads((out / "manifest.json").read_text())
    for lang in LANGS:  # the explicit --sample-min wins over the group's sampling; its fraction still applies
        entry = manifest["per_language"][lang]
        assert entry["sampled"] == entry["clean"]["kept"]
    assert manifest["options"]["sample"]["fraction"] == 0.5
    assert manifest["uroman"]["codes"]["ell_Grek"] == "ell"
    assert manifest["uroman"]["codes"]["ara_Arab"] is None
    assert sum(manifest["per_language"][lang]["valid"]["sampled"] for lang in LANGS) == 6
    for side in ("orig", "latn"):
        assert (out / "data-bin" / side / "dict.txt").read_bytes() == (model_dir / "dict.txt").read_bytes()


def _given_transliteration(raws: dict[str, list[bytes]]) -> dict[str, list[bytes]]:
    """A stand-in for an external romanizer (e.g. Perl uroman): one output line per input line, by bytes."""
    return {lang: [b"LATN %d %s" % (i, b"x" * (i % 3)) for i, _ in enumerate(raw)] for lang, raw in raws.items()}


def test_given_transliterations_are_paired_line_by_line(tmp_path, model_dir, tools):
    sp, dictionary, _ = tools
    inp, raws = make_input(tmp_path)
    latn_dir = tmp_path / "latn"
    latn_dir.mkdir()
    given = _given_transliteration(raws)
    for lang in LANGS:
        write_raw(latn_dir / f"{lang}.txt", given[lang])
    # a stand-in romanizer: nothing like uroman, so the comparison with uroman and the every-line check are off
    manifest = run_prepare(config(inp, model_dir, tmp_path / "out", latn_input=latn_dir,
                                  latn_check=LatnCheckConfig(lines=0), content_check=ContentCheckConfig(enabled=False)))
    orig, latn, _, langs = read_bin(tmp_path / "out" / "data-bin", "train")
    expected = []
    for lang in langs:
        for b, g in zip(raws[lang], given[lang]):
            line = to_single_line(b.removesuffix(b"\r").decode("utf-8", errors="replace"))
            if not line:
                continue
            ids = [dictionary.encode_line(" ".join(sp.EncodeAsPieces(t)), append_eos=True, add_if_not_exist=False)
                   .numpy() for t in (line, g.decode())]
            if min(len(x) for x in ids) > 1:
                expected.append([x.tolist() if len(x) <= 511 else x[:510].tolist() + [dictionary.eos()] for x in ids])
    assert len(orig) == len(latn) == len(expected)
    for i, (o_ids, l_ids) in enumerate(expected):
        assert orig[i].tolist() == o_ids and latn[i].tolist() == l_ids, i
    assert manifest["latn_input"] == str(latn_dir)


@pytest.mark.parametrize("damage", ["one_short", "split_at_u2028"])
def test_given_transliteration_with_a_different_line_count_fails(tmp_path, model_dir, damage):
    inp, raws = make_input(tmp_path)
    latn_dir = tmp_path / "latn"
    latn_dir.mkdir()
    given = _given_transliteration(raws)
    if damage == "one_short":
        given["ell_Grek"] = given["ell_Grek"][:-1]
    else:  # a tool that treats U+2028 as a line break emits one line too many
        at = raws["ell_Grek"].index("Καλημέρα\u2028κόσμε".encode())
        given["ell_Grek"][at:at + 1] = [b"Kalemera", b"kosme"]
    for lang in LANGS:
        write_raw(latn_dir / f"{lang}.txt", given[lang])
    with pytest.raises(AlignmentError, match="ell_Grek.txt"):
        run_prepare(config(inp, model_dir, tmp_path / "out", latn_input=latn_dir, latn_check=LatnCheckConfig(lines=0),
                           content_check=ContentCheckConfig(enabled=False)))
