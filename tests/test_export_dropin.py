"""``export-hf`` writes what the source was, with a sentence-transformers configuration and a model card (issue 22).

A tiny random bare encoder (``XLMRobertaModel``: a pooler, 5 unreachable rows and 2 token types, like
multilingual-e5) is converted with e5's use setting (last layer, mean over every token, ``query: `` /
``passage: ``), post-trained for a few real ``fairseq-train`` updates on a real ``prepare`` output, and exported:

* the bare export loads with ``AutoModel`` with no missing or unexpected key, its config is the source's but for the
  vocabulary size, and it computes what the source HF model computes (the independent reference);
* ``SentenceTransformer(OUT).encode`` equals the hub's ``embed`` at the use setting, and a mean over the source HF
  model's last layer computed here by hand, on Arabic, Korean, Greek, Thai, Chinese and Latin text (a text longer
  than the model included: truncation), for each prompt;
* an MLM source keeps its head (``AutoModelForMaskedLM``: no missing key, the source's logits);
* a run with MLM on trains the head: kept and reported; a run with MLM off leaves it bit-identical: dropped;
* a use setting sentence-transformers cannot express gets no configuration, and says why;
* the model card's YAML front matter parses, and it holds the training languages, the non-default flags, the data's
  licence and the evaluation tables of ``--results`` (the demo's ``demo_results.json`` written by
  ``scripts/demo_eval.py``, and ``translit-ppa evaluate`` results); a bad ``--results`` file is exit 2.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import build_tiny_hf

from translit_plugin.cli import main
from translit_plugin.conversion.fairseq_to_hf import export_fairseq_to_hf
from translit_plugin.conversion.hf_to_fairseq import convert_hf_to_fairseq

REPO = Path(__file__).resolve().parents[1]
E5_USE = {"layer": "last", "pooling": "mean_with_special", "prompts": {"query": "query: ", "passage": "passage: "},
          "default_prompt": "query"}  # fmt: skip
TEXTS = [
    "مرحبا بالعالم، كيف حالك اليوم؟",  # Arabic
    "안녕하세요, 오늘 날씨가 좋네요.",  # Korean
    "Καλημέρα κόσμε, τι κάνεις;",  # Greek
    "สวัสดีชาวโลก วันนี้อากาศดี",  # Thai
    "你好，世界。今天天气很好。",  # Chinese
    "The quick brown fox jumps over the lazy dog.",  # Latin
    "Merhaba dünya, bugün hava çok güzel.",  # Latin (Turkish)
    "Καλημέρα κόσμε " * 80,  # longer than the tiny model's 128 positions: truncated keeping </s>
]
LANGS = ("ell_Grek", "kor_Hang")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _front_matter(card: str) -> dict:
    import yaml

    assert card.startswith("---\n")
    head, _, _ = card[4:].partition("\n---\n")
    return yaml.safe_load(head)


def _keys(path: Path) -> set[str]:
    from safetensors import safe_open

    with safe_open(str(path / "model.safetensors"), "pt") as f:
        return set(f.keys())


def _mean_reference(hf_dir: Path, texts: list[str], prompt: str) -> torch.Tensor:
    """The source HF model read as e5 is read: prompt + text, last layer, mean over the attention mask."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(hf_dir))
    model = AutoModel.from_pretrained(str(hf_dir)).eval()
    batch = tok([prompt + t for t in texts], padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        h = model(**batch).last_hidden_state
    m = batch["attention_mask"].unsqueeze(-1).float()
    return (h * m).sum(1) / m.sum(1)


# ------------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def bare_hf(tmp_path_factory) -> Path:
    return build_tiny_hf(tmp_path_factory.mktemp("dropin_hf") / "hf", bare=True, seed=1, extra_rows=5,
                         type_vocab_size=2)  # fmt: skip


@pytest.fixture(scope="module")
def bare_model(bare_hf, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dropin_fs") / "model"
    return convert_hf_to_fairseq(bare_hf, out, arch="translit_roberta_tiny", use_overrides=E5_USE)


@pytest.fixture(scope="module")
def bare_export(bare_model, tmp_path_factory) -> Path:
    return export_fairseq_to_hf(bare_model / "model.pt", tmp_path_factory.mktemp("dropin_out") / "e5like-hf")


@pytest.fixture(scope="module")
def prepared(bare_model, tmp_path_factory) -> Path:
    """A real ``prepare`` output of two demo languages; the input sits beside the demo corpus's provenance file."""
    from translit_plugin.prepare.pipeline import PrepareConfig, run_prepare
    from translit_plugin.prepare.sample import SampleConfig

    base = tmp_path_factory.mktemp("dropin_prep")
    inp = base / "corpus" / "train"
    inp.mkdir(parents=True)
    shutil.copyfile(REPO / "examples" / "data" / "provenance.json", base / "corpus" / "provenance.json")
    for lang in LANGS:
        lines = (REPO / "examples" / "data" / "train" / f"{lang}.txt").read_text(encoding="utf-8").splitlines()[:40]
        (inp / f"{lang}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    run_prepare(PrepareConfig(input=inp, model_dir=bare_model, output=base / "out", progress=False, max_length=60,
                              sample=SampleConfig(min_sentences=10**6, valid_size=8, chunk_size=50),
                              verify_samples=10, verify_translit=2))  # fmt: skip
    return base / "out"


def _train(data_bin: Path, model_dir: Path, save: Path, *extra: str) -> Path:
    """Two real ``fairseq-train`` updates from ``model_dir`` (a few terms' flags in ``extra``)."""
    cmd = [str(Path(sys.executable).parent / "fairseq-train"), str(data_bin),
           "--user-dir", str(REPO / "translit_plugin"), "--task", "translit_align", "--criterion", "mlm_seq_tlm",
           "--arch", "translit_roberta_tiny",
           "--finetune-from-model", str(model_dir / "model.pt"), "--tokens-per-sample", "128", "--seq-layer", "1",
           "--optimizer", "adam", "--lr", "1e-3", "--batch-size", "8", "--max-update", "2", "--save-dir", str(save),
           "--no-epoch-checkpoints", "--save-interval-updates", "2", "--cpu", "--num-workers", "0", "--seed", "3",
           "--disable-validation", *extra]  # fmt: skip
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return save / "checkpoint_last.pt"


@pytest.fixture(scope="module")
def run_mlm(prepared, bare_model, tmp_path_factory) -> Path:
    """All four terms (the paper's recipe): MLM trains the LM head."""
    return _train(prepared / "data-bin", bare_model, tmp_path_factory.mktemp("run_mlm") / "checkpoints")


@pytest.fixture(scope="module")
def run_seq(prepared, bare_model, tmp_path_factory) -> Path:
    """SEQ only: the LM head is never run, so never changed."""
    return _train(prepared / "data-bin", bare_model, tmp_path_factory.mktemp("run_seq") / "checkpoints",
                  "--mlm-orig-weight", "0", "--mlm-latn-weight", "0", "--tlm-weight", "0")  # fmt: skip


# ----------------------------------------------------------------------------------------------------- bare source
def test_bare_source_exports_bare_with_the_source_config(bare_hf, bare_model, bare_export):
    from transformers import AutoModel

    model, info = AutoModel.from_pretrained(str(bare_export), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    keys = _keys(bare_export)
    assert not any(k.startswith("lm_head.") for k in keys) and {"pooler.dense.weight", "pooler.dense.bias"} <= keys
    assert keys == _keys(bare_hf)  # the source's tensors, no more, no fewer
    from safetensors.torch import load_file

    a, b = load_file(str(bare_hf / "model.safetensors")), load_file(str(bare_export / "model.safetensors"))
    for k in keys - {"embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight"}:
        assert torch.equal(a[k], b[k]), k  # pooler, both token-type rows, every layer: bit-identical
    assert torch.equal(a["embeddings.word_embeddings.weight"][:3002], b["embeddings.word_embeddings.weight"])
    src_cfg = json.loads((bare_hf / "config.json").read_text())
    cfg = json.loads((bare_export / "config.json").read_text())
    assert cfg["architectures"] == src_cfg["architectures"] == ["XLMRobertaModel"]
    assert cfg == {**src_cfg, "vocab_size": 3002}  # the source's config but for the rows no token reaches
    assert (src_cfg["vocab_size"], cfg["vocab_size"]) == (3007, 3002)  # the 5 unreachable rows dropped
    rec = json.loads((bare_export / "translit_ppa_export.json").read_text())
    assert rec["architecture"] == "XLMRobertaModel" and rec["lm_head_trained"] is False
    assert rec["lm_head"].startswith("dropped") and rec["config_changes"] == {
        "vocab_size": {"source": 3007, "exported": 3002}}
    assert any("5 embedding rows" in n for n in rec["notes"])
    assert rec["parity"]["logits"] is None and rec["parity"]["max_rel_diff"] < 1e-4  # hidden states, AutoModel
    # the independent reference: the export computes what the source HF model computes, pooler included
    from transformers import AutoTokenizer

    ref = AutoModel.from_pretrained(str(bare_hf)).eval()
    batch = AutoTokenizer.from_pretrained(str(bare_hf))(TEXTS[:-1], padding=True, return_tensors="pt")
    with torch.no_grad():
        a, b = ref(**batch, output_hidden_states=True), model.eval()(**batch, output_hidden_states=True)
    for x, y in zip(a.hidden_states, b.hidden_states):
        assert (x - y).abs().max() <= 1e-5 * x.abs().max()
    assert (a.pooler_output - b.pooler_output).abs().max() <= 1e-5


@pytest.mark.parametrize("prompt_name", ["query", "passage", None])
def test_sentence_transformers_encodes_like_the_hub(bare_hf, bare_model, bare_export, prompt_name):
    from sentence_transformers import SentenceTransformer

    from translit_plugin.hub import from_pretrained

    st = SentenceTransformer(str(bare_export), device="cpu")
    assert E5_USE["prompts"].items() <= st.prompts.items() and st.default_prompt_name == "query"
    ours = torch.as_tensor(st.encode(TEXTS, prompt_name=prompt_name, convert_to_tensor=True))
    hub = from_pretrained(bare_model).eval()
    theirs = hub.embed(TEXTS, prompt_name=prompt_name)  # None: the default prompt, as in sentence-transformers
    assert ours.shape == theirs.shape == (len(TEXTS), 64)
    assert (ours - theirs).abs().max() <= 1e-5
    by_hand = _mean_reference(bare_hf, TEXTS, E5_USE["prompts"][prompt_name or "query"])
    assert (ours - by_hand).abs().max() <= 1e-5
    without = torch.as_tensor(st.encode(TEXTS, prompt="", convert_to_tensor=True))
    assert (without - ours).abs().max() > 1e-3  # the prompt really is part of what is encoded
    # sentence-transformers' task methods read queries and documents with e5's prompts too
    task = {"query": st.encode_query, "passage": st.encode_document, None: st.encode_query}[prompt_name]
    assert (torch.as_tensor(task(TEXTS, convert_to_tensor=True)) - theirs).abs().max() <= 1e-5


def test_sentence_transformers_files(bare_export):
    modules = json.loads((bare_export / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[1] for m in modules] == ["Transformer", "Pooling"]  # no Normalize: hub.embed
    pooling = json.loads((bare_export / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] and pooling["include_prompt"]
    assert pooling["word_embedding_dimension"] == 64 and not pooling["pooling_mode_cls_token"]
    assert json.loads((bare_export / "sentence_bert_config.json").read_text())["max_seq_length"] == 128
    st = json.loads((bare_export / "config_sentence_transformers.json").read_text())
    assert st["prompts"] == {**E5_USE["prompts"], "document": "passage: "} and st["default_prompt_name"] == "query"
    rec = json.loads((bare_export / "translit_ppa_export.json").read_text())["sentence_transformers"]
    assert rec["written"] and rec["normalize"] is False and rec["use_setting"]["pooling"] == "mean_with_special"


def test_cls_pooling_at_the_last_layer_index(bare_model, tmp_path):
    """A use setting of the last layer given as its index, with the <s> vector: sentence-transformers' CLS pooling."""
    from sentence_transformers import SentenceTransformer

    from translit_plugin.core.use_settings import USE_FILE, UseSetting, use_json_text
    from translit_plugin.hub import from_pretrained

    model = tmp_path / "model"
    shutil.copytree(bare_model, model)
    (model / USE_FILE).write_text(use_json_text(UseSetting(layer=2, pooling="cls")), encoding="utf-8")
    out = export_fairseq_to_hf(model / "model.pt", tmp_path / "hf", check_parity=False)
    assert json.loads((out / "1_Pooling" / "config.json").read_text())["pooling_mode_cls_token"] is True
    ours = torch.as_tensor(SentenceTransformer(str(out), device="cpu").encode(TEXTS, convert_to_tensor=True))
    theirs = from_pretrained(model).eval().embed(TEXTS)
    assert (ours - theirs).abs().max() <= 1e-5
    assert (ours - from_pretrained(bare_model).eval().embed(TEXTS)).abs().max() > 1e-3  # not the mean's vectors


@pytest.mark.parametrize("modules,written", [(("Transformer", "Pooling", "Normalize"), True),
                                             (("Transformer", "Pooling", "Dense", "Normalize"), False)])
def test_source_with_its_own_sentence_transformers_files(bare_hf, tmp_path, modules, written):
    """convert reads the use setting from the source's files; export writes it back without Normalize (hub.embed
    does not normalise; the record says so), and refuses to describe a pipeline with a Dense projection."""
    src = tmp_path / "src"
    shutil.copytree(bare_hf, src)
    (src / "modules.json").write_text(json.dumps([
        {"idx": i, "name": str(i), "path": "" if m == "Transformer" else f"{i}_{m}",
         "type": f"sentence_transformers.models.{m}"} for i, m in enumerate(modules)]), encoding="utf-8")
    (src / "1_Pooling").mkdir()
    (src / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 64, "pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}))
    (src / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": None}))
    model = convert_hf_to_fairseq(src, tmp_path / "model", arch="translit_roberta_tiny", check_parity=False)
    assert "sentence-transformers" in json.loads((model / "use.json").read_text())["source"]
    out = export_fairseq_to_hf(model / "model.pt", tmp_path / "hf", check_parity=False)
    rec = json.loads((out / "translit_ppa_export.json").read_text())["sentence_transformers"]
    assert rec["written"] is written and rec["source_modules"][-1].endswith("Normalize")
    assert (out / "modules.json").is_file() is written
    if written:
        assert "normalised" in rec["note"]
        assert [m["type"].rsplit(".", 1)[1] for m in json.loads((out / "modules.json").read_text())] == [
            "Transformer", "Pooling"]
        assert json.loads((out / "config_sentence_transformers.json").read_text())["default_prompt_name"] is None
    else:
        assert "Dense" in rec["why"]


@pytest.mark.parametrize("layer,pooling,why", [("1", "mean_with_special", "not the last"),
                                               ("last", "mean_no_special", "no sentence-transformers equivalent")])
def test_use_setting_sentence_transformers_cannot_express_is_skipped(bare_model, tmp_path, caplog, layer, pooling,
                                                                      why):  # fmt: skip
    from translit_plugin.core.use_settings import USE_FILE, UseSetting, use_json_text

    model = tmp_path / "model"
    shutil.copytree(bare_model, model)
    setting = UseSetting(layer=layer, pooling=pooling, prompts={"query": "query: "}, default_prompt="query")
    (model / USE_FILE).write_text(use_json_text(setting), encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        out = export_fairseq_to_hf(model / "model.pt", tmp_path / "hf", check_parity=False)
    assert not (out / "modules.json").exists() and not (out / "1_Pooling").exists()
    rec = json.loads((out / "translit_ppa_export.json").read_text())["sentence_transformers"]
    assert rec["written"] is False and why in rec["why"]
    assert any("no sentence-transformers configuration written" in r.getMessage() for r in caplog.records)
    assert "not written" in (out / "README.md").read_text()
    from sentence_transformers import SentenceTransformer  # without a configuration it still loads (its defaults)

    assert not SentenceTransformer(str(out), device="cpu").prompts.get("query")  # and knows no prompt


# ------------------------------------------------------------------------------------------------------ MLM source
def test_mlm_source_keeps_its_head(tiny_hf_dir, tiny_model_dir, tmp_path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    out = export_fairseq_to_hf(tiny_model_dir / "model.pt", tmp_path / "hf")
    model, info = AutoModelForMaskedLM.from_pretrained(str(out), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert json.loads((out / "config.json").read_text()) == json.loads((tiny_hf_dir / "config.json").read_text())
    rec = json.loads((out / "translit_ppa_export.json").read_text())
    assert rec["architecture"] == "XLMRobertaForMaskedLM" and rec["lm_head"].startswith("kept: the source's")
    assert rec["parity"]["logits"]["rel"] < 1e-4
    ref = AutoModelForMaskedLM.from_pretrained(str(tiny_hf_dir)).eval()
    batch = AutoTokenizer.from_pretrained(str(tiny_hf_dir))(TEXTS[:-1], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert (ref(**batch).logits - model.eval()(**batch).logits).abs().max() < 1e-5
    # no use setting: no sentence-transformers configuration, and the card says so
    assert not (out / "modules.json").exists()
    card = (out / "README.md").read_text()
    assert _front_matter(card)["pipeline_tag"] == "fill-mask" and "AutoModelForMaskedLM" in card


# ------------------------------------------------------------------------------------------------------- training
def test_trained_head_is_kept_and_reported(run_mlm, bare_model, tmp_path, caplog):
    from transformers import AutoModelForMaskedLM

    with caplog.at_level(logging.WARNING):
        out = export_fairseq_to_hf(run_mlm, tmp_path / "hf", spm_model=bare_model / "sentencepiece.bpe.model")
    rec = json.loads((out / "translit_ppa_export.json").read_text())
    assert rec["lm_head_trained"] is True and rec["lm_head"].startswith("kept: trained")
    assert rec["architecture"] == "XLMRobertaForMaskedLM"
    assert rec["config_changes"]["architectures"] == {"source": ["XLMRobertaModel"],
                                                      "exported": ["XLMRobertaForMaskedLM"]}
    assert "--finetune-from-model" in " ".join(rec["lineage"]["how_found"])
    assert any("LM head was trained" in r.getMessage() for r in caplog.records)
    _, info = AutoModelForMaskedLM.from_pretrained(str(out), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert rec["parity"]["logits"]["rel"] < 1e-4  # the trained head's logits, compared with fairseq's
    assert "trained" in (out / "README.md").read_text()


def test_untrained_head_of_a_trained_body_is_dropped(run_seq, bare_hf, bare_model, tmp_path):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    from translit_plugin.checkpoint_compat import load_fairseq_checkpoint
    from translit_plugin.hub import from_pretrained

    start = load_fairseq_checkpoint(bare_model / "model.pt")["model"]
    trained = load_fairseq_checkpoint(run_seq)["model"]
    assert not torch.equal(start["encoder.sentence_encoder.layers.0.fc1.weight"],
                           trained["encoder.sentence_encoder.layers.0.fc1.weight"])  # the body did train
    out = export_fairseq_to_hf(run_seq, tmp_path / "hf", spm_model=bare_model / "sentencepiece.bpe.model")
    rec = json.loads((out / "translit_ppa_export.json").read_text())
    assert rec["lm_head_trained"] is False and rec["architecture"] == "XLMRobertaModel" and rec["num_updates"] == 2
    _, info = AutoModel.from_pretrained(str(out), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    # the use setting travels from the start model: sentence-transformers reads the trained model as the hub does
    hub = from_pretrained(run_seq.parent, run_seq.name, sentencepiece_model=bare_model / "sentencepiece.bpe.model",
                          dictionary=bare_model / "dict.txt").eval()
    assert hub.use.prompts == E5_USE["prompts"]
    st = SentenceTransformer(str(out), device="cpu")
    ours = torch.as_tensor(st.encode(TEXTS, prompt_name="query", convert_to_tensor=True))
    assert (ours - hub.embed(TEXTS, prompt_name="query")).abs().max() <= 1e-5
    assert (ours - _mean_reference(bare_hf, TEXTS, "query: ")).abs().max() > 1e-4  # not the start model's vectors


def test_the_demo_path_trim_train_untrim_export_stays_bare(prepared, bare_hf, bare_model, tmp_path):
    """e5's path in the demo: trim the vocabulary, train (SEQ only) on the trimmed model, untrim, export: the start
    model is found through untrim.json, the untrimmed head is still the start model's, the export is bare."""
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    from translit_plugin.hub import from_pretrained
    from translit_plugin.prepare.pipeline import PrepareConfig, run_prepare
    from translit_plugin.prepare.sample import SampleConfig
    from translit_plugin.trimming.trim import trim_model_dir
    from translit_plugin.trimming.untrim import untrim

    trimmed = tmp_path / "trimmed"
    trim_model_dir(bare_model, [prepared], trimmed, check_lines=2)
    run_prepare(PrepareConfig(input=prepared.parent / "corpus" / "train", model_dir=trimmed, output=tmp_path / "prep",
                              progress=False, max_length=60, verify_samples=4, verify_translit=1,
                              sample=SampleConfig(min_sentences=10**6, valid_size=8, chunk_size=50)))  # fmt: skip
    ckpt = _train(tmp_path / "prep" / "data-bin", trimmed, tmp_path / "checkpoints",
                  "--mlm-orig-weight", "0", "--mlm-latn-weight", "0", "--tlm-weight", "0")  # fmt: skip
    full = untrim(ckpt, bare_model, tmp_path / "full")
    out = export_fairseq_to_hf(full / "model.pt", tmp_path / "hf")
    rec = json.loads((out / "translit_ppa_export.json").read_text())
    assert rec["architecture"] == "XLMRobertaModel" and rec["lm_head_trained"] is False
    assert "untrim.json" in rec["lineage"]["how_found"][0] and rec["lineage"]["start_model_dir"] == str(bare_model)
    _, info = AutoModel.from_pretrained(str(out), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert json.loads((out / "config.json").read_text()) == {**json.loads((bare_hf / "config.json").read_text()),
                                                             "vocab_size": 3002}  # fmt: skip
    st = SentenceTransformer(str(out), device="cpu")
    hub = from_pretrained(full).eval()
    ours = torch.as_tensor(st.encode(TEXTS, prompt_name="query", convert_to_tensor=True))
    assert (ours - hub.embed(TEXTS, prompt_name="query")).abs().max() <= 1e-5


# ----------------------------------------------------------------------------------------------------- model card
@pytest.fixture(scope="module")
def demo_results(bare_model, run_seq, tmp_path_factory) -> Path:
    """The demo's evaluation script, run for real on the start model and the trained checkpoint (small sizes)."""
    out = tmp_path_factory.mktemp("demo_eval")
    cmd = [sys.executable, str(REPO / "scripts" / "demo_eval.py"), "--start", str(bare_model), "--checkpoint",
           str(run_seq), "--assets", str(bare_model), "--out", str(out), "--max-sentences", "12", "--heldout", "",
           "--romanisations", "uroman"]  # fmt: skip
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return out / "demo_results.json"


@pytest.fixture(scope="module")
def evaluate_results(bare_model, tmp_path_factory) -> Path:
    """``translit-ppa evaluate retrieval`` results (JSON lines) of the start model on the held-out gettext set."""
    out = tmp_path_factory.mktemp("eval") / "results.jsonl"
    rc = main(["--log-level", "WARNING", "evaluate", "retrieval", "--models", f"start={bare_model}", "--data-dir",
               str(REPO / "examples" / "data" / "heldout"), "--prefix", "gettext", "--sources", "eng_Latn",
               "--targets", "ell_Grek", "kor_Hang", "--max-eval-examples", "20", "-o", str(out), "--no-progress"])
    assert rc == 0
    return out


def test_model_card(run_seq, bare_model, demo_results, evaluate_results, tmp_path):
    out = tmp_path / "aligned-hf"
    rc = main(["--log-level", "WARNING", "export-hf", str(run_seq), str(out), "--spm",
               str(bare_model / "sentencepiece.bpe.model"), "--results", str(demo_results), str(evaluate_results)])
    assert rc == 0
    card = (out / "README.md").read_text(encoding="utf-8")
    meta = _front_matter(card)
    assert meta["language"] == ["ell", "kor"] and meta["license"] == "unknown"  # a local random start model
    assert meta["library_name"] == "sentence-transformers" and meta["pipeline_tag"] == "sentence-similarity"
    assert "translit-ppa" in meta["tags"] and "base_model" not in meta  # no hub id to name
    sections = [line for line in card.splitlines() if line.startswith("## ")]
    assert sections == ["## Start model", "## Training", "## Where the model is read", "## Evaluation", "## Licences",
                        "## How to load", "## Provenance"]  # fmt: skip
    assert "- updates: 2" in card and "| ell_Grek |" in card  # languages and pairs from the prepare manifest
    assert "criterion `mlm_seq_tlm`" in card and "--mlm-orig-weight 0.0" in card and "--seq-layer 1" in card
    assert "--lr [0.001]" in card and "--max-update 2" in card and "--seed 3" in card
    assert "--adam-betas" not in card  # its default, saved as a list, is not reported as a change
    assert "BSD-3-Clause" in card  # the demo corpus's provenance, found beside the prepare input
    # both results files, each as its own tables
    demo = json.loads(demo_results.read_text())
    assert f"view `use` ({demo['views']['use']})" in card and f"view `probe` ({demo['views']['probe']})" in card
    row = demo["summary"]["dev"]["use"]["Avg non-Latin"]["uroman2eng_top1"]
    assert f"{row['start']:.1f} -> {row['aligned']:.1f}" in card
    assert "sr-b, source eng_Latn, layer 2, mean, prompt 'query: '" in card  # the reading, as evaluate records it
    records = [json.loads(line) for line in evaluate_results.read_text().splitlines()]
    top10 = sum(r["metrics"]["tgt2src_top10"] for r in records) / len(records)
    header = next(line for line in card.splitlines() if line.startswith("| model | targets | seeds |"))
    cols = header.strip("| ").split(" | ")
    assert cols.index("tgt2src_top1") < cols.index("tgt2src_top5") < cols.index("tgt2src_top10")
    row = next(line for line in card.splitlines() if line.startswith("| start | 2 | 1 |")).strip("| ").split(" | ")
    assert row[cols.index("tgt2src_top10")] == f"{100 * top10:.1f}"  # the mean over both targets
    assert "prompt_name='query'" in card
    rec = json.loads((out / "translit_ppa_export.json").read_text())
    assert rec["results"] == [str(demo_results.resolve()), str(evaluate_results.resolve())]


def test_bad_results_file_is_exit_2_and_writes_nothing(bare_model, tmp_path, capsys):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json", encoding="utf-8")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"views": {}, "results": {}, "summary": {"dev": {"use": {"x": {}}}}}), encoding="utf-8")
    for results, said in ((tmp_path / "missing.json", "no such file"), (bad_json, "not a result record"),
                          (other, "incomplete")):  # fmt: skip
        rc = main(["export-hf", str(bare_model / "model.pt"), str(tmp_path / "hf"), "--results", str(results)])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and said in err and str(results) in err and len(err.splitlines()) == 1, err
        assert not (tmp_path / "hf").exists()


def test_force_replaces_an_export_with_its_sentence_transformers_files(bare_model, tmp_path, capsys):
    out = tmp_path / "hf"
    assert main(["export-hf", str(bare_model / "model.pt"), str(out), "--no-parity-check"]) == 0
    assert (out / "1_Pooling" / "config.json").is_file()
    first = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert main(["export-hf", str(bare_model / "model.pt"), str(out), "--no-parity-check", "--force"]) == 0
    again = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert again == first and "README.md" in first  # the same inputs give the same bytes, card included
    (out / "1_Pooling" / "notes.txt").write_text("mine", encoding="utf-8")
    capsys.readouterr()
    assert main(["export-hf", str(bare_model / "model.pt"), str(out), "--no-parity-check", "--force"]) == 2
    assert "1_Pooling" in capsys.readouterr().err and (out / "1_Pooling" / "notes.txt").read_text() == "mine"


def test_source_unknown_keeps_the_earlier_behaviour(bare_model, tmp_path):
    """A checkpoint with no record of its start model: an MLM export rebuilt from the checkpoint, and it says so."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copyfile(bare_model / "model.pt", run / "checkpoint_best.pt")
    from omegaconf import open_dict

    from translit_plugin.checkpoint_compat import load_fairseq_checkpoint

    state = load_fairseq_checkpoint(run / "checkpoint_best.pt")
    with open_dict(state["cfg"]):
        state["cfg"].task.data = str(tmp_path / "gone")  # convert names its own directory here; make it unknown
    torch.save(state, run / "checkpoint_best.pt")
    out = export_fairseq_to_hf(run / "checkpoint_best.pt", tmp_path / "hf", spm_model=bare_model /
                               "sentencepiece.bpe.model", check_parity=False)  # fmt: skip
    rec = json.loads((out / "translit_ppa_export.json").read_text())
    assert rec["architecture"] == "XLMRobertaForMaskedLM" and rec["lm_head_trained"] is None
    assert "unknown" in rec["config_from"] and "--start-dir" in " ".join(rec["lineage"]["how_found"])
    # told where it started, the same checkpoint exports bare
    out2 = export_fairseq_to_hf(run / "checkpoint_best.pt", tmp_path / "hf2", spm_model=bare_model /
                                "sentencepiece.bpe.model", check_parity=False, start_dir=bare_model)  # fmt: skip
    assert json.loads((out2 / "translit_ppa_export.json").read_text())["architecture"] == "XLMRobertaModel"
