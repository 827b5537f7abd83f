"""Our retrieval (fairseq model, converted on the fly or pre-converted) equals HF Transformers on the HF form.

Reference computed here with ``transformers.AutoModel(output_hidden_states=True)``: ``hidden_states[layer]`` mean
over the attention mask (``<s>``/``</s>`` included), L2-normalised, nearest neighbours by inner product.
"""

from __future__ import annotations

import pytest
import torch
from eval_fixtures import parallel_dev, write_retrieval

from translit_plugin.evaluation.results import read_records
from translit_plugin.evaluation.retrieval import topk_accuracy
from translit_plugin.hub.encoding import embed_sentences

LANGS = ["eng_Latn", "ell_Grek", "kor_Hang", "ara_Arab"]
N = 120  # sentences per language: enough that top-1 / top-10 are not all 0 or 1 for a random model


def _hf_embed(model, tok, sentences: list[str], layer: int, batch_size: int = 16) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for i in range(0, len(sentences), batch_size):
            batch = tok(sentences[i : i + batch_size], padding=True, truncation=True, return_tensors="pt")
            h = model(**batch, output_hidden_states=True).hidden_states[layer]  # B x T x C
            m = batch["attention_mask"].unsqueeze(-1).float()
            out.append((h * m).sum(1) / m.sum(1))
    return torch.cat(out)


@pytest.fixture(scope="module")
def hf_reference(tiny_hf_dir):
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(str(tiny_hf_dir)).eval()  # eval: dropout off
    tok = AutoTokenizer.from_pretrained(str(tiny_hf_dir))
    return model, tok


@pytest.mark.parametrize("layer", [1, 2])
def test_embeddings_equal_hf(tiny_model_dir, hf_reference, layer):
    from translit_plugin.hub import from_pretrained

    hub = from_pretrained(str(tiny_model_dir)).eval()
    sents = parallel_dev(["ell_Grek"], n=40)["ell_Grek"] + ["", "x " * 300]  # empty and over-long lines too
    ours = embed_sentences(hub, sents, layer=layer, batch_size=8, progress=False)
    unsorted = embed_sentences(hub, sents, layer=layer, batch_size=8, sort_by_length=False, progress=False)
    ref = _hf_embed(*hf_reference, sents, layer)
    assert torch.allclose(ours, ref, atol=1e-5), (ours - ref).abs().max()
    assert torch.allclose(ours, unsorted, atol=1e-5)
    assert torch.allclose(ours, hub.embed(sents, layer=layer, batch_size=8), atol=1e-6)
    with pytest.warns(FutureWarning, match="deprecated"):  # the old name of the same pooling
        old = hub.embed(sents, layer=layer, pooling="mean", batch_size=8)
    assert torch.equal(old, hub.embed(sents, layer=layer, pooling="mean_with_special", batch_size=8))


def test_retrieval_scores_equal_hf(tiny_hf_dir, tiny_model_dir, hf_reference, tmp_path):
    from translit_plugin.cli import main

    par = parallel_dev(LANGS, n=N)
    data = write_retrieval(tmp_path / "srb", par)
    out = tmp_path / "res.jsonl"
    rc = main(["evaluate", "retrieval", "--models", f"hf={tiny_hf_dir}", f"fs={tiny_model_dir}",
               "--data-dir", str(data), "--output", str(out), "--layer", "2", "--sources", "eng_Latn", "ell_Grek",
               "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--no-progress"])
    assert rc == 0
    recs = {(r["model"], r["source"], r["target"]): r for r in read_records(out)}
    assert len(recs) == 2 * (3 + 2)  # eng -> 3 targets, ell -> 2 targets, for both models
    assert list((tmp_path / "cache").iterdir()), "the HF model was converted into the cache directory"
    emb = {lang: _hf_embed(*hf_reference, par[lang], layer=2) for lang in LANGS}
    for source in ("eng_Latn", "ell_Grek"):
        for target in LANGS[1:]:
            if target == source:
                continue
            ref = {f"tgt2src_{k}": v for k, v in topk_accuracy(emb[target], emb[source]).items()}
            ref.update({f"src2tgt_{k}": v for k, v in topk_accuracy(emb[source], emb[target]).items()})
            for model in ("hf", "fs"):
                got = recs[(model, source, target)]
                assert got["status"] == "ok"
                topk = {k: v for k, v in got["metrics"].items() if "_mining_" not in k}
                assert topk == pytest.approx(ref, abs=1e-12), (model, source, target)
                # MTEB's mining accuracy is the nearest neighbour's: top-1 of the same direction
                assert got["metrics"]["tgt2src_mining_accuracy"] == pytest.approx(ref["tgt2src_top1"], abs=1e-12)
    # not a degenerate comparison: scores vary across pairs and are neither all 0 nor all 1
    values = {round(r["metrics"]["tgt2src_top10"], 6) for r in recs.values()}
    assert len(values) > 1 and all(0.0 < v < 1.0 for v in values)
