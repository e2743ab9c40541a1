"""Shared pieces of the 1-process vs N-process benchmarks (ddp_cpu.py, fsdp_cpu.py).

Each benchmark trains the same small model through the real command line (`python -m bricklm`
or `torchrun ... -m bricklm`), one subprocess per run, and records speed and loss agreement.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, machine, shared_data

ROOT = REPO  # the scripts that use this write their results under ROOT/benchmarks/results
CORPUS = shared_data("tinyshakespeare.txt")
MODEL = ["--n-layer", "2", "--n-head", "4", "--n-embd", "64", "--block-size", "64"]
ONE_PROCESS = [sys.executable, "-m", "bricklm"]


def prepare_corpus(tmp: Path) -> Path:
    """tinyshakespeare when the shared data is there, else a generated text, so the scripts run anywhere."""
    src = CORPUS
    if not CORPUS.is_file():
        src = tmp / "text.txt"
        src.write_text("The quick brown fox jumps over the lazy dog.\n" * 20000)
    data = tmp / "corpus"
    subprocess.run([*ONE_PROCESS, "prepare", str(src), "--out", str(data)], check=True, capture_output=True)
    return data


def train(prefix, data, out, batch, *, steps, eval_interval, threads, extra=()) -> dict:
    """One training run in a subprocess; its speed and every logged loss."""
    flags = [
        "--data",
        str(data),
        "--out",
        str(out),
        "--batch-size",
        str(batch),
        "--max-iters",
        str(steps),
        "--eval-interval",
        str(eval_interval),
        "--eval-iters",
        "4",
        *MODEL,
        "--dropout",
        "0",
        "--device",
        "cpu",
        "--sample-chars",
        "0",
        "--loss-levels=",
        "--threads",
        str(threads),
        *extra,
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = str(threads)
    t0 = time.perf_counter()
    subprocess.run([*prefix, "train", *flags], check=True, env=env, capture_output=True)
    wall = time.perf_counter() - t0
    summary = json.loads((out / "summary.json").read_text())
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {
        "tokens_per_s": round(summary["tokens_per_s"]),
        "training_time_s": summary["training_time_s"],
        "wall_s": round(wall, 1),  # start-up, evaluations and checkpoint saves included
        "losses": [m["loss"] for m in metrics if "loss" in m],
        "val_losses": [m["val_loss"] for m in metrics if m.get("eval")],
        "final_val_loss": summary["val_loss"],
    }


def header(script: str, args, load_before, load_after) -> dict:
    """What every result file records about the run and the machine."""
    return {
        "command": f"python benchmarks/{script} " + " ".join(sys.argv[1:]),
        "corpus": str(CORPUS) if CORPUS.is_file() else "generated",
        "model": " ".join(MODEL),
        "steps": args.steps,
        "global_batch": 2 * args.batch_size,
        "threads_per_process": args.threads,
        "machine": machine(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
    }


def speed(runs: list[dict]) -> dict:
    return {
        "tokens_per_s_median": statistics.median(r["tokens_per_s"] for r in runs),
        "tokens_per_s_all": [r["tokens_per_s"] for r in runs],
    }


def write(result: dict, out: str) -> None:
    result["date"] = time.strftime("%Y-%m-%d %H:%M")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
