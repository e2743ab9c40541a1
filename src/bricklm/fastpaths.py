"""Speed switches for training, each beside the plain path it must agree with (tests/test_fastpaths.py).

    forward = compile_with_fallback(model, log)      # torch.compile, eager if it fails, even at the first call
    kwargs = adamw_kwargs("foreach", device)         # fused | foreach | plain (for-loop) AdamW
    val = full_split_loss(model, val_tokens, 128)    # every token of the split scored once, deterministic
    callbacks = [Budget(max_seconds=60, target_val_loss=1.68)]

The matching TrainConfig fields are `compile`, `adamw`, `eval_full`, `max_seconds` and
`target_val_loss`; benchmarks/run.py measures what each one buys on the current machine.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import torch
import torch.nn as nn

ADAMW_IMPLS = ("auto", "fused", "foreach", "plain")


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


class CompiledWithFallback(nn.Module):
    """Calls torch.compile(model); on the first failure (often raised lazily, at the first call,
    when inductor looks for a C compiler or meets an op it can't lower) it logs one line and
    runs the plain module from then on. It is an nn.Module so DistributedDataParallel can wrap it."""

    def __init__(self, model: nn.Module, log=print, compiler=None):
        super().__init__()
        self.model = model
        self.log = log
        try:
            # Kept in a list so the compiled wrapper isn't registered as a second copy of the submodule.
            self._compiled = [(compiler or torch.compile)(model)]
        except Exception as exc:  # noqa: BLE001 - any failure to compile means: run eagerly
            self._give_up(exc)

    def _give_up(self, exc: BaseException) -> None:
        self._compiled = []
        self.log(f"torch.compile unavailable ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); running eagerly")

    @property
    def compiled(self) -> bool:
        return bool(self._compiled)

    def forward(self, *args, **kwargs):
        if self._compiled:
            try:
                return self._compiled[0](*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - compile errors surface here, lazily
                if isinstance(exc, (KeyboardInterrupt, torch.cuda.OutOfMemoryError)):
                    raise
                self._give_up(exc)
        return self.model(*args, **kwargs)


def compile_with_fallback(model: nn.Module, log=print, compiler=None) -> nn.Module:
    return CompiledWithFallback(model, log, compiler)


@torch.no_grad()
def full_split_loss(model: nn.Module, tokens, block_size: int, batch_size: int = 64, device="cpu", autocast=None):
    """Mean cross-entropy over every target of a split, each scored exactly once.

    Windows of block_size start at 0, T, 2T, ...; one last window ends at the split's end and
    scores only the targets the others missed. Deterministic and the same for every run with the
    same block_size, unlike a few random batches. Costs one forward pass over the split.
    """
    from bricklm.data import _as_tensor, check_split_length

    check_split_length(tokens, block_size, "val")
    data = _as_tensor(tokens)
    n_targets = len(data) - 1
    starts = list(range(0, n_targets - block_size + 1, block_size))
    covered = starts[-1] + block_size
    tail_start = n_targets - block_size  # the last full window; scores targets covered..n_targets-1 only
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    ctx = autocast if autocast is not None else contextlib.nullcontext
    try:
        for i in range(0, len(starts), batch_size):
            ix = torch.tensor(starts[i : i + batch_size])
            total_i, n_i = _window_loss(model, data, ix, block_size, 0, device, ctx)
            total, count = total + total_i, count + n_i
        if covered < n_targets:
            total_i, n_i = _window_loss(
                model, data, torch.tensor([tail_start]), block_size, covered - tail_start, device, ctx
            )
            total, count = total + total_i, count + n_i
    finally:
        model.train(was_training)
    return total / count


def _window_loss(model, data, ix, block_size, skip, device, ctx):
    """Summed loss of the windows starting at ix, ignoring each window's first `skip` targets."""
    index = ix[:, None] + torch.arange(block_size + 1)
    windows = data[index].to(torch.int64)
    x, y = windows[:, :-1].to(device), windows[:, 1:].to(device)
    with ctx():
        logits, _ = model(x)
    logits = logits[:, skip:].float()
    y = y[:, skip:]
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum")
    return float(loss), y.numel()


class Budget:
    """Stops training at the first evaluation past max_seconds of wall time, or whose val loss is
    at or below target_val_loss. Wall time runs from the end of the step-0 evaluation (so the
    step-0 checkpoint save is counted, conservatively) and includes every later evaluation; it is kept in
    trainer.state.extra["wall_s"] and each evaluation's in extra["wall_at_eval"]."""

    def __init__(self, max_seconds: float = 0.0, target_val_loss: float = 0.0, clock=time.perf_counter):
        self.max_seconds, self.target = max_seconds, target_val_loss
        self.clock = clock
        self.t0: float | None = None
        self.offset = 0.0
        self.eval_due = False

    def on_start(self, trainer) -> None:
        self.offset = float(trainer.state.extra.get("wall_s", 0.0))  # a resumed run keeps its spent time
        self.t0 = self.clock()
        self.eval_due = False

    def wall(self) -> float:
        return self.offset + self.clock() - self.t0

    def on_step(self, trainer, step, loss) -> None:
        # Past the budget: ask the loop for an evaluation now rather than at the next eval_interval.
        self.eval_due = bool(self.max_seconds) and self.wall() >= self.max_seconds

    def on_eval(self, trainer, record) -> bool:
        if record["step"] == 0 and trainer.state.step == 0:
            self.t0 = self.clock()  # the clock starts at the first training step
            return False
        wall = self.wall()
        extra = trainer.state.extra
        extra["wall_s"] = wall
        extra.setdefault("wall_at_eval", []).append([record["step"], round(wall, 3), record["val_loss"]])
        if self.target and record["val_loss"] <= self.target:
            trainer.stop_reason = f"val loss {record['val_loss']:.4f} <= target {self.target:g} after {wall:.1f} s"
            return True
        if self.max_seconds and wall >= self.max_seconds:
            trainer.stop_reason = f"time budget of {self.max_seconds:g} s spent ({wall:.1f} s)"
            return True
        return False

    def on_end(self, trainer) -> None: ...
