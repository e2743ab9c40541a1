"""1 process with batch 2B against 2 DDP and 2 FSDP (--fsdp) processes (gloo, CPU) with batch B each.

    nice -n 19 python benchmarks/fsdp_cpu.py                     # writes benchmarks/results/fsdp_cpu.json
    python benchmarks/fsdp_cpu.py --steps 100 --batch-size 16 --threads 1

All three see the same windows (src/bricklm/training/distributed.py), so their loss trajectories should agree
to float rounding. FSDP gathers each block's weights before its forward and backward and
reduce-scatters gradients, so it sends more than DDP's one all-reduce per step; on a model this
small that is pure overhead: FSDP is for models whose weights and AdamW state don't fit one device,
and the figure to read here is the cost of the switch, not a speedup. Per run it also records the
wall time of the checkpoint saves (every --steps / 3 steps, full weights gathered to rank 0).
The machine's load average is recorded beside the numbers.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from procbench import ONE_PROCESS, ROOT, header, prepare_corpus, speed, train, write


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=16, help="per process; 1 process uses twice this")
    p.add_argument("--threads", type=int, default=1, help="PyTorch threads per process")
    p.add_argument("--repeats", type=int, default=3, help="runs of each, interleaved; the median is reported")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/fsdp_cpu.json"))
    args = p.parse_args()
    two = ["torchrun", "--standalone", "--nproc_per_node=2", "-m", "bricklm"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = prepare_corpus(tmp)
        load_before = os.getloadavg()
        runs = {"single": [], "ddp_2_processes": [], "fsdp_2_processes": []}

        def run(prefix, name, batch, extra=()):
            return train(
                prefix,
                data,
                tmp / name,
                batch,
                steps=args.steps,
                eval_interval=max(1, args.steps // 3),
                threads=args.threads,
                extra=extra,
            )

        for i in range(args.repeats):  # interleaved, so a change in the machine's load hits all three
            runs["single"].append(run(ONE_PROCESS, f"single{i}", 2 * args.batch_size))
            runs["ddp_2_processes"].append(run(two, f"ddp{i}", args.batch_size))
            runs["fsdp_2_processes"].append(run(two, f"fsdp{i}", args.batch_size, ["--fsdp"]))
        load_after = os.getloadavg()
    ref = runs["single"][0]

    def max_diff(r: dict) -> float:
        pairs = [*zip(ref["losses"], r["losses"], strict=True), *zip(ref["val_losses"], r["val_losses"], strict=True)]
        return max(abs(a - b) for a, b in pairs)

    result = {
        **header("fsdp_cpu.py", args, load_before, load_after),
        **{
            name: {
                **speed(rs),
                "wall_s_all": [r["wall_s"] for r in rs],
                "final_val_loss": rs[0]["val_losses"][-1],
                "max_abs_loss_difference_from_single": max_diff(rs[0]),
            }
            for name, rs in runs.items()
        },
    }
    write(result, args.out)


if __name__ == "__main__":
    main()
