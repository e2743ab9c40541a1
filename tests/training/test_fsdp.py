"""FSDP (--fsdp) on CPU: 2 gloo processes sharding the model, against 1 process with twice the batch.

Real processes, as in test_distributed.py: `torchrun --standalone -m bricklm train --fsdp`, then a
resume started with torchrun's environment. Tiny model, few steps: the cost is starting Python.
"""

import json
import shutil
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
from test_distributed import TOLERANCE, child_env, failures, finish, flags, losses, spawn

from bricklm.cli import main
from bricklm.errors import UserError
from bricklm.model.generate import generate_text
from bricklm.recipes import load_config
from bricklm.storage.metrics import read_metrics
from bricklm.storage.runs import load_run
from bricklm.training.distributed import Dist

pytestmark = [
    pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="this PyTorch has no gloo"),
    pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not on PATH"),
]


@pytest.mark.slow
def test_fsdp_two_processes_match_one_with_twice_the_batch_and_resume(tiny_corpus, tmp_path):
    sharded, single = tmp_path / "fsdp", tmp_path / "single"
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
        str(sharded),
        *flags(batch_size=4),
        "--fsdp",
    ]
    done = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("parameters:") == 1  # one summary: rank 1 prints nothing
    assert main(["train", "--data", str(tiny_corpus), "--out", str(single), *flags(batch_size=8)]) == 0
    assert losses(sharded) == pytest.approx(losses(single), abs=TOLERANCE)
    assert json.loads((sharded / "config.json").read_text())["train"]["fsdp"] is True

    # The checkpoint is a plain single-process one: full tensors, plain names, optimiser keyed by position.
    run, ref = load_run(sharded, "last"), load_run(single, "last")
    assert run.checkpoint.name == "step-000000006"
    for (name, p), q in zip(run.model.named_parameters(), ref.model.parameters(), strict=True):
        assert p.shape == q.shape and torch.allclose(p, q, atol=1e-5), name
    assert isinstance(generate_text(run.model, run.tokenizer, "", 5, "cpu"), str)
    saved = json.loads((run.checkpoint / "trainer.json").read_text())["optimizer"]
    assert saved == json.loads((ref.checkpoint / "trainer.json").read_text())["optimizer"]

    # Resume under FSDP to step 9: the moments are scattered back; the same as 1 process going on to 9.
    procs = spawn([sys.executable, "-m", "bricklm", "train", "--resume", str(sharded), "--max-iters", "9", "--fsdp"])
    results = finish(procs)
    assert not (failed := failures(results)), failed
    assert not any("warning" in text for _, text in results), results  # FSDP2's view warning is silenced
    assert main(["train", "--resume", str(single), "--max-iters", "9"]) == 0
    assert [r["step"] for r in read_metrics(sharded) if "loss" in r] == list(range(1, 10))
    assert losses(sharded) == pytest.approx(losses(single), abs=TOLERANCE)


def test_fsdp_needs_torchrun(tiny_corpus, tmp_path, capsys):
    assert main(["train", "--data", str(tiny_corpus), "--out", str(tmp_path / "r"), *flags(), "--fsdp"]) == 1
    assert "--fsdp shards the model over several processes" in capsys.readouterr().err


@pytest.mark.parametrize(
    "other, match",
    [
        ({"compile": True}, "--fsdp and --"),
        ({"log_health": True}, "--fsdp and --"),
        ({"optimizer": "muon"}, "Muon"),
        ({"ema": 0.9}, "--ema"),
    ],
)
def test_fsdp_refuses_what_it_does_not_support(other, match):
    _, cfg = load_config(None, {"fsdp": True, **other})
    two = Dist(torch.device("cpu"), rank=0, world_size=2)  # as under torchrun; no process group is needed
    with pytest.raises(UserError, match=match):
        two.shard(torch.nn.Linear(2, 2), cfg)
    assert not two.sharded
