"""The training loop: batches, AdamW, the learning-rate schedule, evaluation, logging, checkpoints.

    result = Trainer(model_cfg, train_cfg, data_dir="corpus/", out_dir="runs/mine").run()

A run directory holds config.json, tokenizer.json, metrics.jsonl (one line per step and
per evaluation), loss.png and checkpoints/ (see checkpoint.py). Other features hook in
through callbacks (`on_step`, `on_eval`, `on_end`) instead of growing this loop.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from bricklm import checkpoint as ckpt
from bricklm import distributed
from bricklm.config import ModelConfig, TrainConfig, to_dict
from bricklm.data import check_split_length, load_corpus
from bricklm.errors import UserError
from bricklm.generate import generate_text
from bricklm.interrupts import Interrupted, StopSignals
from bricklm.model import GPT, count_params
from bricklm.runlock import RunLock


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for, but PyTorch sees no CUDA GPU here (try --device cpu)")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("--device mps was asked for, but this machine has no Apple MPS device (try --device cpu)")
    if name not in ("cpu", "cuda", "mps"):
        raise UserError(f"unknown device {name!r}: use auto, cpu, cuda or mps")
    return torch.device(name)


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to learning_rate, then cosine decay to min_lr at max_iters; or constant (the blog)."""
    if cfg.schedule == "constant":
        return cfg.learning_rate
    if step < cfg.warmup_iters:
        return cfg.learning_rate * (step + 1) / cfg.warmup_iters
    span = max(1, cfg.max_iters - cfg.warmup_iters)
    progress = min(1.0, (step - cfg.warmup_iters) / span)
    return cfg.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (cfg.learning_rate - cfg.min_lr)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only: decaying biases, norms and embeddings just hurts."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and "emb" not in name else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    from bricklm.fastpaths import adamw_kwargs  # fused / foreach / plain: the same update (test_fastpaths.py)

    return torch.optim.AdamW(
        groups, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2), **adamw_kwargs(cfg.adamw, device)
    )


# Attention matrices (heads x T x T) the backward pass keeps per layer, in copies, by attention path; measured
# on CPU by benchmarks/reliability.py. Fused sdpa keeps none, unless dropout sends it to the math kernel.
ATTENTION_COPIES = {"manual": (5, 13), "torch_mha": (6, 6), "sdpa": (0, 5), "none": (0, 0)}  # (no dropout, dropout)
RUNTIME_BYTES = 100 * 2**20  # PyTorch's own working memory once training runs
MEMORY_MARGIN = 1.2  # the formula matched measured peaks within 0-10%; refuse a little early rather than swap


def estimate_memory_bytes(model_cfg: ModelConfig, train_cfg: TrainConfig) -> int:
    """Training footprint: weights, gradients and two AdamW moments (16 B/param), the activations the
    backward pass keeps, the logits, PyTorch's own; times MEMORY_MARGIN. See docs/reliability.md."""
    c = model_cfg
    dropout = c.dropout > 0
    per_token_layer = (22 + 4 * dropout) * c.n_embd  # residual stream, norms, q/k/v, the 4C FFN (+ dropout masks)
    per_token_layer += ATTENTION_COPIES.get(c.attention, (13, 13))[dropout] * c.n_head * c.block_size
    acts = train_cfg.batch_size * c.block_size * c.n_layer * per_token_layer * 4
    logits = train_cfg.batch_size * c.block_size * c.vocab_size * 4 * 3
    return int(MEMORY_MARGIN * (16 * count_params(c) + acts + logits + RUNTIME_BYTES))


def available_memory_bytes() -> int | None:
    """Memory a new allocation can get: Linux's MemAvailable (free + reclaimable cache; "free" alone
    undercounts), capped by a container's cgroup limit; elsewhere the physical memory; None if unknown."""
    have = None
    try:
        with open("/proc/meminfo") as fh:
            have = next(int(ln.split()[1]) * 1024 for ln in fh if ln.startswith("MemAvailable:"))
        with open("/sys/fs/cgroup/memory.max") as fh:
            limit = fh.read().strip()
        if limit.isdigit():
            with open("/sys/fs/cgroup/memory.current") as fh:
                have = min(have, int(limit) - int(fh.read().strip()))
    except (OSError, ValueError, StopIteration, IndexError):
        pass
    if have is None:
        try:
            have = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    return have


