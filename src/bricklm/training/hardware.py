"""Where training runs: which device, and whether the model fits in its memory (the measured settings: tuning.py).

device = resolve_device("auto")            # cuda, then mps, then cpu
check_fits(model_cfg, train_cfg, device)   # a UserError with the estimate, before allocating anything
print(device_name("cpu"))                  # "Intel(R) Xeon(R) ..." for records and tables
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from bricklm.config import ModelConfig, TrainConfig
from bricklm.errors import UserError
from bricklm.model.gpt import count_activations, count_params


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


def device_list() -> list[tuple[str, str | None]]:
    """[(device, None if usable else why not)] for cpu, cuda and mps: what this PyTorch can see."""
    mps = getattr(torch.backends, "mps", None)
    return [
        ("cpu", None),
        ("cuda", None if torch.cuda.is_available() else "unavailable: PyTorch sees no CUDA GPU"),
        ("mps", None if mps is not None and mps.is_available() else "unavailable: no Apple MPS device"),
    ]


def device_name(device: str) -> str:

    if device == "cuda":
        return torch.cuda.get_device_name(0)
    if device == "cpu":
        return cpu_model() or platform.processor() or "CPU"
    return "Apple GPU (MPS)"


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


RUNTIME_BYTES = 100 * 2**20  # PyTorch's own working memory once training runs
MEMORY_MARGIN = 1.2  # the formula matched measured peaks within 0-10%; refuse a little early rather than swap


def estimate_memory_bytes(model_cfg: ModelConfig, train_cfg: TrainConfig, kernel: str = "sdpa") -> int:
    """Training footprint: weights, gradients and two AdamW moments (16 B/param), the activations the
    backward pass keeps and the logits (the model's count_activations, 4 B each), PyTorch's own; times
    MEMORY_MARGIN. See docs/reliability.md.

    With recompute_activations only each block's input is kept, and one block at a time is recomputed
    in full during the backward pass: what makes the blog's sweep row #4 (T×T attention weights with
    dropout, 32 layers) fit a laptop.
    """
    kept = count_activations(
        model_cfg, train_cfg.batch_size, train_cfg.recompute_activations, kernel, train_cfg.recompute_attention
    )
    return int(MEMORY_MARGIN * (16 * count_params(model_cfg) + 4 * kept + RUNTIME_BYTES))


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


def check_fits(model_cfg: ModelConfig, train_cfg: TrainConfig, device: torch.device, kernel: str = "sdpa") -> None:
    """Refuse a model that can't fit before allocating it, with the estimate, instead of swapping to death.
    kernel: attention = auto's (checked with sdpa before tuning, and again once the tuner picked another)."""
    if not train_cfg.memory_check:
        return
    need = estimate_memory_bytes(model_cfg, train_cfg, kernel)
    have = available_memory_bytes() if device.type == "cpu" else None
    if device.type == "cuda":
        have = torch.cuda.mem_get_info()[0]
    if have is not None and need > have:
        raise UserError(
            f"this model needs about {need / 2**30:.1f} GiB to train ({count_params(model_cfg):,} parameters, "
            f"batch {train_cfg.batch_size} x block {model_cfg.block_size}) but only {have / 2**30:.1f} GiB is free; "
            "make it smaller, trade time for memory with --recompute-attention or --recompute-activations, "
            "or --no-memory-check to try anyway"
        )
