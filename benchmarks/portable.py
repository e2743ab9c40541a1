"""What portability costs: a record recipe and its exportable variants, same seeds, same step count, side by side.

    python benchmarks/portable.py configs/speedrun-cpu.toml --steps 565 --seeds 3          # the 60-second track
    python benchmarks/portable.py configs/best-10min-cpu.toml --steps 1090 --seeds 3       # the 10-minute track

Variants, each the recipe with two switches set (docs/export.md says where each one runs):
  relu2    QK-norm + ReLU², the records' blocks until 2026-12-06: no stock architecture holds them
  arcee    no QK-norm, ReLU²: Arcee in transformers and llama.cpp (Llama with an ungated ReLU² feed-forward)
  qwen3    QK-norm + SwiGLU: Qwen3 in transformers and llama.cpp (per-head q/k RMSNorm, gated SiLU)

The recipes follow wall time (schedule_by_time), which depends on whatever else runs on the cores; here
each run instead follows a fixed number of steps (--steps: what the recipe reaches in its budget on a
quiet machine, docs/records.md), so the losses do not depend on load. Each run is
`python -m bricklm train` in its own subprocess with --threads 1, through records.py's one_run; the
figure is whole-split val loss at the last step, and CPU seconds per step (the child's user + system
time over its steps, evaluations included) says what each variant costs in speed. Seeds are
interleaved (seed 1 of every variant, then seed 2, ...), so a change in load hits all variants alike.
Results are appended to benchmarks/results/portable.jsonl.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine, need, shared_data  # noqa: E402  (benchmarks/ is not a package)
from records import one_run  # noqa: E402

VARIANTS = {
    "relu2": ["qk_norm=true", "activation=relu2"],  # the records' blocks until 2026-12-06: no stock architecture
    "arcee": ["qk_norm=false", "activation=relu2"],
    "qwen3": ["qk_norm=true", "activation=swiglu"],
}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipe", type=Path)
    p.add_argument("--steps", type=int, required=True, help="fixed step count (the recipe's steps in its budget)")
    p.add_argument("--seeds", type=int, default=3, help="seeds FIRST, FIRST + 1, ...")
    p.add_argument(
        "--first-seed", type=int, default=1337, help="FIRST (run seeds in parallel processes on a busy machine)"
    )
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, from: " + ", ".join(VARIANTS))
    p.add_argument("--corpus", type=Path, default=shared_data("bdunagan.com.txt"))
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "portable.jsonl")
    args = p.parse_args()
    need(args.corpus)
    names = args.variants.split(",")
    fixed = [
        "schedule_by_time=false",
        f"max_iters={args.steps}",
        "max_seconds=0",
        f"eval_interval={args.steps}",
        "threads=1",
    ]
    before = machine()
    runs: dict[str, list[dict]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="bricklm-portable-") as tmp:
        corpus = Path(tmp) / "corpus"
        subprocess.run(
            [sys.executable, "-m", "bricklm", "prepare", str(args.corpus), "--split", "tail", "--out", str(corpus)],
            check=True,
            capture_output=True,
        )
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for name in names:
                cpu = children_cpu()
                run = one_run(args.recipe, corpus, Path(tmp) / f"{name}-{seed}", seed, fixed + VARIANTS[name])
                run["cpu_s_per_step"] = round((children_cpu() - cpu) / args.steps, 4)
                runs[name].append(run)
                print(name, json.dumps(run), flush=True)
    rows = []
    for name in names:
        vals = [r["val_loss"] for r in runs[name] if "val_loss" in r]
        cpu = [r["cpu_s_per_step"] for r in runs[name] if "val_loss" in r]
        rows.append(
            {
                "variant": name,
                "set": VARIANTS[name],
                "val_mean": round(statistics.mean(vals), 4) if vals else None,
                "val_std": round(statistics.stdev(vals), 4) if len(vals) > 1 else None,
                "cpu_s_per_step": round(statistics.mean(cpu), 4) if cpu else None,
                "runs": runs[name],
            }
        )
        print(f"{name}: val {rows[-1]['val_mean']} ± {rows[-1]['val_std']}, {rows[-1]['cpu_s_per_step']} CPU s/step")
    record = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "recipe": str(args.recipe),
        "steps": args.steps,
        "fixed": fixed,
        "corpus": args.corpus.name,
        "machine": before,
        "load_avg_after": list(machine()["load_avg"]),
        "variants": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
