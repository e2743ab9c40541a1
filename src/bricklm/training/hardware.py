"""Where training runs: which device, how many threads, and whether the model fits in its memory.

device = resolve_device("auto")            # cuda, then mps, then cpu
check_fits(model_cfg, train_cfg, device)   # a UserError with the estimate, before allocating anything
print(device_name("cpu"))                  # "Intel(R) Xeon(R) ..." for records and tables
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from bricklm.config import ModelConfig, TrainConfig
from bricklm.errors import UserError
from bricklm.files import atomic_write_json
from bricklm.model.attention import SelfAttention
from bricklm.model.fastpaths import ATTENTION_KERNELS
from bricklm.model.gpt import GPT, count_activations, count_params


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


def estimate_memory_bytes(model_cfg: ModelConfig, train_cfg: TrainConfig) -> int:
    """Training footprint: weights, gradients and two AdamW moments (16 B/param), the activations the
    backward pass keeps and the logits (the model's count_activations, 4 B each), PyTorch's own; times
    MEMORY_MARGIN. See docs/reliability.md.

    With recompute_activations only each block's input is kept, and one block at a time is recomputed
    in full during the backward pass: what makes the blog's sweep row #4 (T×T attention weights with
    dropout, 32 layers) fit a laptop.
    """
    kept = count_activations(model_cfg, train_cfg.batch_size, train_cfg.recompute_activations)
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


# --- measured choices, cached per machine --------------------------------------------------------

CACHE_ENV = "BRICKLM_CACHE_DIR"  # where tuning.json lives (default ~/.cache/bricklm)
PROBE_LAYERS = 2  # the choices are per layer and per shape, so two layers of the model measure them


@dataclass
class Tuning:
    kernel: str = "sdpa"  # for attention = auto: a name in model.ATTENTION_KERNELS
    dtype: str = "float32"
    threads: int = 0  # 0: PyTorch's default
    timings: dict | None = None  # seconds per forward + backward of the probe, by what was measured

    def autocast(self, device: torch.device):
        """bf16 autocast with dtype = "bfloat16" (matmuls in bf16, weights in fp32); nothing otherwise."""
        on = self.dtype == "bfloat16"
        return torch.autocast(device.type, dtype=torch.bfloat16) if on else contextlib.nullcontext()


def tune(model_cfg: ModelConfig, train_cfg: TrainConfig, device: torch.device, log=print, measure=True) -> Tuning:
    """The settings `auto` asks for, measured once for this shape on this machine and remembered.

    Each is timed on a 2-layer model of the same width, heads, window, batch and dropout (the choice
    is per layer, so depth doesn't change it): the attention kernel first, then bf16 against fp32 with
    it, then the thread count. The answer is kept in tuning.json under the cache folder, keyed by CPU,
    core count, torch version and shape, so the next run of the same shape starts at once.
    measure=False: `auto` means the defaults (sdpa, float32, PyTorch's threads); explicit settings stand.
    """
    dtype = "float32" if train_cfg.dtype == "auto" else train_cfg.dtype
    tuning = Tuning(dtype=dtype, threads=max(train_cfg.threads, 0))
    wanted = [
        w
        for w, on in (
            ("kernel", model_cfg.attention == "auto"),
            ("dtype", train_cfg.dtype == "auto"),
            ("threads", train_cfg.threads == -1),
        )
        if on
    ]
    if wanted and measure:
        key = json.dumps(
            [
                device_name(device.type),
                os.cpu_count(),
                torch.__version__,
                device.type,
                wanted,
                *(
                    getattr(model_cfg, f)
                    for f in ("n_embd", "n_head", "block_size", "dropout", "qk_norm", "positional")
                ),
                train_cfg.batch_size,
            ]
        )
        cache = _read_cache()
        if key in cache:
            tuning = Tuning(**cache[key])
            log(f"tuned: {_describe(tuning, wanted)} (measured earlier for this shape; {_cache_file()})")
        else:
            tuning = _measure(model_cfg, train_cfg, device, tuning, wanted)
            log(f"tuned: {_describe(tuning, wanted)} (measured now, kept in {_cache_file()})")
            cache[key] = dataclasses.asdict(tuning)
            try:
                _cache_file().parent.mkdir(parents=True, exist_ok=True)
                atomic_write_json(_cache_file(), cache)
            except OSError:
                pass  # a read-only home only costs the measurement next time
    if tuning.threads:
        torch.set_num_threads(tuning.threads)
    return tuning


def apply_kernel(model: torch.nn.Module, tuning: Tuning) -> None:
    """Point every attention = auto layer at the tuned kernel (the others keep theirs)."""
    for module in model.modules():
        if isinstance(module, SelfAttention) and module.kind == "auto":
            module.kernel = tuning.kernel


def _measure(model_cfg, train_cfg, device, tuning: Tuning, wanted: list[str]) -> Tuning:
    layers = min(PROBE_LAYERS, model_cfg.n_layer)
    cfg = dataclasses.replace(model_cfg, n_layer=layers, vocab_size=model_cfg.vocab_size or 128)
    torch.manual_seed(0)
    model = GPT(cfg).to(device).train()
    x = torch.randint(0, cfg.vocab_size, (train_cfg.batch_size, cfg.block_size), device=device)
    timings: dict[str, float] = {}

    def seconds(kernel: str, dtype: str, threads: int) -> float:
        apply_kernel(model, Tuning(kernel=kernel))
        before = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        runs = []
        try:
            for _ in range(4):  # the first is a warm-up (and, for the compiled kernel, the compilation)
                t = time.perf_counter()
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
                    _, loss = model(x, x)
                loss.backward()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                runs.append(time.perf_counter() - t)
        finally:
            torch.set_num_threads(before)
        timings[f"{kernel}/{dtype}/{threads or before} threads"] = round(statistics.median(runs[1:]), 5)
        return statistics.median(runs[1:])

    if "kernel" in wanted:
        kernels = [k for k in ATTENTION_KERNELS if k != "compiled" or device.type == "cpu" or cfg.dropout]
        tuning.kernel = min(kernels, key=lambda k: seconds(k, tuning.dtype, tuning.threads))
    if "dtype" in wanted:
        tuning.dtype = min(("float32", "bfloat16"), key=lambda d: seconds(tuning.kernel, d, tuning.threads))
    if "threads" in wanted and device.type == "cpu":
        counts = sorted({1, max(1, (os.cpu_count() or 1) // 2), os.cpu_count() or 1})
        tuning.threads = min(counts, key=lambda n: seconds(tuning.kernel, tuning.dtype, n))
    tuning.timings = timings
    return tuning


def _describe(t: Tuning, wanted: list[str]) -> str:
    parts = {"kernel": f"attention kernel {t.kernel}", "dtype": f"dtype {t.dtype}", "threads": f"{t.threads} threads"}
    return ", ".join(parts[w] for w in wanted)


def _cache_file() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "bricklm") / "tuning.json"


def _read_cache() -> dict:
    try:
        data = json.loads(_cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
