"""The tables and plots of a sweep or an ablation: the blog's layout, from results.jsonl's records.

print(sweep_table(results))                    # one row per quantity, one column per run (seeds pooled)
print(ablation_table(results))                 # one row per variant: mean ± std and Δ vs the original
write_ablation_outputs(out, results)           # results.md, ablation.png, val_loss.png

A run with several seeds is one column (sweep) or row (ablation): mean ± std over its seeds, and a
difference inside the seed spread says so (stats.py has the rule). A planned run without a result
still gets its column or row, saying why: refused, failed, unfinished at a checkpoint, not started.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bricklm.experiments.plan import EXPERIMENT, RESULTS_MD, read_experiment, too_short_warning
from bricklm.experiments.stats import format_delta, format_loss, group_results, missing_runs, spread_note
from bricklm.files import atomic_write_bytes
from bricklm.storage.metrics import METRICS, read_metrics
from bricklm.storage.plots import plt, save


def format_bpb(record: dict[str, Any]) -> str:
    """Val loss in bits per byte of text (comparable across tokenizers); a dash for runs from before bpb."""
    return "–" if record.get("val_bpb") is None else f"{record['val_bpb']:.3f}"


# The blog's sweep table, top to bottom: (row label, how to read it from a result, kind). A run without a
# result shows its planned settings ("setting" rows), why it has none ("status") and a dash ("result").
SWEEP_ROWS: list[tuple[str, Any, str]] = [
    ("Parameters", lambda r: f"{r['parameters']:,}", "result"),
    ("Layers", lambda r: r["model"]["n_layer"], "setting"),
    ("Embedding", lambda r: r["model"]["n_embd"], "setting"),
    ("Heads", lambda r: r["model"]["n_head"], "setting"),
    ("Batch size", lambda r: r["train"]["batch_size"], "setting"),
    ("Block size", lambda r: r["model"]["block_size"], "setting"),
    ("Learning rate", lambda r: f"{r['train']['learning_rate']:g}", "setting"),
    ("Dropout", lambda r: f"{r['model']['dropout']:g}", "setting"),
    ("Iterations", lambda r: r["steps"], "status"),
    ("Training time (s)", lambda r: f"{r['training_time_s']:.{1 if r['training_time_s'] < 100 else 0}f}", "result"),
    ("Train loss", lambda r: f"{r['train_loss']:.3f}", "result"),
    ("Validation loss", format_loss, "result"),
    ("Val bits per byte", format_bpb, "result"),
]


def planned_runs(out: Path) -> list[dict[str, Any]]:
    """experiment.json's runs, each with its group and replica (an older file has one seed per run)."""
    runs = read_experiment(out).get("runs", []) if (out / EXPERIMENT).is_file() else []
    return [{**r, "group": r.get("group") or r["name"], "replica": r.get("replica", 1)} for r in runs]