def check_fits(model_cfg: ModelConfig, train_cfg: TrainConfig, device: torch.device) -> None:
    """Refuse a model that can't fit before allocating it, with the estimate, instead of swapping to death."""
    if not train_cfg.memory_check:
        return
    need = estimate_memory_bytes(model_cfg, train_cfg)
    have = available_memory_bytes() if device.type == "cpu" else None
    if device.type == "cuda":
        have = torch.cuda.mem_get_info()[0]
    if have is not None and need > have:
        raise UserError(
            f"this model needs about {need / 2**30:.1f} GiB to train ({count_params(model_cfg):,} parameters, "
            f"batch {train_cfg.batch_size} x block {model_cfg.block_size}) but only {have / 2**30:.1f} GiB is free; "
            "make it smaller (or --no-memory-check to try anyway)"
        )


@dataclass
class TrainState:
    """What the loop carries from step to step, and what a checkpoint must restore."""

    step: int = 0
    best_val: float = float("inf")
    best_step: int = -1
    elapsed: float = 0.0  # seconds of training so far, across resumes
    tokens: int = 0
    last_train: float = float("nan")
    last_val: float = float("nan")
    skipped_steps: int = 0  # steps whose loss or gradient norm was not finite: no update was made
    extra: dict[str, Any] = field(default_factory=dict)  # room for callbacks (e.g. early-stop counters)


class Callback:
    """Hooks into the loop. Return True from on_eval to stop training after this evaluation."""

    def on_start(self, trainer: Trainer) -> None: ...
    def on_step(self, trainer: Trainer, step: int, loss: float) -> None: ...
    def on_eval(self, trainer: Trainer, record: dict[str, Any]) -> bool | None: ...
    def on_end(self, trainer: Trainer) -> None: ...


