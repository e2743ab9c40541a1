"""What every benchmark shares: where the shared corpora are, and a record of the machine it ran on.

    p.add_argument("--corpus", type=Path, default=shared_data("bdunagan.com.txt"), help=...)
    corpus = need(args.corpus)                 # exits with one clear line if it isn't there
    record = {"machine": machine(), ...}       # CPU model and flags, cores, torch, load average

The corpora the brief provides live in ../shared/data beside the repository (never committed);
every script takes its corpus as an argument with that as the default, so it runs anywhere.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_data(name: str) -> Path:
    """../shared/data/NAME relative to the repository (it may not exist on this machine)."""
    return SHARED_DATA / name


def need(path: Path) -> Path:
    """path, or exit with one line saying it is missing and how to give another."""
    if not Path(path).exists():
        sys.exit(f"{Path(sys.argv[0]).name}: corpus {path} not found; pass one with --corpus PATH")
    return Path(path)


def machine() -> dict:
    """The machine as a record: CPU model and the flags that matter here, cores, torch, load average now."""
    import torch

    info = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return info
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Model name":
            info["cpu"] = value.strip()
        if key.strip() == "Flags":
            flags = value.split()
            for flag in ("avx2", "avx512f", "avx512_bf16", "amx_bf16"):
                info[flag] = flag in flags
    return info


def prepare_tail(src: Path, out: Path) -> Path:
    """`bricklm prepare SRC --split tail --out OUT` as a user runs it (the records' and recipes' corpus)."""
    cmd = [sys.executable, "-m", "bricklm", "prepare", str(src), "--split", "tail", "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True)
    return out
