"""Training-step time of ``mlm_seq_tlm``: original and Latin sides in separate encoder passes vs one stacked pass.

Inputs: a prepared data-bin (``--data``; default: a small one built in a temporary directory from the shipped demo
corpus with uroman) and a random ``translit_roberta`` of ``--layers/--hidden``.  Output: seconds per training step
(forward + backward, all four terms) for ``--encoder-batching separate`` and ``stacked``, interleaved to share the
machine's noise, the padding overhead of stacking, and a check that both give the same loss.

    python benchmarks/bench_train_step.py --layers 4 --hidden 256 --batch-size 16 --steps 10
"""

import argparse
import logging
import statistics
import sys
import tempfile
import time
from argparse import Namespace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

logger = logging.getLogger("bench_train_step")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="prepared data-bin (default: build a small one)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16, help="pairs per step")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per mode")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)

    from omegaconf import OmegaConf

    import translit_plugin  # noqa: F401
    from translit_plugin.criterions.mlm_seq_tlm import MlmSeqTlmCriterion
    from translit_plugin.models.translit_roberta import TranslitRobertaModel, translit_roberta_base
    from translit_plugin.tasks.translit_align import TranslitAlignConfig, TranslitAlignTask

    tmp = tempfile.TemporaryDirectory()
    data = args.data
    if data is None:
        from translit_helpers import build_data_bin, train_spm

        data = build_data_bin(Path(tmp.name) / "data", train_spm(Path(tmp.name) / "spm"), train_per_lang=100)
    task = TranslitAlignTask.setup_task(OmegaConf.structured(TranslitAlignConfig(data=str(data), seed=1)))
    task.load_dataset("train")
    ds = task.datasets["train"]
    margs = Namespace(encoder_layers=args.layers, encoder_embed_dim=args.hidden, encoder_ffn_embed_dim=4 * args.hidden,
                      encoder_attention_heads=max(args.hidden // 64, 1), max_positions=512, dropout=0.0,
                      attention_dropout=0.0)
    translit_roberta_base(margs)
    torch.manual_seed(0)
    model = TranslitRobertaModel.build_model(margs, task).train()
    crits = {mode: MlmSeqTlmCriterion(task, seq_layer=min(8, args.layers), encoder_batching=mode)
             for mode in ("separate", "stacked")}
    batches = [ds.collater([ds[(s * args.batch_size + i) % len(ds)] for i in range(args.batch_size)])
               for s in range(args.steps + 1)]

    def step(mode, batch):
        model.zero_grad()
        t = time.perf_counter()
        loss, _, _ = crits[mode](model, batch)
        loss.backward()
        return time.perf_counter() - t, float(loss)

    times = {m: [] for m in crits}
    for m in crits:
        step(m, batches[0])  # warm-up
    for batch in batches[1:]:
        losses = {}
        for m in crits:
            dt, losses[m] = step(m, batch)
            times[m].append(dt)
        assert abs(losses["separate"] - losses["stacked"]) < 1e-4 * max(1.0, abs(losses["separate"])), losses
    pad = statistics.mean(
        1 - (b["orig"]["src_lengths"].sum() + b["latn"]["src_lengths"].sum()).item()
        / (2 * b["nsentences"] * max(b["orig"]["src_tokens"].shape[1], b["latn"]["src_tokens"].shape[1]))
        for b in batches
    )
    sep, stk = statistics.median(times["separate"]), statistics.median(times["stacked"])
    logger.info("model %d layers x %d hidden, %d pairs/step, %d threads, %d steps (median)", args.layers, args.hidden,
                args.batch_size, torch.get_num_threads(), args.steps)
    logger.info("separate: %.3f s/step | stacked: %.3f s/step | stacked/separate = %.2f | stacked padding %.0f%%",
                sep, stk, stk / sep, 100 * pad)
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
