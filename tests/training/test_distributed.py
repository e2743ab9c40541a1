"""Distributed training on CPU: 2 gloo processes against 1 process with twice the batch.

The processes are real: `torchrun -m bricklm train` for the command users type, and two
processes started with torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR...) for
resume and for a rank that dies. Tiny model, few steps: the cost is starting Python twice.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest
import torch

from bricklm.cli import main
from bricklm.model.generate import generate_text
from bricklm.recipes import load_config
from bricklm.storage.metrics import read_metrics
from bricklm.storage.runs import load_run
from bricklm.text.data import get_batch, load_corpus
from bricklm.training.datasets import rank_batch
from bricklm.training.distributed import Dist
from bricklm.training.trainer import Trainer
from conftest import tiny_flags
from runhelp import tensors, wait_for


def flags(**overrides) -> list[str]:
    """Dropout 0, no snapshots, no samples; batch 4 per process. The 1-process reference uses --batch-size 8."""
    return tiny_flags(**{"dropout": 0, "loss_levels": "", "sample_chars": 0, **overrides})


FLAGS = flags()
# 2 processes' gradients are summed in another order than 1 process's: float rounding only.
TOLERANCE = 1e-4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", **{k: str(v) for k, v in extra.items()})
    return env


def spawn(args: list[str], world: int = 2, logs=None) -> list[subprocess.Popen]:
    """Start `world` processes with the environment torchrun would give them. logs: a folder where each rank's
    stdout goes as it is printed (rank-0.txt, ...), instead of a pipe."""
    port = free_port()
    env = dict(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, **({"PYTHONUNBUFFERED": 1} if logs else {}))
    procs = []
    for r in range(world):
        with open(logs / f"rank-{r}.txt", "w") if logs else contextlib.nullcontext(subprocess.PIPE) as stdout:
            procs.append(
                subprocess.Popen(
                    args,
                    env=child_env(RANK=r, LOCAL_RANK=r, WORLD_SIZE=world, **env),
                    stdout=stdout,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
    return procs


def finish(procs, timeout=120) -> list[tuple[int, str]]:
    """Each process's exit code and output, once all have ended; past `timeout` (a hang), all are killed."""
    out = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=timeout)
            out.append((p.returncode, (stdout or "") + stderr))
    finally:
        for p in procs:
            p.kill()  # nothing left running if one hung
    return out


def failures(results) -> str:
    """'' when every process ended with 0; otherwise each one's exit code and the end of its output."""
    if all(rc == 0 for rc, _ in results):
        return ""
    return "\n".join(f"--- rank {r}: exit {rc}\n{out[-1500:]}" for r, (rc, out) in enumerate(results))


def losses(run_dir, evals=True) -> list[float]:
    """The per-step losses, then (evals=True) the train and val losses of each evaluation."""
    m = read_metrics(run_dir)
    steps = [r["loss"] for r in m if "loss" in r]
    return steps + ([v for r in m if r.get("eval") for v in (r["train_loss"], r["val_loss"])] if evals else [])


def test_rank_slices_are_the_single_process_batch(tiny_corpus):
    train, _, _, _ = load_corpus(tiny_corpus)
    whole = get_batch(train, 8, 16, torch.Generator().manual_seed(3))
    parts = [
        rank_batch(train, 4, 16, torch.Generator().manual_seed(3), "cpu", Dist(torch.device("cpu"), r, world_size=2))
        for r in (0, 1)
    ]
    assert torch.equal(torch.cat([p[0] for p in parts]), whole[0])
    assert torch.equal(torch.cat([p[1] for p in parts]), whole[1])
    # Two draws of 4 are one draw of 8 (torch's CPU generator draws in sequence): what makes
    # grad_accum 2 x batch 4 the same batches as batch 8.
    g = torch.Generator().manual_seed(3)
    twice = [get_batch(train, 4, 16, g) for _ in range(2)]
    assert torch.equal(torch.cat([t[0] for t in twice]), whole[0])


def test_grad_accum_matches_a_batch_k_times_bigger(tiny_corpus, tmp_path):
    def run(out, **kw):
        settings = {
            "dropout": 0.0,
            "loss_levels": "",
            "sample_chars": 0,
            "device": "cpu",
            "n_layer": 1,
            "n_head": 2,
            "n_embd": 16,
            "block_size": 16,
            "max_iters": 6,
            "warmup_iters": 2,
        }
        model_cfg, train_cfg = load_config(None, {**settings, **kw})
        Trainer(model_cfg, train_cfg, tiny_corpus, out, log=lambda *a: None, progress=False).run()
        return losses(out, evals=False)  # evaluation batches are batch_size windows, so they differ

    big = run(tmp_path / "big", batch_size=8)
    accum = run(tmp_path / "accum", batch_size=4, grad_accum=2)
    assert big == pytest.approx(accum, abs=TOLERANCE)
    assert big != pytest.approx(run(tmp_path / "small", batch_size=4), abs=TOLERANCE)  # the test can fail
    a, b = load_run(tmp_path / "big", "last").model, load_run(tmp_path / "accum", "last").model
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-5), name
    assert json.loads((tmp_path / "accum" / "config.json").read_text())["train"]["grad_accum"] == 2


