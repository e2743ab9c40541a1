"""The training loop: batches, the optimiser step, evaluation, logging, checkpoints, stopping cleanly.

    result = Trainer(model_cfg, train_cfg, "corpus/", "runs/mine").run()

One story, top to bottom: `_setup` builds the model and optimiser (or restores them from the
newest checkpoint that verifies), `_loop` takes optimiser steps (`train_step`) and evaluates on
schedule, `_evaluate` scores the model, lets the callbacks look and saves a checkpoint, and the
end writes the plot and summary.json. Features hook in through callbacks (callbacks.py), the data
through a dataset (datasets.py; finetune hands in its own), and how weights go into a checkpoint
through a `weights` object (finetune's LoRA merges its adapters there).

A run directory holds config.json, tokenizer.json, metrics.jsonl (one line per step and per
evaluation), loss.png, summary.json and checkpoints/ (checkpoint.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bricklm.config import ModelConfig, TrainConfig
from bricklm.errors import UserError
from bricklm.files import atomic_write_json, check_out_dir, make_dir
from bricklm.model.fastpaths import compile_with_fallback
from bricklm.model.generate import sample_text
from bricklm.model.gpt import GPT
from bricklm.recipes import to_dict
from bricklm.storage import checkpoint as ckpt
from bricklm.storage.metrics import METRICS, SAMPLES
from bricklm.training import distributed
from bricklm.training.callbacks import Callback, Context, TrainState, config_callbacks, sample_seed
from bricklm.training.console import Console
from bricklm.training.datasets import TokenDataset, open_dataset
from bricklm.training.datasize import DataSize
from bricklm.training.hardware import check_fits, resolve_device
from bricklm.training.health import HealthCallback
from bricklm.training.interrupts import EvaluationStopped, NonFiniteSteps, StopSignals, stopped_at
from bricklm.training.optim import WeightAverage, learning_rate, make_optimizer, set_learning_rate
from bricklm.training.resume import AveragedWeights, PlainWeights, RunCheckpoints, lock_run_dir
from bricklm.training.tuning import RUN_FILE, apply_kernel, read_run_tuning, tune


def train_step(
    model,
    optimizer,
    next_batch,
    cfg: TrainConfig,
    step: int,
    *,
    forward=None,
    dist=None,
    autocast=contextlib.nullcontext,
    wall: float = 0.0,
) -> tuple[float, bool]:
    """One optimiser step: the scheduled learning rate, cfg.grad_accum micro-batches from next_batch(),
    gradient clipping, and no update at all if the loss or gradient norm is not finite.

    Returns (the step's mean loss over every process, whether the update was skipped). forward is
    what to call instead of model (compiled, or DDP-wrapped); wall is the seconds spent so far (for
    a schedule that follows the time budget). The trainer, the health probe and benchmarks/run.py
    all step through here.
    """
    forward = forward or model
    set_learning_rate(optimizer, learning_rate(step, cfg, wall))
    optimizer.zero_grad(set_to_none=True)
    losses = []
    for k in range(cfg.grad_accum):  # gradient accumulation: the step's gradient is the micro-batches' mean
        x, y = next_batch()
        last = k == cfg.grad_accum - 1
        with dist.sync(forward, last) if dist else contextlib.nullcontext():  # DDP all-reduces on the last only
            with autocast():
                _, micro = forward(x, y)
            scaled = micro / cfg.grad_accum
            dist.backward(scaled) if dist else scaled.backward()
        losses.append(micro.detach())
    loss = torch.stack(losses).mean()
    if cfg.grad_clip > 0:
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    else:
        norm = grad_norm(model)
    # A non-finite loss or gradient would poison the weights and Adam's moments for good: skip the update.
    skipped = not bool(torch.isfinite(loss) & torch.isfinite(norm))
    if skipped:
        optimizer.zero_grad(set_to_none=True)
    else:
        optimizer.step()
    value = loss.item()
    return (dist.mean(value) if dist else value), skipped


def grad_norm(model: torch.nn.Module) -> torch.Tensor:
    """The global L2 norm of the gradients (what clip_grad_norm_ measures), without clipping."""
    norms = [torch.linalg.vector_norm(p.grad) for p in model.parameters() if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())


class Trainer:
    """Trains a GPT in a run directory. data: a corpus folder, None for the built-in corpus, or a dataset."""

    def __init__(
        self,
        model_cfg: ModelConfig,
        train_cfg: TrainConfig,
        data,
        out_dir: str | Path,
        *,
        resume: bool = False,
        callbacks: list[Callback] | None = None,
        log=print,
        progress: bool | None = None,
        build_model=None,
        weights=None,
        extra_config: dict[str, Any] | None = None,
    ):
        self.model_cfg, self.cfg, self.run_dir, self.resume = model_cfg, train_cfg, Path(out_dir), resume
        self.device = resolve_device(train_cfg.device)
        self.dist = distributed.init(self.device, train_cfg.dist_timeout)  # alone unless torchrun started us
        self.device = self.dist.device
        main = self.dist.is_main  # only rank 0 logs, draws bars, runs callbacks and writes files
        self.out = Console(
            self.run_dir, main, log, sys.stderr.isatty() if progress is None else progress, cfg=train_cfg
        )
        self.log = self.out.say
        health = [HealthCallback()] if train_cfg.log_health else []  # first: a stop can't skip its last record
        self.callbacks = [*health, *(callbacks or []), *config_callbacks(train_cfg)] if main else []
        check_out_dir(self.run_dir, "--resume" if resume else "--out")  # a file, read-only: refused before any work
        self.data = (
            open_dataset(data, self.run_dir, self.dist, self.log)
            if data is None or isinstance(data, (str, Path))
            else data
        )
        set_vocab_size(model_cfg, self.data.tokenizer)
        self.data.check(model_cfg.block_size)
        check_fits(model_cfg, train_cfg, self.device)
        self.build_model = build_model or (lambda: GPT(self.model_cfg))
        self.weights = weights or PlainWeights()
        self.state, self.stop_reason, self.signals = TrainState(), None, StopSignals()
        self.lock, self.nonfinite = None, NonFiniteSteps(train_cfg.max_nonfinite_steps, self.run_dir, self.out.say)
        self.run_config = {**to_dict(model_cfg, train_cfg), "data": self.data.describe(), **(extra_config or {})}

    def run(self) -> dict[str, Any]:
        """Train. SIGINT/SIGTERM stop after this step (an evaluation: at its next batch), save, raise Interrupted."""
        try:
            with self.signals:
                self._setup()
                return self._loop()
        finally:
            if self.lock is not None:
                self.lock.release()

    # --- set-up: a fresh model, or the newest checkpoint that verifies ---------------------------------

    def _setup(self) -> None:
        cfg, main = self.cfg, self.dist.is_main
        # attention/dtype/threads = auto: measured once per shape and machine (not under torchrun: ranks could
        # differ); a resumed run takes the choice it trained with, so it continues bit for bit
        recorded = read_run_tuning(self.run_dir) if self.resume else None
        self.tuning = tune(self.model_cfg, cfg, self.device, self.log, not self.dist.enabled, recorded)
        check_fits(self.model_cfg, cfg, self.device, self.tuning.kernel)  # the kernel picked may keep T x T weights
        self.autocast = functools.partial(self.tuning.autocast, self.device)  # bf16 matmuls, if tuned so
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.generator = torch.Generator().manual_seed(cfg.seed)  # batch sampling only
        self.model = self.dist.shard(self._new_model().to(self.device), cfg)  # --fsdp: before AdamW sees it
        self.optimizer = make_optimizer(self.model, cfg, self.device)
        self.average = WeightAverage(self.model, cfg.ema) if cfg.ema else None  # evaluated and saved instead
        self.weights = AveragedWeights(self.average) if self.average else self.weights
        forward = compile_with_fallback(self.model, self.log) if cfg.compile else self.model
        self.forward = self.dist.wrap(forward, cfg.seed)  # DistributedDataParallel under torchrun
        make_dir(self.run_dir, "--resume" if self.resume else "--out")
        self.checkpoints = RunCheckpoints(
            self.run_dir, main, self.run_config, self.data.tokenizer, self.generator, cfg, self.log
        )
        if main:
            self.lock = lock_run_dir(self.run_dir, self.log)
        if self.resume:
            with self._full_copies(load=True) as (model, optimizer):  # --fsdp: restore into plain copies
                self.state = self.checkpoints.restore(model, optimizer, self.weights, self.model_cfg)
        elif ckpt.list_checkpoints(self.run_dir, warn=False):
            raise UserError(
                f"{self.run_dir} already holds a training run; use --resume to continue it or pick a new --out"
            )
        elif main:
            for name in (METRICS, SAMPLES):
                (self.run_dir / name).write_text("")
        if main:
            atomic_write_json(self.run_dir / "config.json", self.run_config)
            atomic_write_json(self.run_dir / RUN_FILE, dataclasses.asdict(self.tuning))
            self.data.tokenizer.save(self.run_dir / "tokenizer.json")

    def _new_model(self) -> torch.nn.Module:
        model = self.build_model()
        model.set_recompute(self.cfg.recompute_activations, self.cfg.recompute_attention)  # test_fastpaths
        apply_kernel(model, self.tuning)
        return model

    def _full_copies(self, **kwargs):
        new_optimizer = lambda model: make_optimizer(model, self.cfg, self.device)  # noqa: E731
        return self.dist.full_copies(self.model, self.optimizer, self._new_model, new_optimizer, **kwargs)

    # --- the loop ----------------------------------------------------------------------------------

    def _loop(self) -> dict[str, Any]:
        cfg, s, dist = self.cfg, self.state, self.dist
        # Every process's micro-batches count: the tokens one optimiser step learns from.
        tokens_per_step = cfg.batch_size * cfg.grad_accum * dist.world_size * self.model_cfg.block_size
        n_params = self.model.n_params()
        for line in plan_lines(n_params, self.model_cfg, cfg, dist, self.device, self.run_dir, self.data):
            self.log(line)
        ctx = self._context(self.model)
        for cb in self.callbacks:
            cb.on_start(ctx)
        self.out.start(cfg.max_iters, s.step)
        self.wall_start = time.perf_counter() - s.wall  # a resumed evaluation's time counts too
        stop = (s.eval_pending or not self.resume) and self._evaluate(s.step)  # step 0's, or one cut short
        self.wall_start = time.perf_counter() - s.wall  # wall time runs from the end of the step-0 evaluation
        while not stop and s.step < cfg.max_iters and not self.signals.stop_now(dist.largest):
            t0 = time.perf_counter()
            loss, skipped = train_step(
                self.model,
                self.optimizer,
                self._next_batch,
                cfg,
                s.step,
                forward=self.forward,
                dist=dist,
                autocast=self.autocast,
                wall=s.wall,
            )
            if self.average:
                self.average.update(self.model, s.step)
            dt = time.perf_counter() - t0
            s.step, s.elapsed, s.tokens = s.step + 1, s.elapsed + dt, s.tokens + tokens_per_step
            s.wall = t0 + dt - self.wall_start
            record = {"step": s.step, "loss": loss, "lr": learning_rate(s.step - 1, cfg, s.wall), "time": s.elapsed}
            self.out.append({**record, "skipped": True} if skipped else record)
            s.skipped_steps += self.nonfinite.count(s.step, skipped)
            for cb in self.callbacks:
                cb.on_step(ctx, s.step, loss)
            self.out.step(s.step, cfg.max_iters, loss, tokens_per_step / dt, s.elapsed / s.step, s.wall)
            asked = dist.agree(any(cb.wants_eval(ctx) for cb in self.callbacks))  # e.g. the time budget is spent
            if s.step % cfg.eval_interval == 0 or s.step == cfg.max_iters or asked:
                stop = self._evaluate(s.step)
        self.out.close()
        if self.signals.stop_now(dist.largest) and (s.step < cfg.max_iters or s.eval_pending):
            self._interrupted()
        if self.stop_reason is None and s.step < cfg.max_iters:
            self.stop_reason = "stopped by a callback"
        for cb in self.callbacks:
            cb.on_end(ctx)
        self.out.plot()
        with self._averaged(), self._full_copies(with_optimizer=False, device=self.device) as (model, _):
            result = self._summary(model, n_params)  # --fsdp: rank 0 samples the whole model
        dist.close()
        return result

    def _next_batch(self):
        return self.data.batch(self.generator, self.cfg, self.model_cfg.block_size, self.device, self.dist)

    # --- evaluation and checkpoints ------------------------------------------------------------------

    def _averaged(self):
        """ema: the averaged weights in the model, for what is scored, shown and saved; nothing otherwise."""
        return self.average.applied(self.model) if self.average else contextlib.nullcontext()

    def _evaluate(self, step: int) -> bool:
        """Score the model, let the callbacks look, save a checkpoint; True if training should stop. A stop signal
        abandons the scoring at its next batch: nothing recorded; state.eval_pending: resuming runs it first."""
        try:
            with self._averaged():
                return self._evaluate_now(step)
        except EvaluationStopped:
            self.state.eval_pending = True
            return True

    def _evaluate_now(self, step: int) -> bool:
        s = self.state
        with self.signals.evaluation(self.out.eval_progress, self.dist.largest) as progress:
            losses = self.data.losses(
                self.model,
                self.cfg,
                self.model_cfg.block_size,
                self.device,
                self.dist,
                self.autocast,
                forward=self.forward,
                progress=progress,
            )
        s.last_train, s.last_val, s.eval_pending = losses["train"], losses["val"], False
        s.last_val_bpb = losses.get("val_bpb")
        s.wall = time.perf_counter() - self.wall_start if step else s.wall  # this evaluation counts too
        record = {"step": step, "eval": True, **eval_losses(losses), "time": s.elapsed}
        improved = s.last_val < s.best_val
        if improved:
            s.best_val, s.best_step = s.last_val, step
        self.out.append(record)
        self.out.say(f"step {step:>6}: train loss {s.last_train:.4f}, val loss {s.last_val:.4f}" + " (best)" * improved)
        with self._full_copies() as (model, optimizer):  # --fsdp: rank 0's callbacks and checkpoint see it whole
            ctx = self._context(model)
            reasons = [cb.on_eval(ctx, record) for cb in self.callbacks]  # every callback sees every evaluation
            reason = next((r for r in reasons if r), None)
            if reason:
                self.stop_reason = reason
                self.out.say(reason)
            stop = self.dist.agree(reason is not None)  # rank 0 decides; every process stops at the same step
            self.checkpoints.save(step, model, optimizer, self.weights, s, improved)
        return stop

    def _interrupted(self) -> None:
        """After SIGINT/SIGTERM: save this step (unless just saved), draw the plot, and say how to go on."""
        s = self.state
        path = self.run_dir / ckpt.CHECKPOINTS / ckpt.step_dir_name(s.step)
        if self.dist.agree(self.checkpoints.last_saved_step != s.step):  # only rank 0's knows; --fsdp: all gather
            with self._full_copies() as (model, optimizer):
                path = self.checkpoints.save(s.step, model, optimizer, self.weights, s)
        self.stop_reason = f"interrupted by {self.signals.name} {stopped_at(s.step, s.eval_pending)}"
        self.out.plot()
        raise self.signals.interrupted(s.step, path, self.run_dir, evaluating=s.eval_pending, main=self.dist.is_main)

    # --- the end, and small helpers ------------------------------------------------------------------

    def _summary(self, model, n_params: int) -> dict[str, Any]:
        sample = ""
        finite = self.dist.is_main and all(bool(torch.isfinite(p).all()) for p in model.parameters())
        if self.cfg.sample_chars and finite:  # NaN weights crash the sampler
            seed = sample_seed(self.cfg.seed, self.run_dir)
            sample = sample_text(model, self.data.tokenizer, self.cfg.sample_chars, self.device, seed)
        result = summary_record(self.state, self.run_dir, n_params, self.dist.world_size, self.stop_reason, sample)
        if self.dist.is_main:
            atomic_write_json(self.run_dir / "summary.json", result)
        return result

    def _context(self, model) -> Context:
        return Context(
            model,
            self.state,
            self.cfg,
            self.model_cfg,
            self.run_dir,
            self.device,
            self.data,
            self.out.say,
            self.out.append,
        )


def eval_losses(losses: dict[str, float]) -> dict[str, float]:
    """An evaluation's losses as metrics.jsonl names them: per token, and in bits per byte where the data
    knows its bytes (a corpus does; fine-tuning's conversations don't)."""
    named = {"train_loss": losses["train"], "val_loss": losses["val"]}
    return named | {k: losses[k] for k in ("train_bpb", "val_bpb") if k in losses}


def set_vocab_size(model_cfg: ModelConfig, tokenizer) -> None:
    """The model's vocabulary is the tokenizer's; a recipe that says otherwise is an error."""
    vocab = tokenizer.vocab_size
    if model_cfg.vocab_size not in (0, vocab):
        raise UserError(f"model.vocab_size is {model_cfg.vocab_size} but the corpus vocabulary has {vocab}")
    model_cfg.vocab_size = vocab


def plan_lines(n_params: int, model_cfg: ModelConfig, cfg: TrainConfig, dist, device, run_dir, data=None) -> list[str]:
    """What training is about to do, said before the first step: and for a corpus, where the run sits between
    too little text and plenty (datasize.py), with a warning when it will mostly memorise."""
    lines = [
        f"training {n_params:,} parameters on {device} for {cfg.max_iters} steps "
        f"(batch {cfg.batch_size} x block {model_cfg.block_size}, run dir {run_dir})"
    ]
    if dist.enabled or cfg.grad_accum > 1:
        lines.append(
            f"{dist.world_size} process(es) ({dist.backend or 'alone'}) x {cfg.grad_accum} micro-batches "
            f"of {cfg.batch_size}: {cfg.batch_size * cfg.grad_accum * dist.world_size} sequences per step"
        )
    if isinstance(data, TokenDataset):
        per_step = cfg.batch_size * cfg.grad_accum * dist.world_size * model_cfg.block_size
        size = DataSize(n_params, len(data.train), per_step, cfg.max_iters)
        lines += [f"data: {size.line()}", f"  {size.expectation()}"]
        lines += [f"warning: {size.warning()}"] if size.warning() else []
    return lines


def summary_record(s: TrainState, run_dir: Path, n_params: int, processes: int, stop_reason, sample: str) -> dict:
    """What summary.json holds, and what Trainer.run() returns."""
    return {
        "run_dir": str(run_dir),
        "parameters": n_params,
        "steps": s.step,
        "training_time_s": round(s.elapsed, 2),
        "train_loss": s.last_train,
        "val_loss": s.last_val,
        "val_bpb": s.last_val_bpb,  # None where the data doesn't know its bytes (fine-tuning)
        "best_val_loss": s.best_val,
        "best_step": s.best_step,
        "tokens_per_s": s.tokens / s.elapsed if s.elapsed else 0.0,
        "processes": processes,  # torchrun processes (distributed.py); 1 without
        "stop_reason": stop_reason,
        "sample": sample,
    }
