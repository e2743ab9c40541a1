"""Peak memory and speed of the blog's 10M model as a user runs it: `bricklm train` on its recipe, one process each.

    PYTHONPATH=src python benchmarks/memory_10m.py                    # writes benchmarks/results/memory_10m.json
    PYTHONPATH=src python benchmarks/memory_10m.py --steps 6 --variants recipe,recompute-attention

Trains configs/seed/headline-10m.toml (52 x 128, batch 32, block 128, dropout 0.1) on the blog's corpus
(../shared/data/bdunagan.com.txt, prepared once with --split tail) for --steps steps and one evaluation at the
end, once per variant of the settings that trade memory for time, in a fresh `bricklm train` process each so
that its peak resident set (os.wait4's ru_maxrss: what the kernel counted, the evaluation included) is its own.
Speed is the run's own tokens per second (summary.json), steps and evaluation together; the tuning probe
(attention = auto) is excluded, and so is start-up. Variants run twice, interleaved, and the faster
of the two counts, so a burst of load falls on all of them alike. Peak memory does not depend on load;
speed does, so check `uptime` around a run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bricklm.files import atomic_write_json
from common import REPO, machine, need, prepare_tail, shared_data

RECIPE = REPO / "configs/seed/headline-10m.toml"
AUTO = ["--attention", "auto"]  # the recipe pins nn.MultiheadAttention, the blog's module
VARIANTS = {  # name: (flags on top of the recipe, what it is)
    "recipe": ([], "the recipe as it is: nn.MultiheadAttention, float32"),
    "auto": (AUTO, "attention = auto (the default), float32 as the recipe pins it"),
    "recompute-attention": (AUTO + ["--recompute-attention"], "attention = auto, --recompute-attention"),
    "auto-bf16": (AUTO + ["--dtype", "auto"], "attention and dtype auto (the defaults without the recipe's pin)"),
    "recompute-attention-bf16": (
        AUTO + ["--dtype", "auto", "--recompute-attention"],
        "the same, recomputing attention",
    ),
    "recompute-activations": (AUTO + ["--recompute-activations"], "attention = auto, every block recomputed"),
}


def run_once(corpus: Path, out: Path, flags: list[str], steps: int, eval_iters: int) -> dict:
    """One `bricklm train` process: its peak RSS (MB) and the run's tokens per second."""
    cmd = [sys.executable, "-m", "bricklm", "train", "--config", str(RECIPE), "--data", str(corpus), "--out", str(out)]
    cmd += ["--max-iters", str(steps), "--eval-interval", str(steps), "--eval-iters", str(eval_iters)]
    cmd += ["--sample-chars", "0", *flags]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{output[-2000:]}")
    summary = json.loads((out / "summary.json").read_text())
    tuned = [line for line in output.splitlines() if line.startswith("tuned:")]
    return {
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "tokens_per_s": round(summary["tokens_per_s"], 1),
        "val_loss": summary["val_loss"],
        "wall_s": round(time.perf_counter() - started, 1),
        "tuned": tuned[0] if tuned else "",
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=12, help="training steps per run (one evaluation at the end)")
    p.add_argument("--eval-iters", type=int, default=10, help="batches per split in that evaluation")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    p.add_argument("--repeats", type=int, default=2, help="runs per variant, interleaved; the fastest counts")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks/results/memory_10m.json")
    args = p.parse_args()
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant {unknown[0]}; choose from {', '.join(VARIANTS)}")
    with tempfile.TemporaryDirectory(prefix="bricklm-memory-") as tmp:
        corpus = prepare_tail(need(shared_data("bdunagan.com.txt")), Path(tmp) / "corpus")
        results: dict[str, list[dict]] = {n: [] for n in names}
        for repeat in range(args.repeats):
            for name in names:
                row = run_once(corpus, Path(tmp) / f"{name}-{repeat}", VARIANTS[name][0], args.steps, args.eval_iters)
                results[name].append(row)
                print(f"{name} (run {repeat + 1}): {row}", file=sys.stderr)
    rows = []
    for name in names:
        runs = results[name]
        best = max(runs, key=lambda r: r["tokens_per_s"])
        rows.append(
            {"variant": name, "what": VARIANTS[name][1], **best, "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}
        )
    base = next((r for r in rows if r["variant"] == "auto"), rows[0])
    for r in rows:
        r["speed_vs_" + base["variant"]] = round(r["tokens_per_s"] / base["tokens_per_s"], 3)
    record = {"command": " ".join(["python benchmarks/memory_10m.py", *sys.argv[1:]]), **machine(), "steps": args.steps}
    atomic_write_json(args.out, {**record, "rows": rows})
    for r in rows:
        print(f"{r['variant']:26s} {r['peak_rss_mb']:6,d} MB  {r['tokens_per_s']:8,.0f} tok/s  {r['tuned']}")


if __name__ == "__main__":
    main()
