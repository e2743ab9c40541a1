"""Helpers for the reliability tests: train a tiny run in-process, read its metrics and checkpoints."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

from bricklm.storage import checkpoint as ckpt
from bricklm.training.callbacks import Callback
from conftest import TINY_FLAGS


def configs(*flags: str):
    """(ModelConfig, TrainConfig) from TINY_FLAGS plus flags, parsed exactly as `bricklm train` parses them."""
    from bricklm.cli import build_parser
    from bricklm.cli.flags import overrides_from_args
    from bricklm.recipes import load_config

    args = build_parser().parse_args(["train", *TINY_FLAGS, *flags])
    return load_config(None, overrides_from_args(args))


def trainer(corpus, run, *flags: str, callbacks=(), resume=False, log=None):
    from bricklm.training.trainer import Trainer

    model_cfg, train_cfg = configs(*flags)
    quiet = log or (lambda *a, **k: None)
    return Trainer(
        model_cfg, train_cfg, corpus, run, resume=resume, callbacks=list(callbacks), log=quiet, progress=False
    )


def train(corpus, run, *flags: str, **kwargs):
    return trainer(corpus, run, *flags, **kwargs).run()


def copy_run(run: Path, dest: Path) -> Path:
    """A private copy of a session fixture's run, safe to damage."""
    shutil.copytree(run, dest)
    return dest


def steps(run: Path) -> list[int]:
    return [int(p.name.split("-")[1]) for p in ckpt.list_checkpoints(run, warn=False)]


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines() if line.strip()]


def losses(run: Path) -> list[tuple]:
    """What must be identical between two runs: per-step loss and lr, per-eval losses (not the timings)."""
    out = []
    for m in metrics(run):
        if m.get("eval"):
            out.append(("eval", m["step"], m["train_loss"], m["val_loss"]))
        else:
            out.append(("step", m["step"], m["loss"], m["lr"]))
    return out


def tensors(checkpoint_dir: Path) -> dict:
    """Every tensor a checkpoint holds: weights, Adam moments and every RNG state."""
    c = ckpt.load_checkpoint(checkpoint_dir)
    return {**{f"model.{k}": v for k, v in c.model.items()}, **c.state}


def wait_for(condition, procs, what: str, timeout: float = 90) -> None:
    """Poll condition() until True, while the process (or each of a list of them) runs; if one ends first, an
    AssertionError with its output; after `timeout` seconds (a bound against a hang), all are killed."""
    procs = procs if isinstance(procs, list) else [procs]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        ended = next((proc for proc in procs if proc.poll() is not None), None)
        if ended is not None:
            for proc in procs:
                proc.kill()
            out, err = ended.communicate()
            raise AssertionError(f"training ended before {what}: rc {ended.returncode}\n{out}\n{err}")
        time.sleep(0.05)
    for proc in procs:
        proc.kill()
    raise AssertionError(f"timed out waiting for {what}")


class SignalAt(Callback):
    """Sends this process a real signal right after step `step` (the trainer's handler catches it)."""

    def __init__(self, step, signum=signal.SIGINT):
        self.step, self.signum = step, signum

    def on_step(self, trainer, step, loss):
        if step == self.step:
            os.kill(os.getpid(), self.signum)
