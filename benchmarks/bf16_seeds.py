"""Is bf16 autocast safe as a default? The README's default model, 3 seeds in float32 and 3 in bf16.

    nice -n 19 python benchmarks/bf16_seeds.py                 # writes benchmarks/results/bf16_seeds.json
    python benchmarks/bf16_seeds.py --steps 200 --seeds 1,2    # a quicker look
    python benchmarks/bf16_seeds.py --seeds 1339 --dtypes bfloat16 --out part.json   # one part of it
    python benchmarks/bf16_seeds.py --merge part1.json part2.json ...                 # the parts, one verdict

Trains the model `bricklm train` builds with no flags (4 x 128, block 128, batch 32, the default
schedule) on the built-in corpus, prepared once, for --steps steps with an evaluation every
--eval-interval, once per seed and dtype, alternating float32 and bfloat16 so that load on a shared
machine falls on both alike. The kernel is pinned (sdpa) and threads too (--threads, 1 by default), so
only the dtype differs. Recorded per run: the val loss curve, the final train and val loss, CPU seconds
per step (time.process_time, steadier than wall time under load) and wall seconds per step.

The verdict: whether bf16's mean final val loss lies within float32's seed spread (float32's min - max
across seeds, widened to mean ± 2 sample standard deviations when that is wider), the evaluations at
which bf16's mean leaves float32's spread at that step, and bf16's CPU time per step against float32's.
Losses do not depend on load; the times do.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bricklm.config import ModelConfig, PrepareConfig, TrainConfig
from bricklm.files import atomic_write_json
from bricklm.storage.metrics import read_metrics
from bricklm.text.prepare import prepare
from bricklm.training.trainer import Trainer
from common import REPO, machine


def quiet(*args, **kwargs) -> None:
    pass


def one_run(corpus: Path, dtype: str, seed: int, args, run_dir: Path) -> dict:
    model_cfg = ModelConfig(attention="sdpa")
    train_cfg = TrainConfig(
        max_iters=args.steps,
        eval_interval=args.eval_interval,
        seed=seed,
        dtype=dtype,
        threads=args.threads,
        sample_chars=0,
        eval_samples=False,
        device="cpu",
        copy_index=False,
    )
    cpu, wall = time.process_time(), time.perf_counter()
    Trainer(model_cfg, train_cfg, corpus, run_dir, log=quiet, progress=False).run()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    evals = [m for m in read_metrics(run_dir) if m.get("eval")]
    return {
        "dtype": dtype,
        "seed": seed,
        "val_curve": [[m["step"], round(m["val_loss"], 4)] for m in evals],
        "final_train_loss": round(evals[-1]["train_loss"], 4),
        "final_val_loss": round(evals[-1]["val_loss"], 4),
        "cpu_s_per_step": round(cpu / args.steps, 4),
        "wall_s_per_step": round(wall / args.steps, 4),
    }


def spread(values: list[float]) -> tuple[float, float]:
    """float32's seed spread: its min - max across seeds, widened to mean ± 2 sample standard deviations if wider."""
    mean, sd = statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0
    return min(min(values), mean - 2 * sd), max(max(values), mean + 2 * sd)


def verdict(runs: list[dict]) -> dict:
    by = {d: [r for r in runs if r["dtype"] == d] for d in ("float32", "bfloat16")}
    final = {d: [r["final_val_loss"] for r in rs] for d, rs in by.items()}
    low, high = spread(final["float32"])
    outside = []  # evaluation steps where bf16's mean val loss leaves float32's spread
    for i, (step, _) in enumerate(by["float32"][0]["val_curve"]):
        lo, hi = spread([r["val_curve"][i][1] for r in by["float32"]])
        bf16 = statistics.mean(r["val_curve"][i][1] for r in by["bfloat16"])
        if not lo <= bf16 <= hi:
            outside.append([step, round(bf16, 4), [round(lo, 4), round(hi, 4)]])
    cpu = {d: statistics.mean(r["cpu_s_per_step"] for r in rs) for d, rs in by.items()}
    return {
        **{
            f"{d}_final_val": {
                "mean": round(statistics.mean(v), 4),
                "sd": round(statistics.stdev(v) if len(v) > 1 else 0.0, 4),
                "values": v,
            }
            for d, v in final.items()
        },
        "float32_spread": [round(low, 4), round(high, 4)],
        "bf16_within_spread": low <= statistics.mean(final["bfloat16"]) <= high,
        "bf16_curve_points_outside_spread": outside,
        "bf16_cpu_time_ratio": round(cpu["bfloat16"] / cpu["float32"], 3),  # < 1: bf16 faster
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=600, help="steps per run (the default recipe's max_iters)")
    p.add_argument("--eval-interval", type=int, default=100)
    p.add_argument("--seeds", default="1337,1338,1339", help="comma-separated")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--dtypes", default="float32,bfloat16", help="comma-separated; one alone for a run split over processes"
    )
    p.add_argument("--out", default=str(REPO / "benchmarks/results/bf16_seeds.json"))
    p.add_argument(
        "--merge", nargs="+", metavar="PART.json", help="combine parts (their runs) into --out, with the verdict"
    )
    args = p.parse_args()
    if args.merge:
        parts = [json.loads(Path(f).read_text()) for f in args.merge]
        record = {"parts": [{k: v for k, v in part.items() if k != "runs"} for part in parts]}
        record["runs"] = sorted((r for part in parts for r in part["runs"]), key=lambda r: (r["seed"], r["dtype"]))
        record["verdict"] = verdict(record["runs"])
        print(json.dumps(record["verdict"], indent=1))
        atomic_write_json(Path(args.out), record)
        return
    seeds = [int(s) for s in args.seeds.split(",")]
    flags = f"--steps {args.steps} --eval-interval {args.eval_interval} --seeds {args.seeds} --threads {args.threads}"
    flags += f" --dtypes {args.dtypes}" if args.dtypes != "float32,bfloat16" else ""
    record = {"command": f"python benchmarks/bf16_seeds.py {flags}", "machine_before": machine(), "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        prepare([], corpus, PrepareConfig(), builtin="python-docs", log=quiet)
        for seed in seeds:
            for dtype in args.dtypes.split(","):
                run = one_run(corpus, dtype, seed, args, Path(tmp) / f"{dtype}-{seed}")
                record["runs"].append(run)
                print(json.dumps(run), flush=True)
    record["machine_after"] = machine()
    if {r["dtype"] for r in record["runs"]} == {"float32", "bfloat16"}:
        record["verdict"] = verdict(record["runs"])
        print(json.dumps(record["verdict"], indent=1))
    atomic_write_json(Path(args.out), record)


if __name__ == "__main__":
    main()
