"""1 process with batch 2B against 2 DDP processes (gloo, CPU) with batch B each: speed and loss agreement.

    nice -n 19 python benchmarks/ddp_cpu.py                         # writes benchmarks/results/ddp_cpu.json
    python benchmarks/ddp_cpu.py --steps 100 --batch-size 16 --threads 1

Both runs see the same windows (see src/bricklm/training/distributed.py), so their loss trajectories
should agree to float rounding; the figure to watch is tokens/s. Each process gets --threads
PyTorch threads, so 2 processes use twice the cores of 1: on a machine with 2 free cores,
compare them with --threads 1 (and 1 process with --threads 2 for the fair single-process
figure, recorded as "single_2threads"). The machine's load average is recorded beside the numbers.
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
from pathlib import Path

from procbench import ONE_PROCESS, ROOT, header, prepare_corpus, speed, train, write


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
        data = prepare_corpus(tmp)
        load_before = os.getloadavg()
        runs = {"single": [], "single_2threads": [], "ddp_2_processes": []}

        def run(prefix, name, batch, threads):
            return train(prefix, data, tmp / name, batch, steps=args.steps, eval_interval=args.steps, threads=threads)

        for i in range(args.repeats):  # interleaved, so a change in the machine's load hits all three
            runs["single"].append(run(ONE_PROCESS, f"single{i}", 2 * args.batch_size, args.threads))
            runs["single_2threads"].append(run(ONE_PROCESS, f"single2-{i}", 2 * args.batch_size, 2 * args.threads))
            torchrun = [
                "torchrun",
                "--nproc_per_node=2",
                "--master_addr=127.0.0.1",
                f"--master_port={free_port()}",
                "-m",
                "bricklm",
            ]
            runs["ddp_2_processes"].append(run(torchrun, f"ddp{i}", args.batch_size, args.threads))
        load_after = os.getloadavg()
    single, ddp = runs["single"][0], runs["ddp_2_processes"][0]
    diffs = [abs(a - b) for a, b in zip(single["losses"], ddp["losses"], strict=True)]
    result = {
        **header("ddp_cpu.py", args, load_before, load_after),
        **{name: {**speed(rs), "final_val_loss": rs[0]["final_val_loss"]} for name, rs in runs.items()},
        "max_abs_loss_difference": max(diffs),
        "loss_at_steps": {
            str(i + 1): [round(single["losses"][i], 5), round(ddp["losses"][i], 5)]
            for i in sorted({0, len(diffs) // 2, len(diffs) - 1})
        },
    }
    write(result, args.out)


if __name__ == "__main__":
    main()
