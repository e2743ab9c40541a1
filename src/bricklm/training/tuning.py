"""The settings `auto` asks for (attention kernel, dtype, threads), measured per shape and machine and remembered.

    tuning = tune(model_cfg, train_cfg, device, log)            # measured, or read from the cache
    tuning = tune(model_cfg, train_cfg, device, log, recorded=read_run_tuning(run_dir))  # --resume
    apply_kernel(model, tuning); with tuning.autocast(device): ...
    cached_choices()                                            # what `bricklm tune` lists

A choice is measured on a 2-layer copy of the model (the choices are per layer): one warm-up round, then
PROBE_ROUNDS timed rounds with the candidates interleaved, the fastest of each candidate's rounds counting
(a busy machine only ever adds time). It is cached in tuning.json under the cache folder (BRICKLM_CACHE_DIR,
default ~/.cache/bricklm) with the machine's load and the time; one measured while the machine was busy
(LOADED) is measured again by the next new run that finds the machine quiet. The load is the CPU time other
processes took, in cores: sampled for a moment before measuring, and over the measurement itself (from
/proc/stat, less this process's own; the 1-minute load average where there is no /proc/stat). Not the load
average alone: it still counts a run that has just finished (so back-to-back runs would all look busy) and
is slow to count one that has just started (so a contended measurement could pass for quiet). A run keeps
the choice it trained with in RUN/tuning.json, and `train --resume` reuses it, so resume stays bit-exact
whatever the cache says by then. BRICKLM_TUNE=off (the test suite sets it) makes `auto` the plain settings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from bricklm.config import ModelConfig, TrainConfig
from bricklm.files import atomic_write_json
from bricklm.model.attention import SelfAttention
from bricklm.model.fastpaths import ATTENTION_KERNELS
from bricklm.model.gpt import GPT
from bricklm.training.hardware import device_name

CACHE_ENV = "BRICKLM_CACHE_DIR"  # where tuning.json lives (default ~/.cache/bricklm)
TUNE_ENV = "BRICKLM_TUNE"  # "off": nothing is measured, auto means sdpa, float32 and PyTorch's threads
RUN_FILE = "tuning.json"  # in a run folder: the choice the run trains with
PROBE_LAYERS = 2  # the choices are per layer and per shape, so two layers of the model measure them
PROBE_ROUNDS = 3  # timed rounds after the warm-up; the minimum of each candidate's counts
LOADED = 0.25  # busy: other processes used more than this share of the cores, before or while measuring
LOAD_SAMPLE_S = 0.25  # how long the reading before measuring watches the machine
SHAPE_FIELDS = ("n_embd", "n_head", "block_size", "dropout", "qk_norm", "positional")  # model fields in the key


@dataclass
class Tuning:
    kernel: str = "sdpa"  # for attention = auto: a name in model.ATTENTION_KERNELS
    dtype: str = "float32"
    threads: int = 0  # 0: PyTorch's default
    timings: dict | None = None  # fastest seconds per forward + backward of the probe, by what was measured
    load: list[float] | None = None  # cores other processes kept busy just before and while measuring (_load)
    loaded: bool = False  # measured while the machine was busy (or an older cache entry, load unknown)
    measured_at: str = ""  # UTC, ISO 8601
    probe_seconds: float = 0.0  # what measuring cost, compilation included

    @classmethod
    def from_dict(cls, data: dict) -> Tuning:
        """A cache entry or a run's record; an entry written before the load was recorded counts as loaded."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{"loaded": "load" not in data, **{k: v for k, v in data.items() if k in known}})

    def autocast(self, device: torch.device):
        """bf16 autocast with dtype = "bfloat16" (matmuls in bf16, weights in fp32); nothing otherwise."""
        on = self.dtype == "bfloat16"
        return torch.autocast(device.type, dtype=torch.bfloat16) if on else contextlib.nullcontext()