@pytest.mark.slow
def test_torchrun_two_processes_match_one_with_twice_the_batch_and_resume(tiny_corpus, tmp_path):
    if shutil.which("torchrun") is None:
        pytest.skip("torchrun is not on PATH")
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    # --standalone: torchrun picks a free port itself (a rendezvous on localhost:0), so tests can't collide.
    cmd = [
        "torchrun",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "bricklm",
        "train",
        "--data",
        str(tiny_corpus),
        "--out",
        str(ddp),
        *flags(batch_size=4),
    ]
    done = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("parameters:") == 1  # one summary: rank 1 prints nothing
    assert main(["train", "--data", str(tiny_corpus), "--out", str(single), *flags(batch_size=8)]) == 0
    assert losses(ddp) == pytest.approx(losses(single), abs=TOLERANCE)
    steps = [r["step"] for r in read_metrics(ddp) if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]  # written once, by rank 0
    assert (ddp / "loss.png").is_file() and json.loads((ddp / "summary.json").read_text())["processes"] == 2

    # The checkpoint is a plain single-process one: no DDP "module." prefixes.
    run = load_run(ddp, "last")
    assert run.checkpoint.name == "step-000000006"
    assert isinstance(generate_text(run.model, run.tokenizer, "", 5, "cpu"), str)

    # Resume under DDP to step 9 (started as torchrun would); the same as 1 process going on to 9.
    procs = spawn([sys.executable, "-m", "bricklm", "train", "--resume", str(ddp), "--max-iters", "9"])
    results = finish(procs)
    assert not (failed := failures(results)), failed
    # DDP's switch for constant buffers is spelled so torch 2.13 does not print a deprecation as bricklm's note.
    assert not any("note:" in text or "warning" in text.lower() for _, text in results), results
    assert main(["train", "--resume", str(single), "--max-iters", "9"]) == 0
    assert [r["step"] for r in read_metrics(ddp) if "loss" in r] == list(range(1, 10))
    assert losses(ddp) == pytest.approx(losses(single), abs=TOLERANCE)


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["--fsdp"]], ids=["ddp", "fsdp"])
def test_a_signal_to_one_process_stops_every_process_inside_the_same_evaluation(tiny_corpus, tmp_path, extra):
    """SIGTERM reaches only rank 1, inside the step-0 evaluation (made endless: a million batches per split). Every
    process must stop at the same batch, or one would wait in the next collective until dist_timeout (under --fsdp
    the save itself is one): both exit 143, rank 0 having saved step 0. Resumed by 2 processes with the usual 2
    batches (the cut-short evaluation was never recorded), the run equals an uninterrupted 2-process one exactly."""
    run, straight = tmp_path / "run", tmp_path / "straight"
    train = [sys.executable, "-m", "bricklm", "train", "--data", str(tiny_corpus)]
    procs = spawn([*train, "--out", str(run), *flags(eval_iters=1000000), *extra], logs=tmp_path)
    log = tmp_path / "rank-0.txt"
    wait_for(lambda: "each evaluation scores 2000000 batches" in log.read_text(), procs, "the step-0 evaluation")
    procs[1].send_signal(signal.SIGTERM)
    (rc0, out0), (rc1, out1) = finish(procs, timeout=90)
    assert (rc0, rc1) == (143, 143), out0 + out1
    stopped = "SIGTERM: stopped during the evaluation at step 0 (its result is not recorded: resuming runs it first)"
    assert f"{stopped}; checkpoint saved in {run / 'checkpoints' / 'step-000000000'}" in out0
    assert f"{stopped}; rank 0 saves" in out1
    assert not read_metrics(run)

    results = finish(spawn([*train, "--out", str(straight), *FLAGS, *extra]))
    assert not (failed := failures(results)), failed
    results = finish(spawn([sys.executable, "-m", "bricklm", "train", "--resume", str(run), "--eval-iters", "2"]))
    assert not (failed := failures(results)), failed
    assert "its evaluation was cut short by a stop signal: it runs first" in results[0][1]
    assert losses(run) == losses(straight)
    a, b = (tensors(r / "checkpoints" / "step-000000006") for r in (straight, run))
    assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == []  # weights, moments, RNGs


DIE = """
import os, sys
import bricklm.training.trainer
from bricklm.cli import main
step_orig = bricklm.training.trainer.train_step
def train_step(model, optimizer, next_batch, cfg, step, *, dist=None, **kwargs):
    if dist is not None and dist.rank == 1 and step == 2:
        os._exit(7)  # a crash that leaves no goodbye: a segfault, the OOM killer
    return step_orig(model, optimizer, next_batch, cfg, step, dist=dist, **kwargs)
bricklm.training.trainer.train_step = train_step
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_rank_that_dies_makes_the_others_exit_with_a_clear_error(tiny_corpus, tmp_path):
    args = ["train", "--data", str(tiny_corpus), "--out", str(tmp_path / "run"), *flags(max_iters=50)]
    procs = spawn([sys.executable, "-c", DIE, *args])
    # Within 90 s, not the 300 s dist_timeout: the closed connection is noticed at once.
    (rc0, out0), (rc1, _) = finish(procs, timeout=90)
    assert rc1 == 7
    assert rc0 == 1, out0
    assert "bricklm: error: rank 0 of 2: lost another training process" in out0
    assert "Traceback" not in out0


def test_under_torchrun_out_is_required(tiny_corpus, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main(["train", "--data", str(tiny_corpus), *FLAGS]) == 1
    assert "under torchrun, give --out RUN" in capsys.readouterr().err


@pytest.mark.parametrize("joined", [False, True])
def test_a_process_that_joined_a_group_ends_with_its_code_and_its_output_flushed(joined):
    # end_process skips Python's teardown (os._exit) only in a process that joined a process group;
    # what it printed, unflushed into a pipe, must still arrive, and the exit code must be main's.
    code = f"""
import sys
from bricklm.training import distributed
distributed._joined = {joined}
print("all written", end="")
print("a warning", end="", file=sys.stderr)
sys.exit(distributed.end_process(3))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (3, "all written", "a warning")
