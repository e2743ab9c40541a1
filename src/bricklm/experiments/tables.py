"""The tables and plots of a sweep or an ablation: the blog's layout, from results.jsonl's records.

print(sweep_table(results))                       # one row per quantity, one column per run
write_ablation_outputs(out, results, len(plan))   # results.md, ablation.png, val_loss.png
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bricklm.experiments.plan import EXPERIMENT, RESULTS_MD, read_experiment, read_failures
from bricklm.files import atomic_write_text
from bricklm.plots import plt, save
from bricklm.runs import read_metrics

# The blog's sweep table, top to bottom: (row label, how to read it from a result).
SWEEP_ROWS: list[tuple[str, Any]] = [
    ("Parameters", lambda r: f"{r['parameters']:,}"),
    ("Layers", lambda r: r["model"]["n_layer"]),
    ("Embedding", lambda r: r["model"]["n_embd"]),
    ("Heads", lambda r: r["model"]["n_head"]),
    ("Batch size", lambda r: r["train"]["batch_size"]),
    ("Block size", lambda r: r["model"]["block_size"]),
    ("Learning rate", lambda r: f"{r['train']['learning_rate']:g}"),
    ("Dropout", lambda r: f"{r['model']['dropout']:g}"),
    ("Iterations", lambda r: r["steps"]),
    ("Training time (s)", lambda r: f"{r['training_time_s']:.{1 if r['training_time_s'] < 100 else 0}f}"),
    ("Train loss", lambda r: f"{r['train_loss']:.3f}"),
    ("Validation loss", lambda r: f"{r['val_loss']:.3f}"),
]


def sweep_table(results: list[dict[str, Any]]) -> str:
    """The blog's layout: one row per quantity, one column per run (#1..#N)."""
    if not results:
        return "(no run has finished yet)"
    head = "| | " + " | ".join(f"#{r.get('index', i)}" for i, r in enumerate(results, 1)) + " |"
    sep = "|---|" + "---:|" * len(results)
    rows = [f"| {label} | " + " | ".join(str(get(r)) for r in results) + " |" for label, get in SWEEP_ROWS]
    return "\n".join([head, sep, *rows])


def ablation_table(results: list[dict[str, Any]]) -> str:
    if not results:
        return "(no variant has finished yet)"
    original = next((r for r in results if r["name"] == "original"), None)
    lines = ["| Variant | Parameters | Val loss | Δ vs original | Best val (step) |", "|---|---:|---:|---:|---:|"]
    for r in results:
        delta = "" if original is None or r is original else f"{r['val_loss'] - original['val_loss']:+.3f}"
        if r is original:
            delta = "0"
        lines.append(
            f"| {r['label']} | {r['parameters']:,} | {r['val_loss']:.3f} | {delta} | "
            f"{r['best_val_loss']:.3f} ({r['best_step']}) |"
        )
    return "\n".join(lines)


def plot_val_curves(out: Path, results: list[dict[str, Any]], path: Path, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in results:
        evals = [m for m in read_metrics(out / r["run_dir"]) if m.get("eval")]
        ax.plot([m["step"] for m in evals], [m["val_loss"] for m in evals], "o-", markersize=3,
                label=f"#{r['index']} {r['name']}: {r['parameters']:,} params")  # fmt: skip
    # Runs still training (or interrupted) are drawn dashed, so a running sweep can be watched.
    done = {r["name"] for r in results}
    planned = read_experiment(out)["runs"] if (out / EXPERIMENT).is_file() else []
    for index, run in enumerate(planned, 1):
        metrics = out / run["name"] / "metrics.jsonl"
        if run["name"] in done or not metrics.is_file():
            continue
        evals = [m for m in read_metrics(out / run["name"]) if m.get("eval")]
        if evals:
            ax.plot([m["step"] for m in evals], [m["val_loss"] for m in evals], "o--", markersize=3, alpha=0.7,
                    label=f"#{index} {run['name']}: unfinished")  # fmt: skip
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def plot_ablation_bars(results: list[dict[str, Any]], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(results) + 1.5))
    names = [r["name"] for r in results][::-1]
    values = [r["val_loss"] for r in results][::-1]
    colors = ["tab:orange" if n == "original" else "tab:blue" for n in names]
    ax.barh(names, values, color=colors)
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.3f}", va="center", fontsize=8)
    ax.set_xlabel("validation loss (lower is better)")
    ax.set_title("ablation: the same model and seed, one block changed")
    ax.set_xlim(0, max(values) * 1.15 if values else 1)
    ax.grid(axis="x", alpha=0.3)
    return save(fig, path)


def write_sweep_outputs(out: Path, results: list[dict[str, Any]], total: int) -> str:
    table = sweep_table(results)
    missing = "" if len(results) == total else f"\n\n{total - len(results)} of {total} runs have not finished yet.\n"
    missing += "".join(f"\n- `{name}` not trained: {why}\n" for name, why in read_failures(out).items())
    runs = "\n".join(f"- #{r['index']} `{r['run_dir']}`: {r['label']}" for r in results)
    text = f"# Sweep results\n\n{table}\n{missing}\n{runs}\n\n![validation loss](val_loss.png)\n"
    atomic_write_text(out / RESULTS_MD, text)
    if results:
        plot_val_curves(out, results, out / "val_loss.png", "validation loss per run")
    return table


def write_ablation_outputs(out: Path, results: list[dict[str, Any]], total: int) -> str:
    table = ablation_table(results)
    missing = (
        "" if len(results) == total else f"\n\n{total - len(results)} of {total} variants have not finished yet.\n"
    )
    missing += "".join(f"\n- `{name}` not trained: {why}\n" for name, why in read_failures(out).items())
    text = f"# Ablation results\n\n{table}\n{missing}\n![val loss per variant](ablation.png)\n\n"
    text += "![validation loss curves](val_loss.png)\n"
    atomic_write_text(out / RESULTS_MD, text)
    if results:
        plot_ablation_bars(results, out / "ablation.png")
        plot_val_curves(out, results, out / "val_loss.png", "ablation: validation loss")
    return table
