"""The optimiser and the learning-rate schedule.

    optimizer = make_optimizer(model, train_cfg, device)   # AdamW, decay on matrices only
    lr = learning_rate(step, train_cfg)                    # warm-up + cosine, or the blog's constant rate

`adamw` picks the implementation (fused, foreach, or a plain for-loop); all compute the same
update (tests/test_fastpaths.py), they differ only in speed.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from bricklm.config import TrainConfig
from bricklm.model import EMBEDDINGS

ADAMW_IMPLS = ("auto", "fused", "foreach", "plain")


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to learning_rate, then cosine decay to min_lr at max_iters; or constant (the blog)."""
    if cfg.schedule == "constant":
        return cfg.learning_rate
    if step < cfg.warmup_iters:
        return cfg.learning_rate * (step + 1) / cfg.warmup_iters
    span = max(1, cfg.max_iters - cfg.warmup_iters)
    progress = min(1.0, (step - cfg.warmup_iters) / span)
    return cfg.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (cfg.learning_rate - cfg.min_lr)


def adamw_kwargs(impl: str, device: torch.device) -> dict[str, Any]:
    """torch.optim.AdamW keyword arguments for one implementation; all compute the same update.

    auto: fused on CUDA (one kernel for every tensor), PyTorch's default (foreach) elsewhere:
    on a CPU the fused and foreach steps measured the same (docs/performance.md).
    """
    if impl == "auto":
        return {"fused": True} if torch.device(device).type == "cuda" else {}
    if impl == "fused":
        return {"fused": True}
    if impl == "foreach":
        return {"foreach": True}
    if impl == "plain":
        return {"foreach": False, "fused": False}
    raise ValueError(f"unknown AdamW implementation {impl!r}; use one of {ADAMW_IMPLS}")


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only: decaying biases, norms and embeddings just hurts."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        is_embedding = any(part in EMBEDDINGS for part in name.split("."))
        (decay if p.dim() >= 2 and not is_embedding else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(
        groups, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2), **adamw_kwargs(cfg.adamw, device)
    )


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
