"""The optimiser, the learning-rate schedule, and a moving average of the weights.

    optimizer = make_optimizer(model, train_cfg, device)   # AdamW (decay on matrices only), or Muon + AdamW
    set_learning_rate(optimizer, learning_rate(step, train_cfg, wall))
    ema = WeightAverage(model, 0.99); ema.update(model, step)
    with ema.applied(model): evaluate(model)            # the averaged weights, just for the duration

`adamw` picks the implementation (fused, foreach, or a plain for-loop); all compute the same
update (tests/model/test_fastpaths.py), they differ only in speed. With optimizer = "muon" the blocks'
weight matrices get torch.optim.Muon (momentum orthogonalised by Newton-Schulz, Keller Jordan's
optimizer, with its step scaled to AdamW's size so one learning rate serves both, as Moonshot's
Moonlight does) and everything else (embeddings, the head, norms, biases) keeps AdamW; the two
are saved and restored as one optimiser.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any

import torch

from bricklm.config import TrainConfig
from bricklm.model.gpt import EMBEDDINGS

ADAMW_IMPLS = ("auto", "fused", "foreach", "plain")


def learning_rate(step: int, cfg: TrainConfig, wall: float = 0.0) -> float:
    """The rate for optimiser step `step` (0-based): linear warm-up, then cosine decay to min_lr, or
    warmup-stable-decay (wsd), or the blog's constant rate. The decay runs over max_iters steps, or,
    with schedule_by_time, over the time budget: `wall` seconds of max_seconds spent."""
    if cfg.schedule == "constant":
        return cfg.learning_rate
    if step < cfg.warmup_iters:
        return cfg.learning_rate * (step + 1) / cfg.warmup_iters
    if cfg.schedule_by_time and cfg.max_seconds:
        progress = min(1.0, wall / cfg.max_seconds)
    else:
        progress = min(1.0, (step - cfg.warmup_iters) / max(1, cfg.max_iters - cfg.warmup_iters))
    if cfg.schedule == "wsd":
        cooled = max(0.0, progress - (1 - cfg.cooldown_frac)) / cfg.cooldown_frac  # 0 while stable, 1 at the end
        return cfg.learning_rate + cooled * (cfg.min_lr - cfg.learning_rate)
    return cfg.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (cfg.learning_rate - cfg.min_lr)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """lr for every parameter group, times the group's own ratio (Muon's muon_lr / learning_rate)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_ratio", 1.0)


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


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device):
    """AdamW with weight decay on matrices only (decaying biases, norms and embeddings just hurts); with
    optimizer = "muon", Muon for the hidden matrices (inside the blocks) and AdamW for the rest."""
    decay, no_decay, hidden = [], [], []
    for name, p in model.named_parameters():
        is_embedding = any(part in EMBEDDINGS for part in name.split("."))
        if cfg.optimizer == "muon" and p.dim() == 2 and name.startswith("blocks."):
            hidden.append(p)
        else:
            (decay if p.dim() >= 2 and not is_embedding else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    adamw = torch.optim.AdamW(
        groups, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2), **adamw_kwargs(cfg.adamw, device)
    )
    if cfg.optimizer != "muon":
        return adamw
    muon_lr = cfg.muon_lr or cfg.learning_rate
    muon = torch.optim.Muon(hidden, lr=muon_lr, weight_decay=cfg.weight_decay, adjust_lr_fn="match_rms_adamw")
    muon.param_groups[0]["lr_ratio"] = muon_lr / cfg.learning_rate
    return Combined([muon, adamw])


class Combined:
    """Several optimisers over disjoint parameters, stepped, saved and restored as one.

    It has the part of torch.optim.Optimizer's interface that bricklm uses. state_dict() numbers the
    parameters straight through (the first optimiser's, then the next's), as one torch optimiser
    would, so checkpoint.py saves and restores it like AdamW alone.
    """

    def __init__(self, optimizers: list[torch.optim.Optimizer]):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict]:
        return [g for opt in self.optimizers for g in opt.param_groups]

    @property
    def state(self) -> dict:
        return {p: s for opt in self.optimizers for p, s in opt.state.items()}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    def state_dict(self) -> dict[str, Any]:
        state, groups, offset = {}, [], 0
        for opt in self.optimizers:
            sd = opt.state_dict()
            state.update({i + offset: s for i, s in sd["state"].items()})
            groups += [{**g, "params": [i + offset for i in g["params"]]} for g in sd["param_groups"]]
            offset += sum(len(g["params"]) for g in opt.param_groups)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        groups, offset = list(state_dict["param_groups"]), 0
        for opt in self.optimizers:
            mine, groups = groups[: len(opt.param_groups)], groups[len(opt.param_groups) :]
            count = sum(len(g["params"]) for g in opt.param_groups)
            state = {i - offset: s for i, s in state_dict["state"].items() if offset <= int(i) < offset + count}
            opt.load_state_dict(
                {"state": state, "param_groups": [{**g, "params": [i - offset for i in g["params"]]} for g in mine]}
            )
            offset += count
        if groups:
            raise ValueError(f"{len(groups)} saved parameter groups more than this optimiser has")


class WeightAverage:
    """An exponential moving average of the weights (train.ema): evaluated, sampled and saved in their place.

    The average of the last ~1/(1 - decay) steps' weights is smoother than the last step's, which on a
    small corpus scores lower. Early on the decay is held at (1 + step) / (10 + step), so the average
    doesn't drag the untrained start along for hundreds of steps.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.average = {n: p.detach().clone() for n, p in model.named_parameters()}
        self.swapped = False  # inside applied(): the model holds the average, `average` the live weights

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        for name, p in model.named_parameters():
            self.average[name].lerp_(p.detach(), 1 - decay)

    @contextmanager
    def applied(self, model: torch.nn.Module):
        """The model holds the averaged weights for the duration; its own come back after."""
        self._swap(model)
        try:
            yield model
        finally:
            self._swap(model)

    @torch.no_grad()
    def _swap(self, model: torch.nn.Module) -> None:
        for name, p in model.named_parameters():
            live = p.detach().clone()
            p.copy_(self.average[name])
            self.average[name] = live
        self.swapped = not self.swapped

    def parts(self, model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(the averaged weights, the live weights) by parameter name, whichever the model holds now."""
        held = {n: p.detach() for n, p in model.named_parameters()}
        return (held, self.average) if self.swapped else (self.average, held)
