"""The blog's processor table: the same model for N iterations on every device PyTorch can see.

    rows = bench_devices(model_cfg, train_cfg, "corpus/", iters=100, devices=None)
    print(bench_table(rows))

Absent devices are listed as unavailable, never estimated.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path
from typing import Any

from bricklm.training.hardware import device_list, device_name
from bricklm.training.trainer import Trainer


def bench_devices(model_cfg, train_cfg, data, iters: int, devices: list[str] | None, log=print) -> list[dict]:
    """Train the same model for `iters` steps on each device; unavailable devices are listed, not run."""
    rows = []
    for device, why_not in device_list():
        if devices and device not in devices:
            continue
        if why_not:
            rows.append({"device": device, "status": why_not})
            continue
        t = dataclasses.replace(
            train_cfg,
            device=device,
            max_iters=iters,
            eval_interval=max(iters, 1),
            eval_iters=1,
            sample_chars=0,
            loss_levels="",
            early_stop=0,
        )
        with tempfile.TemporaryDirectory(prefix="bricklm-bench-") as tmp:
            log(f"{device}: training {iters} steps")
            result = Trainer(dataclasses.replace(model_cfg), t, data, Path(tmp) / "run", log=lambda *a: None).run()
        rows.append(
            {
                "device": device,
                "status": "ok",
                "name": device_name(device),
                "parameters": result["parameters"],
                "iterations": iters,
                "training_time_s": result["training_time_s"],
                "tokens_per_s": result["tokens_per_s"],
                "final_train_loss": result["train_loss"],
            }
        )
    cpu = next((r for r in rows if r["device"] == "cpu" and r["status"] == "ok"), None)
    for r in rows:
        if r["status"] == "ok" and cpu:
            # Every device ran the same steps of the same batches, so the time ratio is the tokens/s ratio; the
            # latter is not rounded (training_time_s is, to 0.01 s: a few tiny steps on the CPU round to 0).
            r["speedup_vs_cpu"] = r["tokens_per_s"] / cpu["tokens_per_s"] if cpu["tokens_per_s"] else math.nan
    return rows


def bench_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| Device | Name | Training time (s) | Tokens/s | Speed-up vs CPU |", "|---|---|---:|---:|---:|"]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['device']} | {r['status']} | – | – | – |")
            continue
        speed = f"{r['speedup_vs_cpu']:.1f}×" if "speedup_vs_cpu" in r else "–"
        lines.append(
            f"| {r['device']} | {r['name']} | {r['training_time_s']:.1f} | {r['tokens_per_s']:,.0f} | {speed} |"
        )
    return "\n".join(lines)