def missing_groups(out: Path, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The planned groups with no finished seed at all, each with why (its first seed's reason) and its index."""
    planned = planned_runs(out)
    why = missing_runs(out, planned, results)
    order = list(dict.fromkeys(r["group"] for r in planned))
    done = {r.get("group") or r["name"] for r in results}
    out_groups = []
    for run in planned:
        if run["group"] not in done and run["replica"] == 1:
            out_groups.append({**run, "index": order.index(run["group"]) + 1, "why": why[run["name"]]})
    return out_groups


def short_why(why: str) -> str:
    """'refused: ... (long)' -> 'refused': the part of a reason that fits in a table cell."""
    return why.split(":")[0].split(";")[0]


def sweep_table(results: list[dict[str, Any]], missing: list[dict[str, Any]] = ()) -> str:
    """The blog's layout: one row per quantity, one column per run (#1..#N), a run's seeds pooled.

    missing: planned runs without a result (missing_groups); their columns show their settings and why.
    """
    groups = group_results(results)
    columns = sorted([*groups, *missing], key=lambda c: c["index"])
    if not columns:
        return "(no run has finished yet)"
    seeded = any(g["seeds"] > 1 for g in groups)
    best = min(groups, key=lambda g: g["val_loss"]) if groups else None
    rows = list(SWEEP_ROWS)
    if seeded:
        rows.insert(9, ("Seeds", lambda r: r["seeds"], "result"))
        rows.append(("Δ vs best", lambda r: "best" if r is best else format_delta(r, best), "result"))

    def cell(column: dict[str, Any], get, kind: str) -> str:
        if "why" not in column or kind == "setting":
            return str(get(column))
        return f"*{short_why(column['why'])}*" if kind == "status" else "–"

    head = "| | " + " | ".join(f"#{c['index']}" for c in columns) + " |"
    sep = "|---|" + "---:|" * len(columns)
    lines = [f"| {label} | " + " | ".join(cell(c, get, kind) for c in columns) + " |" for label, get, kind in rows]
    return "\n".join([head, sep, *lines])


def ablation_table(results: list[dict[str, Any]], missing: list[dict[str, Any]] = ()) -> str:
    """One row per variant: val loss (mean ± std over seeds), its difference to the original, the best val, and
    the val loss in bits per byte (comparable across tokenizers).

    missing: planned variants without a result (missing_groups); their rows say why.
    """
    groups = group_results(results)
    if not groups and not missing:
        return "(no variant has finished yet)"
    original = next((g for g in groups if g["name"] == "original"), None)
    seeded = any(g["seeds"] > 1 for g in groups)
    if seeded:
        lines = [
            "| Variant | Parameters | Val loss (mean ± std) | Δ vs original | Per seed | Best val (steps) | Val bpb |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
    else:
        lines = [
            "| Variant | Parameters | Val loss | Δ vs original | Best val (step) | Val bpb |",
            "|---|---:|---:|---:|---:|---:|",
        ]
    for g in sorted([*groups, *missing], key=lambda r: r["index"]):
        if "why" in g:
            lines.append(f"| {g['label']} | – | *{short_why(g['why'])}* | – |" + " – |" * (2 + seeded))
            continue
        delta = "0" if g is original else (format_delta(g, original) if original else "")
        best = f"{g['best_val_loss']:.3f} ({', '.join(f'{s:,}' for s in g['best_steps'])})"
        per_seed = f" {', '.join(f'{v:.3f}' for v in g['val_losses'])} |" if seeded else ""
        cells = f"{format_loss(g)} | {delta} |{per_seed} {best} | {format_bpb(g)}"
        lines.append(f"| {g['label']} | {g['parameters']:,} | {cells} |")
    return "\n".join(lines)


def notes(out: Path, results: list[dict[str, Any]], missing: list[dict[str, Any]], what: str) -> str:
    """What goes under a table: the spread rule, a too-short warning, and why each missing run is missing."""
    planned = planned_runs(out)
    parts = [spread_note(group_results(results))] if results else []
    warning = too_short_warning(min(r["steps"] for r in results)) if results else None
    if warning:
        parts.append(f"**Warning:** {warning}.")
    why = missing_runs(out, planned, results)
    if why:
        parts.append(f"{len(planned) - len(results)} of {len(planned)} {what} have no result:")
        parts.append("\n".join(f"- `{name}`: {reason}" for name, reason in why.items()))
    return "\n\n".join(parts)


def plot_val_curves(out: Path, results: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Validation loss per evaluation, one line per run (its seeds' mean); unfinished runs dashed."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for g in group_results(results):
        curves = [{m["step"]: m["val_loss"] for m in read_metrics(out / d) if m.get("eval")} for d in g["run_dirs"]]
        steps = sorted(set.intersection(*(set(c) for c in curves)))
        seeds = f", mean of {g['seeds']} seeds" if g["seeds"] > 1 else ""
        ax.plot(
            steps,
            [sum(c[s] for c in curves) / len(curves) for s in steps],
            "o-",
            markersize=3,
            label=f"#{g['index']} {g['name']}: {g['parameters']:,} params{seeds}",
        )
    # Runs still training (or interrupted) are drawn dashed, so a running sweep can be watched.
    done = {r["name"] for r in results}
    for run in planned_runs(out):
        metrics = out / run["name"] / METRICS
        if run["name"] in done or not metrics.is_file():
            continue
        evals = [m for m in read_metrics(out / run["name"]) if m.get("eval")]
        if evals:
            ax.plot(
                [m["step"] for m in evals],
                [m["val_loss"] for m in evals],
                "o--",
                markersize=3,
                alpha=0.7,
                label=f"{run['name']}: unfinished",
            )
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def plot_ablation_bars(results: list[dict[str, Any]], path: Path) -> Path:
    """One bar per variant (the mean over seeds, with ± one standard deviation when there are several)."""
    groups = group_results(results)[::-1]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(groups) + 1.5))
    names = [g["name"] for g in groups]
    values = [g["val_loss"] for g in groups]
    errors = [g["val_std"] or 0.0 for g in groups]
    colors = ["tab:orange" if n == "original" else "tab:blue" for n in names]
    ax.barh(names, values, xerr=errors if any(errors) else None, color=colors, capsize=3)
    for y, g in enumerate(groups):
        ax.text(g["val_loss"] + errors[y], y, f" {format_loss(g)}", va="center", fontsize=8)
    seeds = max((g["seeds"] for g in groups), default=1)
    ax.set_xlabel("validation loss (lower is better)" + (f"; mean ± std over {seeds} seeds" if seeds > 1 else ""))
    ax.set_title("ablation: the same model and seeds, one block changed")
    ax.set_xlim(0, max(v + e for v, e in zip(values, errors, strict=True)) * 1.2 if values else 1)
    ax.grid(axis="x", alpha=0.3)
    return save(fig, path)


def write_sweep_outputs(out: Path, results: list[dict[str, Any]]) -> str:
    """results.md (table, notes, one line per run) and val_loss.png; returns the table."""
    missing = missing_groups(out, results)
    table = sweep_table(results, missing)
    runs = "\n".join(f"- #{g['index']} `{g['run_dirs'][0]}`: {g['label']}" for g in group_results(results))
    text = f"# Sweep results\n\n{table}\n\n{notes(out, results, missing, 'runs')}\n\n{runs}\n\n"
    atomic_write_bytes(out / RESULTS_MD, (text + "![validation loss](val_loss.png)\n").encode())
    if results:
        plot_val_curves(out, results, out / "val_loss.png", "validation loss per run")
    return table


def write_ablation_outputs(out: Path, results: list[dict[str, Any]]) -> str:
    """results.md (table and notes), ablation.png and val_loss.png; returns the table."""
    missing = missing_groups(out, results)
    table = ablation_table(results, missing)
    text = f"# Ablation results\n\n{table}\n\n{notes(out, results, missing, 'runs')}\n\n"
    text += "![val loss per variant](ablation.png)\n\n![validation loss curves](val_loss.png)\n"
    atomic_write_bytes(out / RESULTS_MD, text.encode())
    if results:
        plot_ablation_bars(results, out / "ablation.png")
        plot_val_curves(out, results, out / "val_loss.png", "ablation: validation loss")
    return table
