"""Readers of the evaluation formats: real-text fixtures in each layout, and every kind of broken input."""

from __future__ import annotations

import pytest
from eval_fixtures import (
    chromium_classification,
    parallel_dev,
    tagging_labels,
    treebank_sentences,
    write_retrieval,
    write_sib200,
    write_tagging,
    write_taxi1500,
)

from translit_plugin.evaluation import readers as R


def test_retrieval_layout_roundtrip(tmp_path):
    par = parallel_dev(["eng_Latn", "ell_Grek", "kor_Hang"], n=50)
    write_retrieval(tmp_path, par, prefix="tatoeba")
    assert R.discover_retrieval_languages(tmp_path, "tatoeba") == ["ell_Grek", "kor_Hang"]
    assert R.discover_retrieval_languages(tmp_path, "bible") == []
    src, eng = R.read_retrieval_pair(tmp_path, "ell_Grek", "tatoeba")
    assert src == par["ell_Grek"] and eng == par["eng_Latn"]
    src, eng = R.read_retrieval_pair(tmp_path, "kor_Hang", "tatoeba", max_examples=7)
    assert len(src) == len(eng) == 7


def test_retrieval_errors_name_the_file(tmp_path):
    par = parallel_dev(["eng_Latn", "ell_Grek", "heb_Hebr", "tur_Latn"], n=20)
    write_retrieval(tmp_path, par)
    (tmp_path / "bible.heb_Hebr-eng_Latn.heb_Hebr").unlink()  # missing side
    with pytest.raises(R.EvalDataError, match=r"missing retrieval file .*bible\.heb_Hebr-eng_Latn\.heb_Hebr"):
        R.read_retrieval_pair(tmp_path, "heb_Hebr")
    assert "heb_Hebr" in R.discover_retrieval_languages(tmp_path)  # still found, so the grid reports it
    (tmp_path / "bible.tur_Latn-eng_Latn.tur_Latn").write_text("", encoding="utf-8")
    with pytest.raises(R.EvalDataError, match="is empty"):
        R.read_retrieval_pair(tmp_path, "tur_Latn")
    (tmp_path / "bible.ell_Grek-eng_Latn.ell_Grek").write_text("one line\n", encoding="utf-8")
    with pytest.raises(R.EvalDataError, match="line-parallel"):
        R.read_retrieval_pair(tmp_path, "ell_Grek")
    with pytest.raises(R.EvalDataError, match="pivot"):
        R.read_retrieval_pair(tmp_path, "eng_Latn")


def test_language_list(tmp_path):
    p = tmp_path / "langs.tsv"
    p.write_text("amh_Ethi\t1\nell_Grek\t0\n\nheb_Hebr\t1\n", encoding="utf-8")
    assert R.read_language_list(p) == ["amh_Ethi", "ell_Grek", "heb_Hebr"]
    assert R.read_language_list(p, flag=1) == ["amh_Ethi", "heb_Hebr"]
    p.write_text("amh_Ethi\tyes\n", encoding="utf-8")
    with pytest.raises(R.EvalDataError, match=r"langs.tsv:1"):
        R.read_language_list(p)


def test_taxi1500_and_sib200_layouts(tmp_path):
    langs = ["eng_Latn", "tur_Latn"]
    texts, labels = chromium_classification(langs)
    write_taxi1500(tmp_path / "taxi", texts, labels)
    write_sib200(tmp_path / "sib", texts, labels)
    assert R.discover_classification_languages(tmp_path / "taxi", "taxi1500") == langs
    assert R.discover_classification_languages(tmp_path / "sib", "sib200") == langs
    for task, d in (("taxi1500", tmp_path / "taxi"), ("sib200", tmp_path / "sib")):
        parts = [R.read_classification(task, d, "tur_Latn", s) for s in ("train", "dev", "test")]
        assert sum(len(p) for p in parts) == len(labels)
        assert parts[0].texts[0] == texts["tur_Latn"][0] and parts[0].labels[0] == labels[0]
        assert set(parts[2].labels) <= set(labels)
    # Taxi1500 also accepted in per-language folders
    (tmp_path / "taxi2" / "tur_Latn").mkdir(parents=True)
    for f in (tmp_path / "taxi").glob("*tur_Latn*"):
        (tmp_path / "taxi2" / "tur_Latn" / f.name).write_bytes(f.read_bytes())
    assert len(R.read_classification("taxi1500", tmp_path / "taxi2", "tur_Latn", "dev")) == len(parts[1])