class Trainer:
    def __init__(
        self,
        model_cfg: ModelConfig,
        train_cfg: TrainConfig,
        data_dir: str | Path | None,
        out_dir: str | Path,
        *,
        resume: bool = False,
        callbacks: list[Callback] | None = None,
        log=print,
        progress: bool | None = None,
    ):
        self.model_cfg, self.cfg = model_cfg, train_cfg
        self.run_dir = Path(out_dir)
        self.resume, self.callbacks, self.log = resume, list(callbacks or []), log
        from bricklm.callbacks import config_callbacks  # early stop, loss-level snapshots

        self.callbacks += config_callbacks(train_cfg)
        if train_cfg.max_seconds or train_cfg.target_val_loss:  # time-to-loss recipes (fastpaths.Budget)
            from bricklm.fastpaths import Budget

            self.callbacks.append(Budget(train_cfg.max_seconds, train_cfg.target_val_loss))
        if train_cfg.log_health:  # first, so a callback that stops training can't skip the last record
            from bricklm.health import HealthCallback

            self.callbacks.insert(0, HealthCallback())
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.device = resolve_device(train_cfg.device)
        self.dist = distributed.init(self.device, train_cfg.dist_timeout)  # alone unless torchrun started us
        self.device = self.dist.device
        if not self.dist.is_main:  # only rank 0 logs, draws bars, runs callbacks and writes files
            self.log, self.progress, self.callbacks = (lambda *a, **k: None), False, []
        self.load_data(data_dir)
        check_fits(model_cfg, train_cfg, self.device)
        self.state = TrainState()
        self.stop_reason: str | None = None
        self.signals, self.lock = StopSignals(), None  # see run() and lock_run_dir()
        self.last_saved_step: int | None = None
        self.step_skipped, self.nonfinite_streak = False, 0

    def load_data(self, data_dir) -> None:
        """Set data_dir, train_data, val_data, tokenizer, meta and model_cfg.vocab_size (finetune overrides)."""
        model_cfg = self.model_cfg
        self.data_dir = Path(data_dir) if data_dir else self.builtin_corpus()
        self.train_data, self.val_data, self.tokenizer, self.meta = load_corpus(self.data_dir)
        if model_cfg.vocab_size not in (0, self.tokenizer.vocab_size):
            raise UserError(
                f"model.vocab_size is {model_cfg.vocab_size} but the corpus vocabulary has {self.tokenizer.vocab_size}"
            )
        model_cfg.vocab_size = self.tokenizer.vocab_size
        check_split_length(self.train_data, model_cfg.block_size, "train")
        check_split_length(self.val_data, model_cfg.block_size, "val")

    def builtin_corpus(self) -> Path:
        from bricklm.prepare import prepare

        target = self.run_dir / "corpus"
        if self.dist.is_main and not (target / "meta.json").is_file():
            self.log(f"no --data given: preparing the built-in corpus (Python's documentation) in {target}")
            prepare([], target, builtin="python-docs", log=lambda *a, **k: None)
        self.dist.barrier()  # the other processes read what rank 0 prepared
        return target

    # --- set-up -------------------------------------------------------------------------

    def setup(self) -> None:
        cfg = self.cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.generator = torch.Generator().manual_seed(cfg.seed)  # batch sampling only
        self.model = self.build_model().to(self.device)
        self.model.recompute_activations = cfg.recompute_activations  # memory for compute (fastpaths tests)
        self.model = self.dist.shard(self.model, cfg)  # --fsdp: FSDP2 shards, before the optimiser sees them
        self.optimizer = make_optimizer(self.model, cfg, self.device)
        self.forward = self.model
        if cfg.compile:
            self.forward = compile_or_eager(self.model, self.log)
        self.forward = self.dist.wrap(self.forward, cfg.seed)  # DistributedDataParallel under torchrun
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.dist.is_main:
            self.lock_run_dir()
        if self.resume:
            with self.dist.gathered(self, load=True):  # --fsdp: restore into plain copies, then shard them
                self.restore()
        else:
            if ckpt.list_checkpoints(self.run_dir, warn=False):
                raise UserError(
                    f"{self.run_dir} already holds a training run; use --resume to continue it or pick a new --out"
                )
            if self.dist.is_main:
                (self.run_dir / "metrics.jsonl").write_text("")
        if self.dist.is_main:
            ckpt.atomic_write_json(self.run_dir / "config.json", self.config_dict())
            self.tokenizer.save(self.run_dir / "tokenizer.json")

    def build_model(self) -> torch.nn.Module:
        return GPT(self.model_cfg)

    def config_dict(self) -> dict[str, Any]:
        d = to_dict(self.model_cfg, self.cfg)
        d["data"] = {"dir": str(self.data_dir), "corpus_sha256": self.meta.get("sha256", {}).get("corpus.txt")}
        return d

    def lock_run_dir(self) -> None:
        """One training per run directory (runlock.py); then clear what a killed save left behind."""
        self.lock = RunLock(self.run_dir)
        note = self.lock.acquire()
        if note:
            self.log(f"note: {note}")
        for what in ckpt.clean_stale(self.run_dir):
            self.log(f"checkpoints: {what} (left by a save that was cut short)")

    def restore(self) -> None:
        """Continue from the newest checkpoint that verifies; newer ones that don't are set aside, with a warning."""
        c, bad = ckpt.load_latest(self.run_dir, warn=self.log)
        path = c.path
        saved_model = c.config.get("model", {})
        now = asdict(self.model_cfg)
        changed = {k: (saved_model.get(k), v) for k, v in now.items() if saved_model.get(k) != v}
        if changed:
            k, (old, new) = next(iter(changed.items()))
            raise UserError(
                f"cannot resume {self.run_dir}: model.{k} was {old!r} and is now {new!r}; "
                "the model's shape must stay the same (start a new run instead)"
            )
        for k, v in asdict(self.cfg).items():
            old = c.config.get("train", {}).get(k)
            if old != v:
                self.log(f"resume: train.{k} changed from {old!r} to {v!r} (allowed: only the model must match)")
        if c.tokenizer != self.tokenizer.to_dict():
            raise UserError(
                f"cannot resume {self.run_dir}: the corpus in {self.data_dir} has a different vocabulary "
                "from the one this run was trained on (pass its original --data)"
            )
        self.load_weights(c, path)
        try:
            ckpt.restore_optimizer(self.optimizer, c.trainer["optimizer"], c.state)
            ckpt.restore_rng(c.trainer["rng"], c.state, self.generator)
            saved = c.trainer.get("train_state", {})
            self.state = TrainState(**{k: v for k, v in saved.items() if k in TrainState.__dataclass_fields__})
            self.state.step = int(c.trainer["step"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise UserError(f"{path / 'trainer.json'} is not a resumable state ({type(exc).__name__}: {exc})") from None
        for moved in ckpt.set_aside(bad if self.dist.is_main else []):  # one process moves files
            self.log(f"warning: moved {moved.name} (it failed verification) aside to {moved}")
        self.last_saved_step = self.state.step
        self.truncate_metrics(self.state.step)
        self.log(f"resumed from {path} at step {self.state.step}")

    def load_weights(self, c: ckpt.Checkpoint, path: Path) -> None:
        ckpt.load_model_tensors(self.model, c.model, str(path / "model.safetensors"))

    def truncate_metrics(self, step: int) -> None:
        """Drop metrics logged after the checkpoint we resume from, so the log matches the weights."""
        path = self.run_dir / "metrics.jsonl"
        if not path.exists() or not self.dist.is_main:
            return
        keep = [ln for ln, rec in _metric_lines(path) if rec.get("step", 0) <= step]
        # An eval at `step` happens after the checkpoint's own step finished; keep it once.
        ckpt.atomic_write_bytes(path, ("\n".join(keep) + "\n" if keep else "").encode())

    # --- the loop -------------------------------------------------------------------------

    def autocast(self):
        if self.cfg.dtype == "bfloat16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_step(self, step: int) -> float:
        cfg = self.cfg
        lr = learning_rate(step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        losses = []
        for k in range(cfg.grad_accum):  # gradient accumulation: the step's gradient is the micro-batches' mean
            x, y = self.next_batch()
            with self.dist.sync(self.forward, last=k == cfg.grad_accum - 1):  # DDP all-reduces on the last only
                with self.autocast():
                    _, micro = self.forward(x, y)
                self.dist.backward(micro / cfg.grad_accum)
            losses.append(micro.detach())
        loss = torch.stack(losses).mean()
        if cfg.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        else:
            norm = grad_norm(self.model)
        # A non-finite loss or gradient would poison the weights and Adam's moments for good: skip the update.
        self.step_skipped = not bool(torch.isfinite(loss.detach()) & torch.isfinite(norm))
        if self.step_skipped:
            self.optimizer.zero_grad(set_to_none=True)
        else:
            self.optimizer.step()
        return self.dist.mean(loss.item())  # the loss of the whole step, over every process

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next training batch (x, y); finetune overrides it with masked conversations."""
        cfg = self.cfg  # under torchrun: this process's share of the batch (distributed.py)
        return self.dist.batch(self.train_data, cfg.batch_size, self.model_cfg.block_size, self.generator, self.device)

    @torch.no_grad()
    def estimate_loss(self) -> dict[str, float]:
        """Mean loss over eval_iters batches per split, from a generator of its own.

        The same batches every evaluation (so curves compare like with like), and training's
        batch sampler is untouched (so evaluating more often doesn't change the run).
        """
        self.model.eval()
        out = {}
        for name, data in (("train", self.train_data), ("val", self.val_data)):
            gen = torch.Generator().manual_seed(self.cfg.seed + 1)
            losses = []
            for _ in range(self.cfg.eval_iters):
                x, y = self.dist.batch(data, self.cfg.batch_size, self.model_cfg.block_size, gen, self.device)
                with self.autocast():
                    _, loss = self.forward(x, y)
                losses.append(loss.item())
            out[name] = self.dist.mean(float(np.mean(losses)))  # every process's share of the batches
        if self.cfg.eval_full:  # the honest number: every target of the val split, scored once
            from bricklm.fastpaths import full_split_loss

            out["val"] = full_split_loss(
                self.model, self.val_data, self.model_cfg.block_size, self.cfg.batch_size, self.device, self.autocast
            )
        self.model.train()
        return out

    def evaluate(self, step: int) -> bool:
        losses = self.estimate_loss()
        s = self.state
        s.last_train, s.last_val = losses["train"], losses["val"]
        record = {"step": step, "eval": True, "train_loss": s.last_train, "val_loss": s.last_val, "time": s.elapsed}
        improved = s.last_val < s.best_val
        if improved:
            s.best_val, s.best_step = s.last_val, step
        self.append_metrics(record)
        self.write(
            f"step {step:>6}: train loss {s.last_train:.4f}, val loss {s.last_val:.4f}"
            + (" (best)" if improved else "")
        )
        with self.dist.gathered(self):  # --fsdp: rank 0's callbacks and checkpoint see the full weights
            stop = any(bool(cb.on_eval(self, record)) for cb in self.callbacks)
            stop = self.dist.agree(stop)  # callbacks run on rank 0; every process stops at the same step
            self.save(step, improved)
        return stop

    def save(self, step: int, improved: bool = False) -> Path | None:
        if self.dist.sharded and not self.dist.gathering:  # --fsdp: every process gathers, rank 0 writes
            with self.dist.gathered(self):
                return self.save(step, improved)
        if not self.dist.is_main:  # under torchrun every process holds the same weights; rank 0 writes them
            return None
        if not self.weights_finite():
            self.write(f"step {step}: weights not finite, so no checkpoint is saved (the last good one stays)")
            return None
        trainer_state = {"train_state": asdict(self.state)}
        weights, extra = self.checkpoint_weights()
        path = ckpt.save_checkpoint(
            self.run_dir, step, weights, self.optimizer, trainer_state,
            self.config_dict(), self.tokenizer.to_dict(), self.generator, extra_tensors=extra,
        )  # fmt: skip
        if improved:
            ckpt.mark_best(self.run_dir, step, self.state.best_val)
        ckpt.prune(self.run_dir, self.cfg.keep_last)  # only now that the new one is complete
        self.last_saved_step = step
        return path

    def checkpoint_weights(self):
        """(module whose state_dict goes to model.safetensors, extra tensors for state.safetensors or None).

        Finetune's LoRA overrides it: merged plain weights there, adapters beside the optimiser.
        """
        return self.model, None

    def weights_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.model.parameters())

    def check_nonfinite(self) -> None:
        """Count a skipped step; after cfg.max_nonfinite_steps in a row, stop with a clear error."""
        if not self.step_skipped:
            self.nonfinite_streak = 0
            return
        s = self.state
        s.skipped_steps += 1
        self.nonfinite_streak += 1
        self.write(f"step {s.step}: loss or gradient norm not finite; step skipped (no update)")
        if self.nonfinite_streak >= self.cfg.max_nonfinite_steps:
            last = ckpt.latest_checkpoint(self.run_dir, required=False)
            raise UserError(
                f"training stopped at step {s.step}: the loss or gradient norm was not finite for "
                f"{self.nonfinite_streak} steps in a row (each skipped); the last good checkpoint is {last}; "
                f"lower --learning-rate or set --grad-clip, then `bricklm train --resume {self.run_dir}`"
            )

    def interrupted(self) -> None:
        """After SIGINT/SIGTERM: save this step (unless just saved), draw the plot, and say how to go on."""
        s, name = self.state, self.signals.name
        path = self.run_dir / ckpt.CHECKPOINTS / ckpt.step_dir_name(s.step)
        if self.last_saved_step != s.step:
            path = self.save(s.step)
        self.stop_reason = f"interrupted by {name} at step {s.step}"
        self.finish_plots()
        if path:
            where = f"checkpoint saved in {path}"
        else:  # under torchrun only rank 0 writes
            where = "the weights are not finite, so nothing was saved" if not self.weights_finite() else "rank 0 saves"
        raise Interrupted(
            self.signals.signum,
            f"{name}: stopped at step {s.step}; {where}; continue with: bricklm train --resume {self.run_dir}",
        )

    def append_metrics(self, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def write(self, message: str) -> None:
        if self.progress:
            tqdm.write(message)
        else:
            self.log(message)

    def run(self) -> dict[str, Any]:
        """Train. SIGINT/SIGTERM stop after the current step: checkpoint saved, then interrupts.Interrupted."""
        try:
            with self.signals:
                return self._run()
        finally:
            if self.lock is not None:
                self.lock.release()

    def _run(self) -> dict[str, Any]:
        self.setup()
        cfg, s = self.cfg, self.state
        # Every process's micro-batches count: the tokens one optimiser step learns from.
        tokens_per_step = cfg.batch_size * cfg.grad_accum * self.dist.world_size * self.model_cfg.block_size
        n_params = self.model.n_params()
        self.log(
            f"training {n_params:,} parameters on {self.device} for {cfg.max_iters} steps "
            f"(batch {cfg.batch_size} x block {self.model_cfg.block_size}, run dir {self.run_dir})"
        )
        if self.dist.enabled or cfg.grad_accum > 1:
            self.log(
                f"{self.dist.world_size} process(es) ({self.dist.backend or 'alone'}) x {cfg.grad_accum} micro-batches "
                f"of {cfg.batch_size}: {cfg.batch_size * cfg.grad_accum * self.dist.world_size} sequences per step"
            )
        for cb in self.callbacks:
            cb.on_start(self)
        bar = tqdm(total=cfg.max_iters, initial=s.step, disable=not self.progress, unit="step", dynamic_ncols=True)
        stop = s.step == 0 and self.evaluate(0)
        while not stop and s.step < cfg.max_iters and not self.dist.any(self.signals.requested):
            t0 = time.perf_counter()
            loss = self.train_step(s.step)
            dt = time.perf_counter() - t0
            s.step += 1
            s.elapsed += dt
            s.tokens += tokens_per_step
            record = {"step": s.step, "loss": loss, "lr": learning_rate(s.step - 1, cfg), "time": s.elapsed}
            self.append_metrics({**record, "skipped": True} if self.step_skipped else record)
            self.check_nonfinite()
            for cb in self.callbacks:
                cb.on_step(self, s.step, loss)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tokens_per_step / dt:,.0f}")
            # A spent time budget (fastpaths.Budget) asks for an evaluation now; every process agrees on it.
            due = cfg.max_seconds > 0 and self.dist.any(any(getattr(cb, "eval_due", False) for cb in self.callbacks))
            if s.step % cfg.eval_interval == 0 or s.step == cfg.max_iters or due:
                stop = self.evaluate(s.step)
        bar.close()
        if self.signals.requested and s.step < cfg.max_iters:
            self.interrupted()
        if self.stop_reason is None and s.step < cfg.max_iters:
            self.stop_reason = "stopped by a callback"
        for cb in self.callbacks:
            cb.on_end(self)
        self.finish_plots()
        with self.dist.gathered(self, optimizer=False, device=self.device):  # --fsdp: rank 0 samples in full
            result = self.summary(n_params)
        self.dist.close()
        return result

    def finish_plots(self) -> None:
        if not self.dist.is_main:
            return
        from bricklm.plots import plot_loss

        plot_loss(read_metrics(self.run_dir), self.run_dir / "loss.png")

    def summary(self, n_params: int) -> dict[str, Any]:
        s = self.state
        sample = ""
        if self.cfg.sample_chars and self.dist.is_main and self.weights_finite():  # NaN weights crash the sampler
            gen = torch.Generator(device=self.device).manual_seed(self.cfg.seed)
            sample = generate_text(self.model, self.tokenizer, "", self.cfg.sample_chars, self.device, generator=gen)
        result = {
            "run_dir": str(self.run_dir),
            "parameters": n_params,
            "steps": s.step,
            "training_time_s": round(s.elapsed, 2),
            "train_loss": s.last_train,
            "val_loss": s.last_val,
            "best_val_loss": s.best_val,
            "best_step": s.best_step,
            "tokens_per_s": s.tokens / s.elapsed if s.elapsed else 0.0,
            "processes": self.dist.world_size,  # torchrun processes (distributed.py); 1 without
            "stop_reason": self.stop_reason,
            "sample": sample,
        }
        if self.dist.is_main:
            ckpt.atomic_write_json(self.run_dir / "summary.json", result)
        return result


def compile_or_eager(model: torch.nn.Module, log):
    """torch.compile where it works; plain eager (with a note) where it can't, e.g. no C compiler."""
    from bricklm.fastpaths import compile_with_fallback  # also falls back on errors raised at the first call

    return compile_with_fallback(model, log)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise UserError(f"{run_dir} has no metrics.jsonl; is it a bricklm run directory?")
    return [rec for _, rec in _metric_lines(path)]


def _metric_lines(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(line, record) for each whole line; a line torn by a crash mid-write is dropped, not fatal."""
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append((line, rec))
    return out


def grad_norm(model: torch.nn.Module) -> torch.Tensor:
    """The global L2 norm of the gradients (what clip_grad_norm_ measures), without clipping."""
    norms = [torch.linalg.vector_norm(p.grad) for p in model.parameters() if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())


def format_summary(result: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"parameters:      {result['parameters']:,}",
            f"training time:   {result['training_time_s']:.1f} s ({result['steps']} steps, "
            f"{result['tokens_per_s']:,.0f} tokens/s)",
            f"train loss:      {result['train_loss']:.4f}",
            f"val loss:        {result['val_loss']:.4f} "
            f"(best {result['best_val_loss']:.4f} at step {result['best_step']})",
            f"checkpoints:     {Path(result['run_dir']) / ckpt.CHECKPOINTS}",
            "sample:",
            result["sample"],
        ]
    )