def tune(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    device: torch.device,
    log=print,
    measure: bool = True,
    recorded: Tuning | None = None,
    retune: bool = False,
) -> Tuning:
    """The settings for attention = auto, dtype = auto and threads = auto (-1); explicit settings stand.

    recorded: the choice a run trained with (read_run_tuning), taken as it is: nothing measured or read.
    measure=False (torchrun, where ranks could choose differently) or BRICKLM_TUNE=off: the plain settings.
    retune: measure even when the cache has a choice. Sets PyTorch's thread count to the choice.
    """
    tuning = Tuning(
        dtype="float32" if train_cfg.dtype == "auto" else train_cfg.dtype, threads=max(train_cfg.threads, 0)
    )
    wanted = auto_settings(model_cfg, train_cfg)
    if wanted and recorded is not None:
        explicit = {f: getattr(tuning, f) for f in ("kernel", "dtype", "threads") if f not in wanted}
        tuning = dataclasses.replace(recorded, **explicit)
        log(f"tuned: {_describe(tuning, wanted)} (the choice this run trained with, from its {RUN_FILE})")
    elif wanted and measure and os.environ.get(TUNE_ENV, "").lower() != "off":
        key, cache = cache_key(model_cfg, train_cfg, device, wanted), _read_cache()
        cached = Tuning.from_dict(cache[key]) if isinstance(cache.get(key), dict) else None
        busy = cached is not None and cached.loaded and _busy(_load())
        if cached is not None and not retune and (not cached.loaded or busy):
            tuning = cached
            why = "measured while the machine was busy, and it still is" if busy else "measured earlier"
            log(f"tuned: {_describe(tuning, wanted)} ({why}, {cached.measured_at}; {cache_file()})")
        else:
            tuning = _measure(model_cfg, train_cfg, device, tuning, wanted)
            note = "; the machine was busy, so the next run measures again when it is quiet" if tuning.loaded else ""
            log(
                f"tuned: {_describe(tuning, wanted)} (measured now in {tuning.probe_seconds:.1f} s, "
                f"kept in {cache_file()}{note})"
            )
            cache[key] = {**dataclasses.asdict(tuning), "shape": _shape(model_cfg, train_cfg, device, wanted)}
            try:
                cache_file().parent.mkdir(parents=True, exist_ok=True)
                atomic_write_json(cache_file(), cache)
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


