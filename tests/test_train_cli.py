"""End to end through the real CLI: ``fairseq-train --user-dir translit_plugin --task translit_align --criterion
mlm_seq_tlm`` from a converted start model (``--finetune-from-model``) on a tiny prepared corpus.

* all four terms and ``seq_acc`` are logged, on train and valid;
* killed (SIGKILL) right after a mid-epoch checkpoint and relaunched with the same command, training continues from
  ``checkpoint_last.pt`` and every logged value after the checkpoint equals the uninterrupted run's;
* the documented multi-process CPU launch (one process per rank, gloo, ``legacy_ddp``) trains;
* (slow) a few hundred updates: every term decreases.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from translit_helpers import build_data_bin

REPO = Path(__file__).resolve().parents[1]
FAIRSEQ_TRAIN = str(Path(sys.executable).parent / "fairseq-train")
TERMS = ("loss_mlm_orig", "loss_mlm_latn", "loss_seq", "loss_tlm", "seq_acc")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}  # deterministic CPU


@pytest.fixture(scope="module")
def data(tiny_model_dir, tmp_path_factory):
    return build_data_bin(tmp_path_factory.mktemp("cli") / "data", tiny_model_dir / "sentencepiece.bpe.model",
                          train_per_lang=16, valid_per_lang=4)


def train_cmd(data: Path, model_dir: Path, save_dir: Path, max_update: int, *extra: str) -> list[str]:
    """The demo-style command line (tiny model: 2 layers, so SEQ reads layer 1)."""
    return [
        FAIRSEQ_TRAIN, str(data),
        "--user-dir", str(REPO / "translit_plugin"),
        "--task", "translit_align", "--criterion", "mlm_seq_tlm", "--arch", "translit_roberta_tiny",
        "--finetune-from-model", str(model_dir / "model.pt"),
        "--tokens-per-sample", "128", "--seq-layer", "1",
        "--optimizer", "adam", "--adam-betas", "(0.9,0.999)", "--adam-eps", "1e-8", "--weight-decay", "0.01",
        "--lr", "5e-4", "--lr-scheduler", "polynomial_decay", "--total-num-update", str(max_update),
        "--batch-size", "8", "--max-update", str(max_update), "--seed", "3",
        "--save-dir", str(save_dir), "--save-interval-updates", "6", "--no-epoch-checkpoints",
        "--log-format", "json", "--log-interval", "1", "--cpu", "--num-workers", "0",
        *extra,
    ]


def parse(log: str, kind: str) -> list[dict]:
    """The json records fairseq logs under ``kind`` (``train_inner``, ``valid``, ``train``)."""
    out = []
    for line in log.splitlines():
        if f"| {kind} |" in line:
            out.append(json.loads(line.split(f"| {kind} | ", 1)[1]))
    return out


def run_group(cmd: list[str], env: dict, timeout: int, **kw) -> subprocess.CompletedProcess:
    """``subprocess.run`` in a new session; on a timeout the whole process group is killed (a launcher's workers
    included: killing torchrun alone left two hung fairseq-train workers behind on a loaded machine)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kw)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{cmd[0]} ran over {timeout} s (process group killed):\n{out[-2000:]}\n{err[-2000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def run(cmd: list[str], timeout: int = 300) -> str:
    proc = run_group(cmd, ENV, timeout)
    tail = f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"fairseq-train failed ({proc.returncode}):\n{tail}"
    return proc.stdout + proc.stderr


def test_train_logs_all_terms_and_resumes_exactly_after_a_kill(data, tiny_model_dir, tmp_path):
    max_update = 14  # 64 pairs / 8 per batch = 8 updates per epoch: crosses an epoch boundary
    full = run(train_cmd(data, tiny_model_dir, tmp_path / "full", max_update))
    inner = parse(full, "train_inner")
    assert [int(r["num_updates"]) for r in inner] == list(range(1, max_update + 1))
    valid = parse(full, "valid")
    assert valid, "no validation ran"
    for record in inner:
        assert all(t in record for t in TERMS), f"train terms missing in {record}"
    for record in valid:
        assert all(f"valid_{t}" in record for t in TERMS), f"valid terms missing in {record}"
    assert float(inner[-1]["loss"]) < float(inner[0]["loss"])

    # Same command, killed right after the first mid-epoch checkpoint (update 6), then relaunched unchanged.
    save = tmp_path / "killed"
    cmd = train_cmd(data, tiny_model_dir, save, max_update)
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed_log = []
    for line in proc.stdout:
        killed_log.append(line)
        if "Saved checkpoint" in line and "@ 6 updates" in line:
            proc.kill()
            break
    proc.wait(timeout=60)
    assert any("@ 6 updates" in line for line in killed_log), "".join(killed_log[-40:])
    assert (save / "checkpoint_last.pt").is_file()
    resumed = run(cmd)
    assert "Loaded checkpoint" in resumed and "checkpoint_last.pt" in resumed
    after = {int(r["num_updates"]): r for r in parse(resumed, "train_inner")}
    assert min(after) == 7, f"resumed at update {min(after)}, expected 7"
    reference = {int(r["num_updates"]): r for r in inner}
    for step, record in after.items():
        for key in ("loss", *TERMS):
            assert record[key] == reference[step][key], f"update {step} {key}: {record[key]} vs {reference[step][key]}"
    assert parse(resumed, "valid")[-1]["valid_loss"] == parse(full, "valid")[-1]["valid_loss"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_recipe_under_torchrun_on_two_cpu_processes(data, tiny_model_dir, tmp_path):
    """``CPU=1 torchrun --nproc-per-node 2 --no-python examples/recipes/train.sh ...`` (examples/recipes/README.md):
    the paper's settings with the tiny model's sizes appended; the recipe derives update-freq from the world size."""
    env = {**ENV, "CPU": "1", "PAIRS_PER_WORKER": "4", "GLOBAL_PAIRS": "16", "EPOCHS": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    cmd = [str(Path(sys.executable).parent / "torchrun"), "--nproc-per-node", "2", "--master-port", str(_free_port()),
           "--no-python", str(REPO / "examples" / "recipes" / "train.sh"), "demo", str(data), str(tiny_model_dir),
           str(tmp_path / "recipe"),
           "--arch", "translit_roberta_tiny", "--tokens-per-sample", "128", "--seq-layer", "1", "--lr", "1e-3",
           "--max-update", "3", "--disable-validation", "--log-interval", "1", "--num-workers", "0"]
    proc = run_group(cmd, env, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "2 workers x 4 pairs x update-freq 2 = 16 pairs/update" in log
    inner = parse(log, "train_inner")
    assert [int(r["num_updates"]) for r in inner] == [1, 2, 3]
    assert all(int(r["bsz"]) == 16 for r in inner), "each update must see 2 workers x 2 micro-batches x 4 pairs"
    assert all(t in inner[-1] for t in TERMS)


@pytest.mark.parametrize("group", ["mediterranean-amharic-farsi", "south-east-asian"])
def test_hydra_recipe_runs(data, tiny_model_dir, tmp_path, group):
    """The fairseq-hydra-train configs parse and train (tiny sizes and CPU overrides appended)."""
    cmd = [str(Path(sys.executable).parent / "fairseq-hydra-train"),
           "--config-dir", str(REPO / "examples" / "recipes" / "hydra"), "--config-name", group,
           f"task.data={data}", f"checkpoint.finetune_from_model={tiny_model_dir / 'model.pt'}",
           f"checkpoint.save_dir={tmp_path / 'ckpt'}", f"common.user_dir={REPO / 'translit_plugin'}",
           "lr_scheduler.total_num_update=2", "common.fp16=false", "common.cpu=true",
           "distributed_training.distributed_world_size=1", "model._name=translit_roberta_tiny",
           "task.tokens_per_sample=128", "criterion.seq_layer=1", "optimization.max_update=2",
           "optimization.update_freq=[1]", "dataset.batch_size=8", "dataset.num_workers=0", "common.log_interval=1",
           "dataset.disable_validation=true", f"hydra.run.dir={tmp_path / 'hydra'}"]
    proc = run_group(cmd, ENV, timeout=300, cwd=tmp_path)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    records = [json.loads(line.split(" - ", 1)[1]) for line in log.splitlines() if "[train_inner]" in line]
    assert len(records) == 2 and all(t in records[-1] for t in TERMS)


@pytest.mark.slow
def test_multi_process_cpu_launch(data, tiny_model_dir, tmp_path):
    """The other documented CPU launch: one process per rank, gloo, legacy_ddp (see examples/recipes/README.md)."""
    port = _free_port()
    procs = []
    for rank in range(2):
        cmd = train_cmd(data, tiny_model_dir, tmp_path / "ddp", 4, "--disable-validation",
                        "--distributed-world-size", "2", "--distributed-rank", str(rank),
                        "--distributed-init-method", f"tcp://127.0.0.1:{port}", "--distributed-no-spawn",
                        "--distributed-backend", "gloo", "--ddp-backend", "legacy_ddp")
        procs.append(subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        logs = [p.communicate(timeout=300)[0] for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:  # never leave a rank waiting for the other behind
            p.kill()
        pytest.fail("a rank ran over 300 s: " + " | ".join(p.communicate()[0][-1500:] for p in procs))
    codes = [p.returncode for p in procs]
    tails = "\n".join(f"--- rank {r}:\n{log[-2500:]}" for r, log in enumerate(logs))
    assert codes == [0, 0], f"exit codes {codes}:\n{tails}"
    inner = parse(logs[0], "train_inner")
    assert [int(r["num_updates"]) for r in inner] == [1, 2, 3, 4]
    assert all(t in inner[-1] for t in TERMS)
    assert int(inner[0]["bsz"]) == 16, "each update must see both workers' batches"
    assert "distributed init (rank 1)" in logs[1] or "distributed init (rank 1)" in logs[0]


@pytest.mark.slow
def test_a_few_hundred_updates_decrease_every_term(data, tiny_model_dir, tmp_path):
    # the demo's settings: SEQ needs a few hundred updates at a high rate and 32 pairs before it leaves chance level
    out = run(train_cmd(data, tiny_model_dir, tmp_path / "long", 500, "--lr", "3e-3", "--warmup-updates", "50",
                        "--batch-size", "32", "--seq-layer", "2", "--clip-norm", "1.0", "--disable-validation",
                        "--save-interval-updates", "0", "--log-interval", "10"), timeout=1800)
    inner = parse(out, "train_inner")
    first, last = inner[:3], inner[-3:]
    for term in ("loss", *TERMS[:4]):
        start = sum(float(r[term]) for r in first) / 3
        end = sum(float(r[term]) for r in last) / 3
        assert end < start - 0.05, f"{term} did not decrease: {start:.3f} -> {end:.3f}"
    shutil.rmtree(tmp_path / "long", ignore_errors=True)
