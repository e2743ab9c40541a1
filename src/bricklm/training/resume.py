"""A run's checkpoints written and read back: what goes where, what must match, whose run directory it is.

    lock = lock_run_dir(run_dir, log)                     # one training per run directory
    checkpoints = RunCheckpoints(run_dir, main, config, tokenizer, generator, train_cfg, say)
    checkpoints.save(step, model, optimizer, weights, state, improved)   # rank 0 writes, then prunes
    state = checkpoints.restore(model, optimizer, weights, model_cfg)  # the newest that verifies

A `weights` object says how a model goes into model.safetensors (and state.safetensors) and back:
PlainWeights as it is; AveragedWeights (train.ema) the moving average in model.safetensors, since
that is what is evaluated and sampled, and the live weights beside the optimiser so training goes
on exactly; finetune's LoRAWeights the merged weights, with the adapters beside the optimiser.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from bricklm.config import ModelConfig, TrainConfig
from bricklm.errors import UserError
from bricklm.files import RunLock
from bricklm.recipes import build, upgrade_model_table
from bricklm.storage import checkpoint as ckpt
from bricklm.storage.metrics import truncate_logs
from bricklm.training.callbacks import TrainState
from bricklm.training.optim import WeightAverage

LIVE = "live."  # state.safetensors prefix of the live weights of a run with a moving average


class PlainWeights:
    """How a model's weights go into a checkpoint and come back: as they are. (finetune has a LoRA version.)"""

    def save(self, model) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
        """(tensors for model.safetensors, extra tensors for state.safetensors or None)."""
        return ckpt.model_tensors(model), None

    def load(self, model, c: ckpt.Checkpoint) -> None:
        ckpt.load_model_tensors(model, c.model, str(c.path / "model.safetensors"))


class AveragedWeights:
    """A run with a moving average of its weights (train.ema): the average in model.safetensors, so every
    command loads the weights that were evaluated; the live weights in state.safetensors for resuming."""

    def __init__(self, average: WeightAverage):
        self.average = average

    def save(self, model) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        averaged, live = self.average.parts(model)
        return ckpt.model_tensors(dict(averaged)), {LIVE + k: v.detach().cpu().contiguous() for k, v in live.items()}

    def load(self, model, c: ckpt.Checkpoint) -> None:
        live = {k[len(LIVE) :]: v for k, v in c.state.items() if k.startswith(LIVE)}
        ckpt.load_model_tensors(model, live or c.model, str(c.path / "state.safetensors"))
        with torch.no_grad():  # a checkpoint without an average (ema switched on at resume) starts it from here
            for name, p in model.named_parameters():
                self.average.average[name] = (c.model[name] if live and name in c.model else p).detach().clone()


def check_resumable(c: ckpt.Checkpoint, model_cfg: ModelConfig, train_cfg: TrainConfig, tokenizer, log) -> None:
    """A checkpoint continues only with the same model shape and vocabulary; changed train settings are
    allowed, and said."""
    saved_model = asdict(build(ModelConfig, upgrade_model_table(c.config.get("model", {}), quiet=True), "model"))
    for k, v in asdict(model_cfg).items():
        if saved_model.get(k) != v:
            raise UserError(
                f"cannot resume {c.path.parent.parent}: model.{k} was {saved_model.get(k)!r} and is now {v!r}; "
                "the model's shape must stay the same (start a new run instead)"
            )
    for k, v in asdict(train_cfg).items():
        old = c.config.get("train", {}).get(k)
        if old != v:
            log(f"resume: train.{k} changed from {old!r} to {v!r} (allowed: only the model must match)")
    if c.tokenizer != tokenizer.to_dict():
        raise UserError(
            f"cannot resume {c.path.parent.parent}: the corpus has a different vocabulary from the one this run "
            "was trained on (pass its original --data)"
        )


def restore_state(c: ckpt.Checkpoint, optimizer, generator: torch.Generator) -> TrainState:
    """Put a checkpoint's optimiser moments and random number generators back; return its loop state."""
    try:
        ckpt.restore_optimizer(optimizer, c.trainer["optimizer"], c.state)
        ckpt.restore_rng(c.trainer["rng"], c.state, generator)
        saved = c.trainer.get("train_state", {})
        state = TrainState(**{k: v for k, v in saved.items() if k in TrainState.__dataclass_fields__})
        state.step = int(c.trainer["step"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise UserError(f"{c.path / 'trainer.json'} is not a resumable state ({type(exc).__name__}: {exc})") from None
    return state


def lock_run_dir(run_dir: Path, log) -> RunLock:
    """One training per run directory (files.RunLock); then clear what a killed save left behind."""
    lock = RunLock(run_dir)
    note = lock.acquire()
    if note:
        log(f"note: {note}")
    for what in ckpt.clean_stale(run_dir):
        log(f"checkpoints: {what} (left by a save that was cut short)")
    return lock


class RunCheckpoints:
    """Saving a run's steps and restoring the newest: one object per training, made when the run directory is."""

    def __init__(self, run_dir: Path, main: bool, config: dict, tokenizer, generator, train_cfg: TrainConfig, say):
        self.run_dir, self.main, self.config, self.tokenizer = run_dir, main, config, tokenizer
        self.generator, self.train_cfg, self.say = generator, train_cfg, say
        self.last_saved_step: int | None = None

    def save(self, step: int, model, optimizer, weights, state: TrainState, improved: bool = False) -> Path | None:
        """Checkpoint `step` (marked best if `improved`), then prune to keep_last. None, with nothing written, on
        every process but rank 0 (they hold the same weights) and when the weights are not finite."""
        if not self.main:
            return None
        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            self.say(f"step {step}: weights not finite, so no checkpoint is saved (the last good one stays)")
            return None
        tensors, extra = weights.save(model)
        train_state = {"train_state": asdict(state)}
        tok = self.tokenizer.to_dict()
        path = ckpt.save_checkpoint(
            self.run_dir, step, tensors, optimizer, train_state, self.config, tok, self.generator, extra_tensors=extra
        )
        if improved:
            ckpt.mark_best(self.run_dir, step, state.best_val)
        ckpt.prune(self.run_dir, self.train_cfg.keep_last)  # only now that the new one is complete
        self.last_saved_step = step
        return path

    def restore(self, model, optimizer, weights, model_cfg: ModelConfig) -> TrainState:
        """The newest checkpoint that verifies, back into model, optimizer and generator; the logs cut to its step.
        Checkpoints that fail verification are moved aside (by rank 0 only)."""
        c, bad = ckpt.load_latest(self.run_dir, warn=self.say)
        check_resumable(c, model_cfg, self.train_cfg, self.tokenizer, self.say)
        weights.load(model, c)
        state = restore_state(c, optimizer, self.generator)
        for moved in ckpt.set_aside(bad if self.main else []):  # one process moves files
            self.say(f"warning: moved {moved.name} (it failed verification) aside to {moved}")
        self.last_saved_step = state.step
        if self.main:
            truncate_logs(self.run_dir, state.step)
        cut_short = " (its evaluation was cut short by a stop signal: it runs first)" if state.eval_pending else ""
        self.say(f"resumed from {c.path} at step {state.step}{cut_short}")
        return state
