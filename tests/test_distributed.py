"""Multi-worker SEQ: two gloo CPU workers, each with part of a batch, against one process with the whole batch.

The workers reproduce fairseq's gradient arithmetic (sum the workers' gradients, divide by the summed sample sizes:
``legacy_ddp`` averages and the trainer multiplies by ``world_size / sample_size``), so what is compared is the update
direction fairseq-train would apply.

* ``exact`` (default): equal to the single-process gradient (1e-5 relative), also with unequal halves;
* ``reference``: the SEQ part is ``1/W`` of it (the paper's code), checked with SEQ as the only term;
* ``local``: each worker's SEQ sees only its own pairs: equal to the mean of the two halves' single-process gradients.
"""

import os
from argparse import Namespace
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from translit_helpers import cached_data_bin

WORLD = 2


def _build(data: str, crit_kwargs: dict):
    """Task, tiny deterministic model (seed 0, dropout 0) and criterion; same weights in every process."""
    from omegaconf import OmegaConf

    import translit_plugin.plugin  # noqa: F401  (registers the components)
    from translit_plugin.criterions.mlm_seq_tlm import MlmSeqTlmCriterion
    from translit_plugin.models.translit_roberta import TranslitRobertaModel, translit_roberta_tiny
    from translit_plugin.tasks.translit_align import TranslitAlignConfig, TranslitAlignTask

    cfg = OmegaConf.structured(TranslitAlignConfig(data=data, seed=3, tokens_per_sample=64))
    task = TranslitAlignTask.setup_task(cfg)
    task.load_dataset("train")
    args = Namespace(dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, pooler_dropout=0.0)
    translit_roberta_tiny(args)
    torch.manual_seed(0)  # identical initial weights everywhere
    model = TranslitRobertaModel.build_model(args, task)
    model.train()  # dropout is 0, so train mode is deterministic
    crit = MlmSeqTlmCriterion(task, seq_layer=1, **crit_kwargs)
    return task, model, crit


def _batch(task, indices):
    ds = task.datasets["train"]
    return ds.collater([ds[i] for i in indices])


def _grads(model) -> dict:
    return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in model.named_parameters()}


def _worker(rank: int, data: str, rendezvous: str, out_dir: str, crit_kwargs: dict, splits: list) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=WORLD)
    task, model, crit = _build(data, crit_kwargs)
    loss, sample_size, log = crit(model, _batch(task, splits[rank]))
    loss.backward()
    # fairseq: legacy_ddp all-reduces (sum / W), then the trainer multiplies by W / sum(sample_size)
    total = torch.tensor([float(sample_size)], dtype=torch.float64)
    dist.all_reduce(total)
    grads = _grads(model)
    for g in grads.values():
        dist.all_reduce(g)
        g.div_(float(total))
    logged = {k: float(v) for k, v in log.items()}
    torch.save({"grads": grads, "log": logged}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def _run_workers(tmp_path: Path, data: Path, crit_kwargs: dict, splits: list) -> list[dict]:
    mp.spawn(_worker, args=(str(data), str(tmp_path / "rdv"), str(tmp_path), crit_kwargs, splits), nprocs=WORLD)
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]


def _single(data: Path, crit_kwargs: dict, indices: list) -> tuple[dict, dict]:
    task, model, crit = _build(str(data), crit_kwargs)
    loss, sample_size, log = crit(model, _batch(task, indices))
    (loss / sample_size).backward()
    return _grads(model), log


def _assert_close(got: dict, want: dict, scale: float = 1.0, rtol: float = 1e-5) -> None:
    """Every gradient within ``rtol`` of the largest gradient entry of the model (a few tensors, e.g. attention key
    biases, have a gradient that is zero in exact arithmetic: their float noise is compared on the model's scale)."""
    want = {n: w * scale for n, w in want.items()}
    top = max(float(w.abs().max()) for w in want.values())
    assert top > 1e-6, "the reference gradient is (nearly) all zero: the comparison would be vacuous"
    for name, w in want.items():
        err = float((got[name] - w).abs().max())
        assert err <= rtol * top, f"{name}: max error {err:.2e} vs largest gradient {top:.2e}"
    err = max(float((got[n] - w).abs().max()) for n, w in want.items())
    print(f"max abs gradient error {err:.2e}, largest gradient {top:.2e}")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return cached_data_bin(tmp_path_factory.getbasetemp())