def test_classification_malformed_lines_and_labels(tmp_path):
    p = tmp_path / "x_test.tsv"
    p.write_text("1\tFaith\tIn the beginning\n2\tonly-two-fields\n\n3\tSin\tand then\textra tab\n", encoding="utf-8")
    data = R.read_taxi1500(p)
    assert data.labels == ["Faith", "Sin"] and data.texts[1] == "and then\textra tab"
    assert data.warnings and "lines [2]" in data.warnings[0]
    with pytest.raises(R.EvalDataError, match="'Sin', which is not among"):
        R.check_labels(data, ["Faith"], "labels of the source training set")
    p.write_text("", encoding="utf-8")
    with pytest.raises(R.EvalDataError, match="no usable examples"):
        R.read_taxi1500(p)
    s = tmp_path / "test.tsv"
    s.write_text("index_id\ttopic\ttext\n1\ta\tb\n", encoding="utf-8")
    with pytest.raises(R.EvalDataError, match=r"lacks column\(s\) \['category'\]"):
        R.read_sib200(s)
    s.write_text('index_id\tcategory\ttext\n1\tsports\t"Quoted" start\n2\tsports\n', encoding="utf-8")
    d = R.read_sib200(s)
    assert d.texts == ['"Quoted" start'] and len(d.warnings) == 1


@pytest.mark.parametrize("task", ["pos", "ner"])
def test_tagging_layout_from_treebank(tmp_path, task):
    write_tagging(tmp_path, task)
    assert R.discover_tagging_languages(tmp_path) == ["trx_Latn", "tur_Latn"]
    labels = R.read_label_list(tmp_path)
    assert labels == tagging_labels(task)
    data = R.read_tagging(tmp_path / "train-tur_Latn.tsv", task, labels)
    gold = treebank_sentences(task)[:60]
    assert data.sentences == [[w for w, _ in s] for s in gold]
    assert data.labels == [[t for _, t in s] for s in gold]
    folded = R.read_tagging(tmp_path / "test-trx_Latn.tsv", task, labels)
    assert "ı" not in "".join(w for s in folded.sentences for w in s)


def test_tagging_quirks_and_errors(tmp_path):
    p = tmp_path / "test-xx_Latn.tsv"
    p.write_text("-DOCSTART-\tO\n\nAnkara\tB-LOC\nçok\tO\textra\n\tO\ngüzel\n\n\nbir\tO\n", encoding="utf-8")
    d = R.read_tagging(p, "ner", ["O", "B-LOC"])
    # 3 fields and 1 field -> "O" (as the reference reader); an empty token is skipped
    assert d.sentences == [["Ankara", "çok", "güzel"], ["bir"]]
    assert d.labels == [["B-LOC", "O", "O"], ["O"]]
    assert any("lines [4, 6]" in w for w in d.warnings) and any("empty token" in w for w in d.warnings)
    pos = R.read_tagging(p, "pos")
    assert pos.labels[0][1] == "X"
    with pytest.raises(R.EvalDataError, match=r"test-xx_Latn\.tsv:3: label 'B-LOC' is not in labels.txt"):
        R.read_tagging(p, "ner", ["O"])
    p.write_text("\n\n", encoding="utf-8")
    with pytest.raises(R.EvalDataError, match="no sentences"):
        R.read_tagging(p, "ner")
    with pytest.raises(R.EvalDataError, match="label list not found"):
        R.read_label_list(tmp_path)
    with pytest.raises(R.EvalDataError, match="file not found"):
        R.read_tagging(tmp_path / "missing.tsv", "pos")
