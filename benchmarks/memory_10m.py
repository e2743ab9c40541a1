"""Peak memory and speed of the blog's 10M model as a user runs it: `bricklm train` on its recipe, one process each.

    PYTHONPATH=src python benchmarks/memory_10m.py                    # writes benchmarks/results/memory_10m.json
    PYTHONPATH=src python benchmarks/memory_10m.py --steps 6 --variants recipe,recompute-attention

Trains configs/seed/headline-10m.toml (52 x 128, batch 32, block 128, dropout 0.1) on the blog's corpus
(../shared/data/bdunagan.com.txt, prepared once with --split tail) for --steps steps and one evaluation at the
end, once per variant of the settings that trade memory for time, in a fresh `bricklm train` process each so
that its peak resident set (os.wait4's ru_maxrss: what the kernel counted, the evaluation included) is its own.
Speed is the run's own tokens per second (summary.json), steps and evaluation together; the tuning probe
(attention = auto) is excluded, and so is start-up. Variants run twice, interleaved, and the faster
of the two counts, so a burst of load falls on all of them alike; the peak is the larger. Peak memory does not
depend on load; speed does, so check `uptime` around a run. The *-tcmalloc variants preload tcmalloc
(LD_PRELOAD; Debian's libtcmalloc-minimal4) in place of glibc's malloc, whose heap keeps freed blocks and grows
from step to step with PyTorch's pattern of allocations.
"""

from __future__ import annotations

import argparse
import ctypes.util
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
BF16 = AUTO + ["--dtype", "auto"]  # the defaults without the recipe's float32 pin (bf16 where it measures faster)
TCMALLOC = "tcmalloc_minimal"  # Debian's libtcmalloc-minimal4: an allocator that hands freed memory back
VARIANTS = {  # name: (flags on top of the recipe, allocator library to preload or None, what it is)
    "recipe": ([], None, "the recipe as it is: nn.MultiheadAttention, float32"),
    "auto": (AUTO, None, "attention = auto (the default), float32 as the recipe pins it"),
    "recompute-attention": (AUTO + ["--recompute-attention"], None, "the same, --recompute-attention"),
    "recompute-activations": (AUTO + ["--recompute-activations"], None, "the same, every block recomputed"),
    "auto-bf16": (BF16, None, "attention and dtype auto: the defaults"),
    "recompute-attention-bf16": (BF16 + ["--recompute-attention"], None, "the defaults, --recompute-attention"),
    "auto-tcmalloc": (AUTO, TCMALLOC, "attention = auto, float32, LD_PRELOAD tcmalloc"),
    "auto-bf16-tcmalloc": (BF16, TCMALLOC, "the defaults, LD_PRELOAD tcmalloc"),
    "recompute-attention-bf16-tcmalloc": (
        BF16 + ["--recompute-attention"],
        TCMALLOC,
        "the defaults, --recompute-attention, LD_PRELOAD tcmalloc",
    ),
}


def preload(library: str | None) -> dict:
    """The environment for a run with `library` preloaded as the allocator; SystemExit if it isn't installed."""
    if library is None:
        return dict(os.environ)
    found = ctypes.util.find_library(library)
    if found is None:
        raise SystemExit(
            f"lib{library} not found (Debian: apt-get install libtcmalloc-minimal4); leave out its variants"
        )
    return {**os.environ, "LD_PRELOAD": found}


def run_once(corpus: Path, out: Path, variant: tuple, steps: int, eval_iters: int) -> dict:
    """One `bricklm train` process: its peak RSS (MB) and the run's tokens per second."""
    cmd = [sys.executable, "-m", "bricklm", "train", "--config", str(RECIPE), "--data", str(corpus), "--out", str(out)]
    cmd += ["--max-iters", str(steps), "--eval-interval", str(steps), "--eval-iters", str(eval_iters)]
    flags, library, _ = variant
    cmd += ["--sample-chars", "0", *flags]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=preload(library))
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
                row = run_once(corpus, Path(tmp) / f"{name}-{repeat}", VARIANTS[name], args.steps, args.eval_iters)
                results[name].append(row)
                print(f"{name} (run {repeat + 1}): {row}", file=sys.stderr)
    rows = []
    for name in names:
        runs = results[name]
        best = max(runs, key=lambda r: r["tokens_per_s"])
        rows.append(
            {"variant": name, "what": VARIANTS[name][2], **best, "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}
            | {
                "peak_rss_runs": [r["peak_rss_mb"] for r in runs],
                "tokens_per_s_runs": [r["tokens_per_s"] for r in runs],
            }
        )
    base = next((r for r in rows if r["variant"] == "auto-bf16"), rows[0])  # the defaults, where measured
    for r in rows:
        r["speed_vs_" + base["variant"]] = round(r["tokens_per_s"] / base["tokens_per_s"], 3)
    record = {"command": " ".join(["python benchmarks/memory_10m.py", *sys.argv[1:]]), **machine(), "steps": args.steps}
    atomic_write_json(args.out, {**record, "rows": rows})
    for r in rows:
        print(f"{r['variant']:26s} {r['peak_rss_mb']:6,d} MB  {r['tokens_per_s']:8,.0f} tok/s  {r['tuned']}")


if __name__ == "__main__":
    main()
