"""Fine-tuning: first-subword features, chunking + re-assembly, seeding of every random choice, dev selection."""

from __future__ import annotations

import pytest
import torch
from eval_fixtures import chromium_classification, tagging_labels, treebank_sentences

from translit_plugin.evaluation.finetune import (
    IGNORE,
    FinetuneConfig,
    SequenceClassifier,
    TokenClassifier,
    TokenizerAdapter,
    default_config,
    tagging_features,
)
from translit_plugin.evaluation.readers import ClassificationData, TaggingData


def _fake_tokenizer() -> TokenizerAdapter:
    # word -> one piece per 2 characters, ids from the characters; <s>=0, </s>=2, <unk>=3
    def encode(text: str) -> torch.Tensor:
        ids = [0]
        for w in text.split():
            ids += [10 + (ord(w[i]) % 50) for i in range(0, len(w), 2)]
        return torch.tensor(ids + [2])

    return TokenizerAdapter(encode, bos=0, eos=2, unk=3)


def test_tagging_features_chunking_and_first_subword_labels():
    tok = _fake_tokenizer()
    words = ["ab", "abcdef", "a", "abcd", "abcdefghijklmnop", "x"]  # pieces: 1, 3, 1, 2, 8, 1
    data = TaggingData([words, ["a", "b"]], [["A", "B", "A", "B", "A", "B"], ["B", "A"]], "mem")
    feats = tagging_features(tok, data, {"A": 0, "B": 1}, max_length=6)  # 4 subwords between <s> and </s>
    # sentence 0 chunks: [ab abcdef] (4) | [a abcd] (3) | [abcdefghijklmnop -> cut to 4] | [x]; sentence 1: [a b]
    assert [(f.sentence, f.n_words) for f in feats] == [(0, 2), (0, 2), (0, 1), (0, 1), (1, 2)]
    for f in feats:
        assert f.ids.numel() <= 6 and f.ids[0] == 0 and f.ids[-1] == 2
        assert int((f.label != IGNORE).sum()) == f.n_words
    assert feats[0].label.tolist() == [IGNORE, 0, 1, IGNORE, IGNORE, IGNORE]
    assert feats[2].label.tolist() == [IGNORE, 0, IGNORE, IGNORE, IGNORE, IGNORE]
    with pytest.raises(ValueError):
        tagging_features(tok, data, {"A": 0, "B": 1}, max_length=2)


def test_empty_word_still_carries_its_label():
    tok = TokenizerAdapter(lambda s: torch.tensor([0, 2]), bos=0, eos=2, unk=3)  # maps everything to nothing
    assert tok.word("\u200b") == [3]


def test_default_configs_are_the_papers():
    assert default_config("taxi1500") == FinetuneConfig(lr=1e-5, batch_size=32, max_epochs=40, max_length=100)
    assert default_config("sib200").max_length == 160
    ner, pos = default_config("ner"), default_config("pos")
    assert (ner.lr, ner.grad_accum, ner.max_epochs, ner.max_length) == (2e-5, 2, 5, 256)
    assert pos.max_epochs == 10 and default_config("pos", max_epochs=2, lr=None).max_epochs == 2


@pytest.fixture(scope="module")
def hub(tiny_model_dir):
    from translit_plugin.hub import from_pretrained

    return from_pretrained(str(tiny_model_dir))


def _classification_data():
    texts, labels = chromium_classification(["eng_Latn", "tur_Latn"])
    n = len(labels)
    train = ClassificationData(texts["eng_Latn"][:120], labels[:120], "eng train")
    dev = ClassificationData(texts["eng_Latn"][120:170], labels[120:170], "eng dev")
    test = ClassificationData(texts["tur_Latn"][170:n], labels[170:n], "tur test")
    return train, dev, test, sorted(set(labels))


def test_sequence_classifier_seeded_and_selects_best_epoch(hub):
    from translit_plugin.evaluation.finetune import restore, snapshot

    train, dev, test, labels = _classification_data()
    cfg = FinetuneConfig(lr=1e-3, batch_size=16, max_epochs=3, max_length=32)
    pristine = snapshot(hub.model)
    runs = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        restore(hub.model, pristine)
        clf = SequenceClassifier(hub, labels, cfg, device="cpu")
        res = clf.fit(train, dev, seed=seed)
        logits = clf.model(torch.stack([clf.tok.sentence(t, 32)[:8] for t in test.texts[:4]]))
        runs[name] = (res, clf.predict(test), logits.detach(), clf.model.head.dense.weight.detach().clone())
    restore(hub.model, pristine)
    (ra, pa, la, _), (rb, pb, lb, _), (_, _, lc, _) = runs["a"], runs["b"], runs["c"]
    assert ra.history == rb.history and pa == pb and torch.equal(la, lb)  # same seed: identical run
    assert not torch.equal(la, lc)  # another seed: another head init / order / dropout
    assert ra.best_dev == max(h["dev"] for h in ra.history)
    assert ra.history[ra.best_epoch - 1]["dev"] == ra.best_dev
    assert len(pa) == len(test) and set(pa) <= set(labels)
    assert ra.history[-1]["train_loss"] < ra.history[0]["train_loss"]  # it learns
    # the encoder was restored: a fresh classifier on the same seed reproduces run a
    clf = SequenceClassifier(hub, labels, cfg, device="cpu")
    assert clf.fit(train, dev, seed=1).history == ra.history
    restore(hub.model, pristine)


def test_token_classifier_chunks_reassemble(hub):
    from translit_plugin.evaluation.finetune import restore, snapshot

    labels = tagging_labels("pos")
    sents = treebank_sentences("pos")
    data = lambda part: TaggingData([[w for w, _ in s] for s in part], [[t for _, t in s] for s in part], "tb")
    train, dev, test = data(sents[:50]), data(sents[50:70]), data(sents[70:100])
    pristine = snapshot(hub.model)
    cfg = FinetuneConfig(lr=1e-3, batch_size=8, grad_accum=2, max_epochs=2, max_length=12)  # forces chunking
    clf = TokenClassifier(hub, labels, cfg, device="cpu")
    feats = clf._features(test)
    assert len(feats) > len(test)  # long sentences were split
    res = clf.fit(train, dev, seed=3)
    preds = clf.predict(test)
    assert [len(p) for p in preds] == [len(s) for s in test.sentences]
    assert all(t in labels for p in preds for t in p)
    assert res.best_epoch in (1, 2)
    restore(hub.model, pristine)
    # max length above the model's positions is capped instead of failing
    big = TokenClassifier(hub, labels, FinetuneConfig(max_length=100000), device="cpu")
    assert big.cfg.max_length == hub.max_positions
