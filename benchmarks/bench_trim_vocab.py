"""One CPU training step and its peak memory, full vs trimmed vocabulary (``translit-ppa trim-vocab``), same batch.

The model is a random ``translit_roberta`` of multilingual-e5-small's dimensions (12 layers, 384 hidden, 12 heads,
FFN 1536, 514 positions) with a ``--vocab``-row embedding tied to the LM head (e5-small's matrix: 250,037 rows;
``convert`` drops the 35 rows no token id reaches, leaving 250,002), and the same model trimmed to ``--kept`` rows
(default 31,772: what ``trim-vocab`` keeps of the converted e5-small for the demo corpus, both sides; or read from a
``--trim-record trim.json``).  The
trimmed model's rows are the full model's kept rows, and the batch is the same batch in each model's ids, so both
compute the same hidden states; only the vocabulary-sized work differs: the LM head's output projection (run on the
masked positions only, as the ``mlm_seq_tlm`` criterion does), the embedding gradient, and Adam's update and state.

A step = forward + masked-LM cross-entropy + backward + ``torch.optim.Adam`` step (fairseq's ``--optimizer adam``
keeps the same two float32 moments per parameter).  Each variant runs in its own process (so peak RSS is its own),
the variants alternate ``--rounds`` times to share the machine's noise.  Reported per variant: median step time,
peak RSS of the process and the growth of RSS over the process after imports (model, gradients, optimizer state,
activations); then the ratios trimmed / full.

    python benchmarks/bench_trim_vocab.py --threads 1 --steps 4 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

logger = logging.getLogger("bench_trim_vocab")

#: Rows ``trim-vocab`` keeps of e5-small (250,002 rows after conversion) for the demo corpus (44,000 lines, original and
#: uroman side: ``translit-ppa prepare`` with the converted e5-small, then ``trim-vocab`` on its output).
E5_SMALL_DEMO_KEPT = 31_772


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(args) -> dict:
    """Build the model of one variant, run the steps, report time and memory (one JSON line on stdout)."""
    import torch
    from fairseq.data import Dictionary

    from translit_plugin.models.translit_roberta import TranslitRobertaModel, translit_roberta_base

    torch.set_num_threads(args.threads)
    rss0 = rss_mb()
    rows = args.vocab if args.child == "full" else args.kept
    d = Dictionary()
    for i in range(rows - len(d) - 1):
        d.add_symbol(f"p{i}", n=1)
    d.add_symbol("<mask>")
    assert len(d) == rows
    margs = argparse.Namespace(encoder_layers=args.layers, encoder_embed_dim=args.hidden,
                               encoder_ffn_embed_dim=args.ffn, encoder_attention_heads=args.heads, max_positions=512,
                               dropout=0.1, attention_dropout=0.1)
    translit_roberta_base(margs)
    torch.manual_seed(0)
    model = TranslitRobertaModel.build_for_dictionary(margs, d, 512).train()
    # the same weights in both variants: the trimmed model's rows are the full model's kept rows
    gen = torch.Generator().manual_seed(1)
    kept = torch.sort(torch.randperm(args.vocab - 5, generator=gen)[: args.kept - 5] + 4).values
    kept = torch.cat([torch.arange(4), kept, torch.tensor([args.vocab - 1])])
    emb = model.encoder.sentence_encoder.embed_tokens.weight
    with torch.no_grad():
        full_rows = torch.randn(args.vocab, args.hidden, generator=torch.Generator().manual_seed(2)) * 0.02
        emb.copy_(full_rows if args.child == "full" else full_rows[kept])
        del full_rows
    assert model.encoder.lm_head.weight is emb
    # the batch: B x T ids drawn from the kept pieces, 15% of the positions masked (targets = the original ids)
    g = torch.Generator().manual_seed(3)
    new_ids = torch.randint(4, args.kept - 1, (args.batch_size, args.seq_len), generator=g)
    new_ids[:, 0], new_ids[:, -1] = 0, 2
    mask = torch.rand(args.batch_size, args.seq_len, generator=g) < 0.15
    mask[:, 0] = mask[:, -1] = False
    tokens = kept[new_ids] if args.child == "full" else new_ids
    src = tokens.masked_fill(mask, len(d) - 1)
    target = tokens[mask]
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)

    def step() -> tuple[float, float]:
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits, _ = model(src, masked_tokens=mask)
        loss = torch.nn.functional.cross_entropy(logits.float(), target)
        loss.backward()
        opt.step()
        return time.perf_counter() - t, float(loss)

    step()  # warm-up: allocates gradients and Adam's state
    times, losses = [], []
    for _ in range(args.steps):
        dt, loss = step()
        times.append(dt)
        losses.append(loss)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"variant": args.child, "rows": rows, "step_s": times, "first_loss": losses[0], "rss_after_imports_mb": rss0,
            "peak_rss_mb": peak, "peak_growth_mb": peak - rss0,
            "params": sum(p.numel() for p in model.parameters())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab", type=int, default=250_037, help="full vocabulary rows (e5-small's matrix)")
    parser.add_argument("--kept", type=int, default=E5_SMALL_DEMO_KEPT, help="trimmed vocabulary rows")
    parser.add_argument("--trim-record", type=Path, default=None, help="take --vocab / --kept from this trim.json")
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--ffn", type=int, default=1536)
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per step (the paper: 16 per GPU)")
    parser.add_argument("--seq-len", type=int, default=64, help="tokens per sequence")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per process (after one warm-up step)")
    parser.add_argument("--rounds", type=int, default=2, help="processes per variant, alternating")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--child", choices=["full", "trimmed"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)), flush=True)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.trim_record:
        rec = json.loads(args.trim_record.read_text())
        args.vocab, args.kept = rec["full"]["rows"], rec["trimmed"]["rows"]
    child_args = [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in
                  ("vocab", "kept", "layers", "hidden", "heads", "ffn", "batch_size", "seq_len", "steps", "threads")]
    results: dict[str, list] = {"full": [], "trimmed": []}
    load0 = os.getloadavg()
    for r in range(args.rounds):
        for variant in ("full", "trimmed"):
            out = subprocess.run([sys.executable, __file__, *child_args, "--child", variant], check=True,
                                 capture_output=True, text=True)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            results[variant].append(res)
            logger.info("round %d %-7s %6d rows: %s s/step, peak RSS %.0f MB (+%.0f MB after imports)", r + 1,
                        variant, res["rows"], " ".join(f"{t:.2f}" for t in res["step_s"]), res["peak_rss_mb"],
                        res["peak_growth_mb"])
    summary = {}
    for v, runs in results.items():
        summary[v] = {"rows": runs[0]["rows"], "step_s": statistics.median(t for r in runs for t in r["step_s"]),
                      "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                      "peak_growth_mb": max(r["peak_growth_mb"] for r in runs), "params": runs[0]["params"],
                      "first_loss": runs[0]["first_loss"]}
    f, t = summary["full"], summary["trimmed"]
    ratios = {"step_time": t["step_s"] / f["step_s"], "peak_rss": t["peak_rss_mb"] / f["peak_rss_mb"],
              "peak_growth": t["peak_growth_mb"] / f["peak_growth_mb"], "params": t["params"] / f["params"]}
    logger.info("model: %d layers x %d hidden, %d heads, FFN %d; batch %d x %d tokens (15%% masked), Adam, %d "
                "thread(s); load average %.1f -> %.1f", args.layers, args.hidden, args.heads, args.ffn,
                args.batch_size, args.seq_len, args.threads, load0[0], os.getloadavg()[0])
    logger.info("%-8s %8s %12s %10s %14s %16s", "", "rows", "params", "s/step", "peak RSS MB", "RSS growth MB")
    for v in ("full", "trimmed"):
        s = summary[v]
        logger.info("%-8s %8d %12d %10.3f %14.0f %16.0f", v, s["rows"], s["params"], s["step_s"], s["peak_rss_mb"],
                    s["peak_growth_mb"])
    logger.info("trimmed / full: step time x%.3f (%.2fx faster), peak RSS x%.3f, RSS growth x%.3f, parameters x%.3f",
                ratios["step_time"], 1 / ratios["step_time"], ratios["peak_rss"], ratios["peak_growth"],
                ratios["params"])
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": results,
                                         "summary": summary, "ratios": ratios}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
