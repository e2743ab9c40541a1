"""1 process with batch 2B against 2 DDP processes (gloo, CPU) with batch B each: speed and loss agreement.

    nice -n 19 python benchmarks/ddp_cpu.py                         # writes benchmarks/results/ddp_cpu.json
    python benchmarks/ddp_cpu.py --steps 100 --batch-size 16 --threads 1

Both runs see the same windows (see src/bricklm/distributed.py), so their loss trajectories
should agree to float rounding; the figure to watch is tokens/s. Each process gets --threads
PyTorch threads, so 2 processes use twice the cores of 1: on a machine with 2 free cores,
compare them with --threads 1 (and 1 process with --threads 2 for the fair single-process
figure, recorded as "single_2threads"). The machine's load average is recorded beside the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path("/work/shared/data/tinyshakespeare.txt")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(cmd_prefix, data, out, batch, args, threads) -> dict:
    flags = [
        "--data", str(data), "--out", str(out), "--batch-size", str(batch), "--max-iters", str(args.steps),
        "--eval-interval", str(args.steps), "--eval-iters", "4", "--n-layer", "2", "--n-head", "4",
        "--n-embd", "64", "--block-size", "64", "--dropout", "0", "--device", "cpu", "--sample-chars", "0",
        "--loss-levels=", "--threads", str(threads),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = str(threads)
    t0 = time.perf_counter()
    subprocess.run([*cmd_prefix, "train", *flags], check=True, env=env, capture_output=True)
    wall = time.perf_counter() - t0
    summary = json.loads((out / "summary.json").read_text())
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {
        "tokens_per_s": round(summary["tokens_per_s"]),
        "training_time_s": summary["training_time_s"],
        "wall_s_with_startup": round(wall, 1),
        "losses": [m["loss"] for m in metrics if "loss" in m],
        "final_val_loss": summary["val_loss"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=16, help="per process for DDP; 1 process uses twice this")
    p.add_argument("--threads", type=int, default=1, help="PyTorch threads per process")
    p.add_argument("--repeats", type=int, default=3, help="runs of each, interleaved; the median is reported")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/ddp_cpu.json"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "corpus"
        src = CORPUS if CORPUS.is_file() else None
        if src is None:  # no shared data: a generated text, so the script still runs anywhere
            src = tmp / "text.txt"
            src.write_text("The quick brown fox jumps over the lazy dog.\n" * 20000)
        subprocess.run([sys.executable, "-m", "bricklm", "prepare", str(src), "--out", str(data)], check=True,
                       capture_output=True)  # fmt: skip
        load_before = os.getloadavg()
        runs = {"single": [], "single_2threads": [], "ddp_2_processes": []}
        for i in range(args.repeats):  # interleaved, so a change in the machine's load hits all three
            one = [sys.executable, "-m", "bricklm"]
            runs["single"].append(train(one, data, tmp / f"single{i}", 2 * args.batch_size, args, args.threads))
            runs["single_2threads"].append(
                train(one, data, tmp / f"single2-{i}", 2 * args.batch_size, args, 2 * args.threads)
            )
            torchrun = ["torchrun", "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={free_port()}",
                        "-m", "bricklm"]  # fmt: skip
            runs["ddp_2_processes"].append(train(torchrun, data, tmp / f"ddp{i}", args.batch_size, args, args.threads))
        load_after = os.getloadavg()
        single, ddp = runs["single"][0], runs["ddp_2_processes"][0]
    diffs = [abs(a - b) for a, b in zip(single["losses"], ddp["losses"], strict=True)]
    result = {
        "command": "python benchmarks/ddp_cpu.py " + " ".join(sys.argv[1:]),
        "corpus": str(CORPUS) if CORPUS.is_file() else "generated",
        "model": "2 layers, 4 heads, n_embd 64, block 64",
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
                "final_val_loss": rs[0]["final_val_loss"],
            }
            for name, rs in runs.items()
        },
        "max_abs_loss_difference": max(diffs),
        "loss_at_steps": {
            str(i + 1): [round(single["losses"][i], 5), round(ddp["losses"][i], 5)]
            for i in sorted({0, len(diffs) // 2, len(diffs) - 1})
        },
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
