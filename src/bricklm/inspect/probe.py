"""Health over a short training of a copy: what `bricklm inspect --steps N` measures when a run logged none.

records = probe_training(model, train_cfg, data, steps=30)   # trains a copy, returns health records
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from bricklm.config import TrainConfig
from bricklm.text.data import get_batch
from bricklm.training.health import measure, probe_batch, snapshot, update_ratios
from bricklm.training.optim import learning_rate, make_optimizer
from bricklm.training.trainer import train_step


def probe_training(
    model, train_cfg: TrainConfig, data, steps: int, start_step: int = 0, every: int | None = None, device="cpu"
) -> list[dict[str, Any]]:
    """Train a *copy* of model for `steps` AdamW steps as `train` would (same schedule from
    start_step, same clipping) and return health records: at the start and every `every` steps."""
    model = copy.deepcopy(model).to(device).train()
    block_size = model.config.block_size
    x_probe, y_probe = probe_batch(data, train_cfg, block_size, device)
    every = every or max(1, steps // 4)
    optimizer = make_optimizer(model, train_cfg, torch.device(device))
    gen = torch.Generator().manual_seed(train_cfg.seed)
    records = [{"step": start_step, **measure(model, x_probe, y_probe)}]
    for i in range(steps):
        step = start_step + i
        before = snapshot(model)  # the weights train_step's update starts from
        train_step(
            model, optimizer, lambda: get_batch(data, train_cfg.batch_size, block_size, gen, device), train_cfg, step
        )
        if (i + 1) % every == 0 or i + 1 == steps:
            ratios = update_ratios(before, model)
            lr = learning_rate(step, train_cfg)
            records.append({"step": step + 1, "lr": lr, **measure(model, x_probe, y_probe), "update_ratio": ratios})
    return records