ALL_TERMS = {"seq_gather": "exact"}
SEQ_ONLY = {"mlm_orig_weight": 0.0, "mlm_latn_weight": 0.0, "tlm_weight": 0.0}


@pytest.mark.parametrize("chunk", [0, 40])
def test_exact_gather_gives_the_single_process_gradient_with_unequal_halves(data, tmp_path, chunk):
    indices = list(range(0, 160, 20))  # 8 pairs from 4 languages
    splits = [indices[:5], indices[5:]]  # unequal halves: exercises padded gathering and global MLM normalisers
    kwargs = {**ALL_TERMS, "encoder_chunk_tokens": chunk}  # 40: every pass in length-sorted chunks
    results = _run_workers(tmp_path, data, kwargs, splits)
    want, log = _single(data, {**ALL_TERMS}, indices)
    _assert_close(results[0]["grads"], want)
    _assert_close(results[1]["grads"], want)
    # the logged loss contributions of the two workers add up to the global-batch loss
    assert abs(sum(r["log"]["loss"] for r in results) - float(log["loss"])) < 1e-4
    assert abs(sum(r["log"]["seq_loss"] for r in results) - float(log["seq_loss"])) < 1e-5


def test_reference_gather_gives_one_over_w_of_the_seq_gradient(data, tmp_path):
    indices = list(range(3, 160, 20))
    splits = [indices[:4], indices[4:]]
    kwargs = {**SEQ_ONLY, "seq_gather": "reference"}
    results = _run_workers(tmp_path, data, kwargs, splits)
    want, _ = _single(data, {**SEQ_ONLY, "seq_gather": "exact"}, indices)
    _assert_close(results[0]["grads"], want, scale=1.0 / WORLD)


def test_local_gather_averages_the_two_halves(data, tmp_path):
    indices = list(range(7, 160, 20))
    splits = [indices[:4], indices[4:]]
    kwargs = {**SEQ_ONLY, "seq_gather": "local"}
    results = _run_workers(tmp_path, data, kwargs, splits)
    halves = [_single(data, kwargs, s)[0] for s in splits]
    want = {n: (halves[0][n] + halves[1][n]) / 2 for n in halves[0]}
    _assert_close(results[0]["grads"], want)


def _teacher_checkpoint(data: Path, path: Path) -> str:
    """A fairseq checkpoint of a tiny model with other weights (seed 1) than the trained one (seed 0)."""
    from omegaconf import OmegaConf

    import translit_plugin.plugin  # noqa: F401  (registers the components)
    from translit_plugin.models.translit_roberta import TranslitRobertaModel, translit_roberta_tiny
    from translit_plugin.tasks.translit_align import TranslitAlignConfig, TranslitAlignTask

    task = TranslitAlignTask.setup_task(OmegaConf.structured(TranslitAlignConfig(data=str(data), tokens_per_sample=64)))
    args = Namespace(dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, pooler_dropout=0.0)
    translit_roberta_tiny(args)
    torch.manual_seed(1)
    model = TranslitRobertaModel.build_model(args, task)
    cfg = OmegaConf.create({"model": {**vars(args), "_name": "translit_roberta"}})
    state = {"cfg": cfg, "model": model.state_dict(), "args": None,
             "optimizer_history": [{"criterion_name": "x", "optimizer_name": "x", "lr_scheduler_state": {},
                                    "num_updates": 0}], "extra_state": {}}  # fmt: skip
    torch.save(state, path)
    return str(path)


@pytest.mark.parametrize("kind", ["infonce", "mse"])
def test_exact_gather_anchor_gives_the_single_process_gradient(data, tmp_path, kind):
    """The anchored term with gathered teacher vectors (InfoNCE negatives from both workers) and global normalisers."""
    teacher = _teacher_checkpoint(data, tmp_path / "teacher.pt")
    kwargs = {**SEQ_ONLY, "seq_weight": 0.0, "anchor_weight": 1.0, "anchor_teacher": teacher, "anchor_layer": 2,
              "anchor_loss": kind}  # fmt: skip
    indices = list(range(1, 160, 20))
    splits = [indices[:3], indices[3:]]
    results = _run_workers(tmp_path, data, kwargs, splits)
    want, log = _single(data, kwargs, indices)
    _assert_close(results[0]["grads"], want)
    _assert_close(results[1]["grads"], want)
    total = sum(r["log"]["anchor_sum"] for r in results)
    assert abs(total - float(log["anchor_sum"])) < 1e-4 * max(1.0, abs(total))
