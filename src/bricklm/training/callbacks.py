"""What the training loop carries (TrainState), what it shows its callbacks (Context), and the callbacks
that TrainConfig switches on: early stopping, loss-level snapshots, the time/target budget, and the
copying meter's index of the training text (made once, at the start).

    early_stop = 5                # stop after 5 evaluations without a new best val loss
    loss_levels = "4.0,3.0,2.5"   # keep the weights when val loss first falls below each level
    max_seconds = 60              # stop at the first evaluation past 60 s of wall time
    copy_index = true             # index the training text in RUN/copying for `sample` and `memorization`

A callback sees the loop through a Context: the model (whole, also under FSDP), the state, the
settings, the run directory and a way to log and to add lines to metrics.jsonl. It never reaches
into the trainer. `on_eval` returns a reason to stop (a string) or None; `wants_eval` asks the loop
for an evaluation now rather than at the next eval_interval. Progress a callback must remember
across a resume goes into `state.extra`, which every checkpoint saves.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bricklm.config import ModelConfig, TrainConfig, parse_loss_levels
from bricklm.errors import UserError
from bricklm.model.generate import sample_text
from bricklm.storage.copying import run_index
from bricklm.storage.metrics import SAMPLES
from bricklm.storage.snapshots import SNAPSHOTS, level_name, write_snapshot
from bricklm.training.datasets import TokenDataset


@dataclass
class TrainState:
    """What the loop carries from step to step, and what a checkpoint must restore."""

    step: int = 0
    best_val: float = float("inf")
    best_step: int = -1
    elapsed: float = 0.0  # seconds of training steps so far, across resumes
    wall: float = 0.0  # wall seconds since the end of the step-0 evaluation, evaluations included, across resumes
    tokens: int = 0
    last_train: float = float("nan")
    last_val: float = float("nan")
    last_val_bpb: float | None = None  # last_val in bits per byte, when the data knows its bytes
    skipped_steps: int = 0  # steps whose loss or gradient norm was not finite: no update was made
    eval_pending: bool = False  # a stop signal cut this step's evaluation short: resuming runs it first
    extra: dict[str, Any] = field(default_factory=dict)  # room for callbacks (e.g. early-stop counters)


@dataclass
class Context:
    """The loop as a callback sees it."""

    model: torch.nn.Module
    state: TrainState
    cfg: TrainConfig
    model_cfg: ModelConfig
    run_dir: Path
    device: torch.device
    data: Any  # the dataset being trained on (datasets.TokenDataset, or finetune's conversations)
    log: Callable[[str], None] = print
    append_metrics: Callable[[dict[str, Any]], None] = lambda record: None


class Callback:
    """Hooks into the loop; every method is optional."""

    def on_start(self, ctx: Context) -> None: ...
    def on_step(self, ctx: Context, step: int, loss: float) -> None: ...
    def wants_eval(self, ctx: Context) -> bool:
        return False

    def on_eval(self, ctx: Context, record: dict[str, Any]) -> str | None: ...
    def on_end(self, ctx: Context) -> None: ...


def config_callbacks(cfg: TrainConfig) -> list[Callback]:
    """The callbacks a TrainConfig asks for (the Trainer adds them to any it was given)."""
    out: list[Callback] = [CopyIndexAtStart()] if cfg.copy_index else []
    levels = parse_loss_levels(cfg.loss_levels)
    if levels:
        out.append(LossLevelSnapshots(levels))
    if cfg.early_stop > 0:
        out.append(EarlyStopping(cfg.early_stop))
    if cfg.max_seconds or cfg.target_val_loss:
        out.append(Budget(cfg.max_seconds, cfg.target_val_loss))
    if cfg.eval_samples and cfg.sample_chars:
        out.append(EvalSamples())
    return out


def sample_seed(seed: int, run_dir: Path) -> int:
    """The sampling seed of a run: its training seed mixed with its directory's name, so two runs trained with
    the same seed still draw different samples (and one run's samples are reproducible)."""
    return (seed * 1_000_003 + zlib.crc32(os.fsencode(Path(run_dir).name))) % 2**63  # any name, UTF-8 or not


class EvalSamples(Callback):
    """A sample at every evaluation, beside its losses, in RUN/samples.jsonl: the blog's "samples at each loss
    level", for every evaluation of the learner's own run. The same seed every time, so the samples differ
    because the model did."""

    def on_eval(self, ctx: Context, record: dict[str, Any]) -> None:
        if not all(bool(torch.isfinite(p).all()) for p in ctx.model.parameters()):
            return None  # NaN weights crash the sampler; the step guard says what happened
        seed = sample_seed(ctx.cfg.seed, ctx.run_dir)
        text = sample_text(ctx.model, ctx.data.tokenizer, ctx.cfg.sample_chars, ctx.device, seed)
        line = {k: record[k] for k in ("step", "train_loss", "val_loss")} | {"text": text}
        with open(ctx.run_dir / SAMPLES, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")
        return None


class CopyIndexAtStart(Callback):
    """Index the training text for the copying meter once, as training starts (storage/copying.py); a run
    resumed with its index in place keeps it. A failure is a note: the meter is not worth a lost run."""

    def on_start(self, ctx: Context) -> None:
        if not isinstance(ctx.data, TokenDataset):
            return  # fine-tuning: the meter uses the base run's index
        try:
            index, why = run_index(ctx.run_dir, log=ctx.log)
        except UserError as exc:
            index, why = None, str(exc)
        if index is None:
            ctx.log(f"copying meter: not built: {why}")
        else:
            index.close()


class EarlyStopping(Callback):
    """Stop once `patience` evaluations in a row bring no new best val loss.

    The Trainer marks the best checkpoint and pruning never deletes it, so stopping late
    costs nothing: `load_run(run, "best")` gets the weights from the best evaluation.
    """

    def __init__(self, patience: int):
        self.patience = patience

    def on_eval(self, ctx: Context, record: dict[str, Any]) -> str | None:
        s = ctx.state
        if s.best_step == record["step"]:
            s.extra["evals_without_improvement"] = 0
            return None
        bad = s.extra.get("evals_without_improvement", 0) + 1
        s.extra["evals_without_improvement"] = bad
        if bad >= self.patience:
            return (
                f"early stop: val loss has not improved for {bad} evaluations "
                f"(best {s.best_val:.4f} at step {s.best_step})"
            )
        return None


class LossLevelSnapshots(Callback):
    """Keep the weights from the first evaluation whose val loss is below each level (runs.py reads them)."""

    def __init__(self, levels: list[float]):
        self.levels = levels

    def on_eval(self, ctx: Context, record: dict[str, Any]) -> None:
        reached = ctx.state.extra.setdefault("loss_levels_reached", {})
        for level in self.levels:
            key = level_name(level)
            if key in reached or not record["val_loss"] < level:
                continue
            info = {
                "level": level,
                "step": record["step"],
                "val_loss": record["val_loss"],
                "train_loss": record["train_loss"],
                # Below the level before any training: this snapshot says nothing about learning.
                "below_at_start": record["step"] == 0,
            }
            write_snapshot(ctx.run_dir / SNAPSHOTS / key, ctx.model, info)
            reached[key] = info
        return None


class Budget(Callback):
    """Stops training at the first evaluation past max_seconds of wall time, or whose val loss is at or
    below target_val_loss. Wall time (state.wall, kept by the trainer) runs from the end of the step-0
    evaluation and includes every later evaluation; each evaluation's is kept in extra["wall_at_eval"]."""

    def __init__(self, max_seconds: float = 0.0, target_val_loss: float = 0.0):
        self.max_seconds, self.target = max_seconds, target_val_loss

    def wants_eval(self, ctx: Context) -> bool:
        # Past the budget: evaluate now rather than at the next eval_interval.
        return bool(self.max_seconds) and ctx.state.wall >= self.max_seconds

    def on_eval(self, ctx: Context, record: dict[str, Any]) -> str | None:
        if record["step"] == 0:
            return None  # before any training: the clock starts after this evaluation
        wall = ctx.state.wall
        ctx.state.extra.setdefault("wall_at_eval", []).append([record["step"], round(wall, 3), record["val_loss"]])
        if self.target and record["val_loss"] <= self.target:
            return f"val loss {record['val_loss']:.4f} <= target {self.target:g} after {wall:.1f} s"
        if self.max_seconds and wall >= self.max_seconds:
            return f"time budget of {self.max_seconds:g} s spent ({wall:.1f} s)"
        return None
