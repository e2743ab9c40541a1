"""How an ablation's (or sweep's) ranking changes with training: mean ± std val loss per variant at chosen steps.

Reads the evaluations every run of a finished multi-seed experiment logged (a run of 2,000 steps at a
constant learning rate has, at step 200, exactly the weights a 200-step run would have), pools the
seeds of each variant, and prints one markdown table: a column per step, the variants in plan order,
each cell mean ± std with its rank, and a mark where a variant scores better than the original. This
is the evidence behind the runner's "too short to rank" rule (experiments/plan.py, MIN_RANKING_STEPS);
its output is recorded in docs/results.md.

    python dev/ranking_by_step.py /tmp/honest/ablation --steps 200,500,1000,2000
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from bricklm.experiments.tables import planned_runs
from bricklm.storage.metrics import read_metrics


def val_at(run_dir: Path, step: int) -> float | None:
    return next((m["val_loss"] for m in read_metrics(run_dir) if m.get("eval") and m["step"] == step), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dir", type=Path, help="an ablation or sweep directory")
    parser.add_argument("--steps", default="200,500,1000,2000", help="evaluation steps to compare")
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    groups: dict[str, dict] = {}
    for run in planned_runs(args.dir):
        g = groups.setdefault(run["group"], {"label": run["label"], "dirs": []})
        if (args.dir / run["name"] / "metrics.jsonl").is_file():
            g["dirs"].append(args.dir / run["name"])
    table: dict[str, dict[int, list[float]]] = {}
    for name, g in groups.items():
        table[name] = {s: [v for d in g["dirs"] if (v := val_at(d, s)) is not None] for s in steps}
    means = {name: {s: statistics.fmean(v) if v else None for s, v in cells.items()} for name, cells in table.items()}
    print("| Variant | " + " | ".join(f"step {s:,}" for s in steps) + " |")
    print("|---|" + "---:|" * len(steps))
    for name, cells in table.items():
        row = []
        for s in steps:
            values = cells[s]
            if not values:
                row.append("–")
                continue
            ranked = sorted(m[s] for m in means.values() if m[s] is not None)
            spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
            better = " **<**" if name != "original" and means[name][s] < (means["original"][s] or 0) else ""
            row.append(f"{means[name][s]:.3f}{spread} (#{ranked.index(means[name][s]) + 1}){better}")
        print(f"| {groups[name]['label']} | " + " | ".join(row) + " |")
    seeds = sorted({len(v) for cells in table.values() for v in cells.values() if v})
    print(
        f"\nmean ± sample std over {' or '.join(map(str, seeds))} seeds; (#k): rank at that step; "
        "**<**: better than the original at that step"
    )


if __name__ == "__main__":
    main()
