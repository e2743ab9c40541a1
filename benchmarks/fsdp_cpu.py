"""1 process with batch 2B against 2 DDP and 2 FSDP (--fsdp) processes (gloo, CPU) with batch B each.

    nice -n 19 python benchmarks/fsdp_cpu.py                     # writes benchmarks/results/fsdp_cpu.json
    python benchmarks/fsdp_cpu.py --steps 100 --batch-size 16 --threads 1

All three see the same windows (src/bricklm/distributed.py), so their loss trajectories should agree
to float rounding. FSDP gathers each block's weights before its forward and backward and
reduce-scatters gradients, so it sends more than DDP's one all-reduce per step; on a model this
small that is pure overhead: FSDP is for models whose weights and AdamW state don't fit one device,
and the figure to read here is the cost of the switch, not a speedup. Per run it also records the
wall time of the checkpoint saves (every --steps / 3 steps, full weights gathered to rank 0).
The machine's load average is recorded beside the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path("/work/shared/data/tinyshakespeare.txt")
MODEL = ["--n-layer", "2", "--n-head", "4", "--n-embd", "64", "--block-size", "64"]


def train(prefix: list[str], data: Path, out: Path, batch: int, args, extra: list[str]) -> dict:
    flags = [
        "--data", str(data), "--out", str(out), "--batch-size", str(batch), "--max-iters", str(args.steps),
        "--eval-interval", str(max(1, args.steps // 3)), "--eval-iters", "4", *MODEL, "--dropout", "0",
        "--device", "cpu", "--sample-chars", "0", "--loss-levels=", "--threads", str(args.threads), *extra,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = str(args.threads)
    t0 = time.perf_counter()
    subprocess.run([*prefix, "train", *flags], check=True, env=env, capture_output=True)
    wall = time.perf_counter() - t0
    summary = json.loads((out / "summary.json").read_text())
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {
        "tokens_per_s": round(summary["tokens_per_s"]),
        "wall_s_with_startup_evals_and_saves": round(wall, 1),
        "losses": [m["loss"] for m in metrics if "loss" in m],
        "val_losses": [m["val_loss"] for m in metrics if m.get("eval")],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=16, help="per process; 1 process uses twice this")
    p.add_argument("--threads", type=int, default=1, help="PyTorch threads per process")
    p.add_argument("--repeats", type=int, default=3, help="runs of each, interleaved; the median is reported")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/fsdp_cpu.json"))
    args = p.parse_args()
    one = [sys.executable, "-m", "bricklm"]
    two = ["torchrun", "--standalone", "--nproc_per_node=2", "-m", "bricklm"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "corpus"
        src = CORPUS if CORPUS.is_file() else tmp / "text.txt"
        if not CORPUS.is_file():  # no shared data: a generated text, so the script still runs anywhere
            src.write_text("The quick brown fox jumps over the lazy dog.\n" * 20000)
        subprocess.run([*one, "prepare", str(src), "--out", str(data)], check=True, capture_output=True)
        load_before = os.getloadavg()
        runs = {"single": [], "ddp_2_processes": [], "fsdp_2_processes": []}
        for i in range(args.repeats):  # interleaved, so a change in the machine's load hits all three
            runs["single"].append(train(one, data, tmp / f"single{i}", 2 * args.batch_size, args, []))
            runs["ddp_2_processes"].append(train(two, data, tmp / f"ddp{i}", args.batch_size, args, []))
            runs["fsdp_2_processes"].append(train(two, data, tmp / f"fsdp{i}", args.batch_size, args, ["--fsdp"]))
        load_after = os.getloadavg()
    ref = runs["single"][0]

    def max_diff(r: dict) -> float:
        pairs = [*zip(ref["losses"], r["losses"], strict=True), *zip(ref["val_losses"], r["val_losses"], strict=True)]
        return max(abs(a - b) for a, b in pairs)

    result = {
        "command": "python benchmarks/fsdp_cpu.py " + " ".join(sys.argv[1:]),
        "corpus": str(CORPUS) if CORPUS.is_file() else "generated",
        "model": " ".join(MODEL),
        "steps": args.steps,
        "global_batch": 2 * args.batch_size,
        "threads_per_process": args.threads,
        "cpu_count": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        **{
            name: {
                "tokens_per_s_median": statistics.median(r["tokens_per_s"] for r in rs),
                "tokens_per_s_all": [r["tokens_per_s"] for r in rs],
                "wall_s_all": [r["wall_s_with_startup_evals_and_saves"] for r in rs],
                "final_val_loss": rs[0]["val_losses"][-1],
                "max_abs_loss_difference_from_single": max_diff(rs[0]),
            }
            for name, rs in runs.items()
        },
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
