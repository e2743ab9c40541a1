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
from bricklm.config import ModelConfig, TrainConfig, to_dict
from bricklm.data import check_split_length, get_batch, load_corpus
from bricklm.errors import UserError
from bricklm.generate import generate_text
from bricklm.model import GPT, count_params

KEEP_LAST = 2  # complete checkpoints kept besides the best one


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
    return torch.optim.AdamW(
        groups, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2), fused=device.type == "cuda" or None
    )


def estimate_memory_bytes(model_cfg: ModelConfig, train_cfg: TrainConfig) -> int:
    """Rough training footprint: weights, gradients and two AdamW moments (16 B/param) plus activations."""
    c = model_cfg
    params = count_params(c)
    # Per block and token the backward pass keeps ~34·C floats plus the (nh × T) attention matrix.
    acts = train_cfg.batch_size * c.block_size * c.n_layer * (34 * c.n_embd + 5 * c.n_head * c.block_size) * 4
    logits = train_cfg.batch_size * c.block_size * c.vocab_size * 4 * 3
    return 16 * params + acts + logits


def available_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(model_cfg: ModelConfig, train_cfg: TrainConfig, device: torch.device) -> None:
    """Refuse a model that can't fit before allocating it, with the estimate, instead of swapping to death."""
    need = estimate_memory_bytes(model_cfg, train_cfg)
    have = available_memory_bytes() if device.type == "cpu" else None
    if device.type == "cuda":
        have = torch.cuda.mem_get_info()[0]
    if have is not None and need > have:
        raise UserError(
            f"this model needs about {need / 2**30:.1f} GiB to train ({count_params(model_cfg):,} parameters, "
            f"batch {train_cfg.batch_size} x block {model_cfg.block_size}) but only {have / 2**30:.1f} GiB is free; "
            "make it smaller"
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
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.device = resolve_device(train_cfg.device)
        self.data_dir = Path(data_dir) if data_dir else self.builtin_corpus()
        self.train_data, self.val_data, self.tokenizer, self.meta = load_corpus(self.data_dir)
        if model_cfg.vocab_size not in (0, self.tokenizer.vocab_size):
            raise UserError(
                f"model.vocab_size is {model_cfg.vocab_size} but the corpus vocabulary has {self.tokenizer.vocab_size}"
            )
        model_cfg.vocab_size = self.tokenizer.vocab_size
        check_split_length(self.train_data, model_cfg.block_size, "train")
        check_split_length(self.val_data, model_cfg.block_size, "val")
        check_fits(model_cfg, train_cfg, self.device)
        self.state = TrainState()
        self.stop_reason: str | None = None

    def builtin_corpus(self) -> Path:
        from bricklm.prepare import prepare

        target = self.run_dir / "corpus"
        if not (target / "meta.json").is_file():
            self.log(f"no --data given: preparing the built-in corpus (Python's documentation) in {target}")
            prepare([], target, builtin="python-docs", log=lambda *a, **k: None)
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
        self.model = GPT(self.model_cfg).to(self.device)
        self.optimizer = make_optimizer(self.model, cfg, self.device)
        self.forward = self.model
        if cfg.compile:
            self.forward = compile_or_eager(self.model, self.log)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.resume:
            self.restore()
        else:
            if ckpt.list_checkpoints(self.run_dir, warn=False):
                raise UserError(
                    f"{self.run_dir} already holds a training run; use --resume to continue it or pick a new --out"
                )
            (self.run_dir / "metrics.jsonl").write_text("")
        ckpt.atomic_write_json(self.run_dir / "config.json", self.config_dict())
        self.tokenizer.save(self.run_dir / "tokenizer.json")

    def config_dict(self) -> dict[str, Any]:
        d = to_dict(self.model_cfg, self.cfg)
        d["data"] = {"dir": str(self.data_dir), "corpus_sha256": self.meta.get("sha256", {}).get("corpus.txt")}
        return d

    def restore(self) -> None:
        path = ckpt.latest_checkpoint(self.run_dir)
        c = ckpt.load_checkpoint(path)
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
                self.log(f"resume: train.{k} changed from {old!r} to {v!r}")
        ckpt.load_model_tensors(self.model, c.model, str(path / "model.safetensors"))
        ckpt.restore_optimizer(self.optimizer, c.trainer["optimizer"], c.state)
        ckpt.restore_rng(c.trainer["rng"], c.state, self.generator)
        saved = c.trainer.get("train_state", {})
        self.state = TrainState(**{k: v for k, v in saved.items() if k in TrainState.__dataclass_fields__})
        self.state.step = c.trainer["step"]
        self.truncate_metrics(self.state.step)
        self.log(f"resumed from {path} at step {self.state.step}")

    def truncate_metrics(self, step: int) -> None:
        """Drop metrics logged after the checkpoint we resume from, so the log matches the weights."""
        path = self.run_dir / "metrics.jsonl"
        if not path.exists():
            return
        keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
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
        x, y = get_batch(self.train_data, cfg.batch_size, self.model_cfg.block_size, self.generator, self.device)
        with self.autocast():
            _, loss = self.forward(x, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        return loss.item()

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
                x, y = get_batch(data, self.cfg.batch_size, self.model_cfg.block_size, gen, self.device)
                with self.autocast():
                    _, loss = self.forward(x, y)
                losses.append(loss.item())
            out[name] = float(np.mean(losses))
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
        stop = any(bool(cb.on_eval(self, record)) for cb in self.callbacks)
        self.save(step, improved)
        return stop

    def save(self, step: int, improved: bool = False) -> Path:
        trainer_state = {"train_state": asdict(self.state)}
        path = ckpt.save_checkpoint(
            self.run_dir, step, self.model, self.optimizer, trainer_state,
            self.config_dict(), self.tokenizer.to_dict(), self.generator,
        )  # fmt: skip
        if improved:
            ckpt.mark_best(self.run_dir, step, self.state.best_val)
        ckpt.prune(self.run_dir, KEEP_LAST)
        return path

    def append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def write(self, message: str) -> None:
        if self.progress:
            tqdm.write(message)
        else:
            self.log(message)

    def run(self) -> dict[str, Any]:
        self.setup()
        cfg, s = self.cfg, self.state
        tokens_per_step = cfg.batch_size * self.model_cfg.block_size
        n_params = self.model.n_params()
        self.log(
            f"training {n_params:,} parameters on {self.device} for {cfg.max_iters} steps "
            f"(batch {cfg.batch_size} x block {self.model_cfg.block_size}, run dir {self.run_dir})"
        )
        for cb in self.callbacks:
            cb.on_start(self)
        bar = tqdm(total=cfg.max_iters, initial=s.step, disable=not self.progress, unit="step", dynamic_ncols=True)
        stop = s.step == 0 and self.evaluate(0)
        while not stop and s.step < cfg.max_iters:
            t0 = time.perf_counter()
            loss = self.train_step(s.step)
            dt = time.perf_counter() - t0
            s.step += 1
            s.elapsed += dt
            s.tokens += tokens_per_step
            self.append_metrics({"step": s.step, "loss": loss, "lr": learning_rate(s.step - 1, cfg), "time": s.elapsed})
            for cb in self.callbacks:
                cb.on_step(self, s.step, loss)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tokens_per_step / dt:,.0f}")
            if s.step % cfg.eval_interval == 0 or s.step == cfg.max_iters:
                stop = self.evaluate(s.step)
        bar.close()
        if self.stop_reason is None and s.step < cfg.max_iters:
            self.stop_reason = "stopped by a callback"
        for cb in self.callbacks:
            cb.on_end(self)
        self.finish_plots()
        return self.summary(n_params)

    def finish_plots(self) -> None:
        from bricklm.plots import plot_loss

        plot_loss(read_metrics(self.run_dir), self.run_dir / "loss.png")

    def summary(self, n_params: int) -> dict[str, Any]:
        s = self.state
        sample = ""
        if self.cfg.sample_chars:
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
            "stop_reason": self.stop_reason,
            "sample": sample,
        }
        ckpt.atomic_write_json(self.run_dir / "summary.json", result)
        return result


def compile_or_eager(model: torch.nn.Module, log):
    """torch.compile where it works; plain eager (with a note) where it can't, e.g. no C compiler."""
    try:
        return torch.compile(model)
    except Exception as exc:  # noqa: BLE001 - any failure to compile means: run eagerly
        log(f"torch.compile unavailable ({type(exc).__name__}: {exc}); training eagerly")
        return model


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise UserError(f"{run_dir} has no metrics.jsonl; is it a bricklm run directory?")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


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