def read_run_tuning(run_dir: Path) -> Tuning | None:
    """The choice a run trained with (RUN/tuning.json), or None for a run from before it was recorded."""
    try:
        data = json.loads((Path(run_dir) / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return Tuning.from_dict(data) if isinstance(data, dict) else None


def cached_choices() -> list[dict]:
    """Every cached choice, oldest first: its shape, the choice, timings, load, when (for `bricklm tune`)."""
    entries = [{"shape": {"key": k}, **v} for k, v in _read_cache().items() if isinstance(v, dict)]
    return sorted(entries, key=lambda e: str(e.get("measured_at", "")))


def cache_key(model_cfg: ModelConfig, train_cfg: TrainConfig, device: torch.device, wanted: list[str]) -> str:
    """The machine (CPU, cores, torch), what is measured, and the shape: one cache entry each."""
    shape = _shape(model_cfg, train_cfg, device, wanted)
    return json.dumps([shape["cpu"], os.cpu_count(), torch.__version__, *list(shape.values())[1:]])


def auto_settings(model_cfg: ModelConfig, train_cfg: TrainConfig) -> list[str]:
    """What these settings leave to measurement: some of "kernel", "dtype", "threads"."""
    on = {
        "kernel": model_cfg.attention == "auto",
        "dtype": train_cfg.dtype == "auto",
        "threads": train_cfg.threads == -1,
    }
    return [w for w, yes in on.items() if yes]


def _shape(model_cfg, train_cfg, device, wanted) -> dict:
    return {
        "cpu": device_name(device.type),
        "device": device.type,
        "wanted": wanted,
        **{f: getattr(model_cfg, f) for f in SHAPE_FIELDS},
        "batch_size": train_cfg.batch_size,
        # what was measured with: a kernel timed in float32 says nothing of bf16, nor one thread of four
        "dtype": train_cfg.dtype,
        "threads": train_cfg.threads,
        # with it, dropout sends every kernel down one recomputing path: a kernel timed without it says nothing
        "recompute_attention": train_cfg.recompute_attention,
    }


@dataclass(frozen=True)
class CpuReading:
    wall: float  # seconds, monotonic
    busy: float | None  # CPU seconds all processes have used since boot (/proc/stat), None where unknown
    own: float  # CPU seconds this process has used, all its threads


def _cpu_reading() -> CpuReading:
    busy = None
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal: all but idle and iowait is work
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    return CpuReading(time.monotonic(), busy, time.process_time())


def _load(since: CpuReading | None = None) -> float:
    """Cores other processes kept busy from `since` until now (without it, over the next LOAD_SAMPLE_S): what
    this process competes with. Falls back to the 1-minute load average (0 on Windows, which has none)."""
    if since is None:
        since = _cpu_reading()
        time.sleep(LOAD_SAMPLE_S)
    now = _cpu_reading()
    wall = max(now.wall - since.wall, 1e-9)
    own = (now.own - since.own) / wall
    if since.busy is not None and now.busy is not None:
        return max(0.0, (now.busy - since.busy) / wall - own)
    try:
        return max(0.0, os.getloadavg()[0] - own)
    except (OSError, AttributeError):
        return 0.0


def _busy(load: float) -> bool:
    return load > LOADED * (os.cpu_count() or 1)


def _measure(model_cfg, train_cfg, device, tuning: Tuning, wanted: list[str]) -> Tuning:
    start, load_before, reading = time.perf_counter(), _load(), _cpu_reading()
    layers = min(PROBE_LAYERS, model_cfg.n_layer)
    cfg = dataclasses.replace(model_cfg, n_layer=layers, vocab_size=model_cfg.vocab_size or 128)
    torch.manual_seed(0)
    model = GPT(cfg).to(device).train()
    model.set_recompute(False, train_cfg.recompute_attention)  # as the run will train (not per block: 2 layers)
    x = torch.randint(0, cfg.vocab_size, (train_cfg.batch_size, cfg.block_size), device=device)
    timings: dict[str, float] = {}

    def fastest(candidates: dict[str, tuple[str, str, int]]) -> str:
        """The candidate whose quickest round is quickest; rounds interleave them so a burst of load hits all."""
        best = dict.fromkeys(candidates, float("inf"))
        for round_ in range(PROBE_ROUNDS + 1):  # round 0 warms up (and compiles the compiled kernel)
            for name, setting in candidates.items():
                took = _step_seconds(model, x, device, *setting)
                if round_:
                    best[name] = min(best[name], took)
            if round_ == 0 and getattr(ATTENTION_KERNELS.get("compiled"), "failed", False):
                for name in [n for n, setting in candidates.items() if setting[0] == "compiled"]:
                    candidates.pop(name)  # no C compiler: it ran eagerly, so it isn't a candidate
        threads_now = torch.get_num_threads()
        for name, (kernel, dtype, threads) in candidates.items():
            # The threads probe times the chosen kernel and dtype again: keep the fastest round of both, as everywhere
            # here, rather than letting the later probe overwrite the number the kernel was chosen on.
            key = f"{kernel}/{dtype}/{threads or threads_now} threads"
            timings[key] = round(min(best[name], timings.get(key, best[name])), 5)
        return min(candidates, key=best.__getitem__)

    kernels = [tuning.kernel]
    if "kernel" in wanted:
        kernels = [k for k in ATTENTION_KERNELS if k != "compiled" or device.type == "cpu" or cfg.dropout]
    dtypes = ("float32", "bfloat16") if "dtype" in wanted else (tuning.dtype,)
    if len(kernels) * len(dtypes) > 1:
        # Every kernel in every dtype, not the kernel first: on a Zen 4 the fastest kernel in float32 (sdpa) was the
        # slowest in bf16, where the math kernel won by 1.5x (docs/performance.md).
        choice = fastest({f"{k}/{d}": (k, d, tuning.threads) for k in kernels for d in dtypes})
        tuning.kernel, tuning.dtype = choice.split("/")
    if "threads" in wanted and device.type == "cpu":
        counts = sorted({1, max(1, (os.cpu_count() or 1) // 2), os.cpu_count() or 1})
        tuning.threads = int(fastest({str(n): (tuning.kernel, tuning.dtype, n) for n in counts}))
    load = [round(load_before, 2), round(_load(reading), 2)]
    return dataclasses.replace(
        tuning,
        timings=timings,
        load=load,
        loaded=any(_busy(x) for x in load),
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        probe_seconds=round(time.perf_counter() - start, 1),
    )


def _step_seconds(model: GPT, x: torch.Tensor, device: torch.device, kernel: str, dtype: str, threads: int) -> float:
    """Wall seconds of one forward and backward of the probe model with these settings (threads 0: as they are)."""
    apply_kernel(model, Tuning(kernel=kernel))
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            _, loss = model(x, x)
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t
    finally:
        torch.set_num_threads(before)


def _describe(t: Tuning, wanted: list[str]) -> str:
    threads = f"{t.threads} thread{'s' * (t.threads != 1)}"
    parts = {"kernel": f"attention kernel {t.kernel}", "dtype": f"dtype {t.dtype}", "threads": threads}
    return ", ".join(parts[w] for w in wanted)


def cache_file() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "bricklm") / "tuning.json"


def _read_cache() -> dict:
    try:
        data = json.loads(cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
