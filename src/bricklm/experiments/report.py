"""Reading finished runs: the overfitting table, samples by loss level, a markdown report.

    bricklm overfit runs/overfit --at 500,1500,3000
    bricklm samples-by-loss runs/headline
    bricklm report runs/sweep          # a run, a sweep or an ablation: detected from its files

Everything here reads what training wrote (metrics.jsonl, summary.json, snapshots/,
experiment.json); nothing trains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from bricklm.config import parse_loss_levels
from bricklm.errors import UserError
from bricklm.experiments import tables
from bricklm.experiments.plan import EXPERIMENT, PlannedRun, collect_results, read_experiment
from bricklm.experiments.stats import missing_runs
from bricklm.model.generate import check_sampling_settings, generate_text
from bricklm.storage.metrics import METRICS, eval_records, read_metrics
from bricklm.storage.plots import finish_loss_axes, plot_loss, plt
from bricklm.storage.runs import CONFIG, SUMMARY, read_run_config, read_summary
from bricklm.storage.snapshots import SNAPSHOTS, list_snapshots, load_snapshot_model
from bricklm.text.tokenizer import load_tokenizer

BLOG_ITERATIONS = (500, 1500, 3000)


# --- overfitting --------------------------------------------------------------------------


def pick_iterations(evals: list[dict[str, Any]], at: list[int] | None) -> list[int]:
    """The asked-for iterations, or the blog's 500/1,500/3,000 when the run got that far, or four evenly spaced."""
    last = evals[-1]["step"]
    if at:
        return at
    blog = [i for i in BLOG_ITERATIONS if i <= last]
    if len(blog) == len(BLOG_ITERATIONS):
        return blog
    steps = [m["step"] for m in evals if m["step"] > 0]
    if len(steps) <= 4:
        return steps
    return [steps[round(i * (len(steps) - 1) / 3)] for i in range(4)]


def overfit_rows(evals: list[dict[str, Any]], at: list[int]) -> list[dict[str, Any]]:
    """One row per iteration: the evaluation at that step (or the nearest one, and we say so)."""
    rows = []
    for it in at:
        m = min(evals, key=lambda e: (abs(e["step"] - it), e["step"]))
        rows.append({"asked": it, "step": m["step"], "train_loss": m["train_loss"], "val_loss": m["val_loss"]})
    return rows


def overfit_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| Iterations | Train loss | Validation loss | Val − train |", "|---:|---:|---:|---:|"]
    for r in rows:
        it = f"{r['step']:,}" if r["step"] == r["asked"] else f"{r['step']:,} (nearest eval to {r['asked']:,})"
        gap = r["val_loss"] - r["train_loss"]
        lines.append(f"| {it} | {r['train_loss']:.4f} | {r['val_loss']:.4f} | {gap:+.4f} |")
    return "\n".join(lines)


def best_eval(evals: list[dict[str, Any]]) -> dict[str, Any]:
    return min(evals, key=lambda m: (m["val_loss"], m["step"]))


def plot_overfit(evals: list[dict[str, Any]], path: Path, title: str = "overfitting") -> Path:
    """Train and val loss per evaluation; after the best val step the widening gap is shaded."""
    best = best_eval(evals)
    steps = [m["step"] for m in evals]
    train = [m["train_loss"] for m in evals]
    val = [m["val_loss"] for m in evals]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(steps, train, "o-", markersize=3, color="tab:blue", label="train")
    ax.plot(steps, val, "o-", markersize=3, color="tab:orange", label="validation")
    after = [i for i, s in enumerate(steps) if s >= best["step"]]
    if len(after) > 1:
        xs = [steps[i] for i in after]
        ax.fill_between(
            xs,
            [train[i] for i in after],
            [val[i] for i in after],
            color="tab:red",
            alpha=0.15,
            label="gap after the best val step",
        )
    ax.axvline(best["step"], color="grey", linestyle="--", linewidth=1)
    ax.annotate(
        f"best val {best['val_loss']:.3f}\nat step {best['step']:,}",
        (best["step"], best["val_loss"]),
        textcoords="offset points",
        xytext=(8, 12),
        fontsize=8,
    )
    return finish_loss_axes(fig, ax, title, path)


def overfit_section(run_dir: Path, at: list[int] | None, plot_path: Path) -> str:
    evals = eval_records(run_dir)
    rows = overfit_rows(evals, pick_iterations(evals, at))
    best = best_eval(evals)
    last = evals[-1]
    plot_overfit(evals, plot_path, f"train vs validation loss: {run_dir.name}")
    if last["val_loss"] > best["val_loss"] * 1.01:
        trend = "rising again: the model is overfitting"
    elif last["val_loss"] > best["val_loss"]:
        trend = "within 1% of the best: evaluation noise, or the start of overfitting"
    else:
        trend = "still the best"
    verdict = (
        f"Validation loss was lowest at step {best['step']:,} ({best['val_loss']:.4f}); "
        f"by step {last['step']:,} it is {last['val_loss']:.4f} ({trend})."
    )
    return f"{overfit_table(rows)}\n\n{verdict}"


def parse_at(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        values = [int(p.replace("_", "")) for p in text.split(",") if p.strip()]
    except ValueError:
        raise UserError(f"--at takes comma-separated iterations like 500,1500,3000; got {text!r}") from None
    if any(v < 0 for v in values):
        raise UserError("--at iterations must be >= 0")
    return values


# --- samples by loss level ------------------------------------------------------------------


def level_samples(run_dir: Path, chars: int, seed: int, temperature: float) -> list[dict[str, Any]]:
    """One entry per configured level: its snapshot's sample, or why there is none."""
    check_sampling_settings(chars, temperature, None, least=1, length_flag="--chars", seed=seed)
    config = read_run_config(run_dir)
    levels = parse_loss_levels(config.get("train", {}).get("loss_levels", ""))
    snaps = {s["level"]: s for s in list_snapshots(run_dir)}
    levels = sorted(set(levels) | set(snaps), reverse=True)
    if not levels:
        raise UserError(f"{run_dir} was trained with loss_levels = '' (no snapshots); retrain with --loss-levels")
    tokenizer = load_tokenizer(run_dir / "tokenizer.json")
    best = None
    try:
        best = min(e["val_loss"] for e in eval_records(run_dir))
    except UserError:
        pass
    out = []
    for level in levels:
        snap = snaps.get(level)
        if snap is None:
            out.append({"level": level, "reached": False, "best_val": best})
            continue
        model = load_snapshot_model(run_dir, snap)
        # The blog's inference: start from token 0 and sample plainly (temperature 1, no top-k).
        gen = torch.Generator().manual_seed(seed)
        text = generate_text(model, tokenizer, "", chars, "cpu", generator=gen, temperature=temperature)
        out.append({**{k: v for k, v in snap.items() if k != "path"}, "reached": True, "sample": text})
    return out


def format_level(entry: dict[str, Any]) -> str:
    if not entry["reached"]:
        best = "" if entry.get("best_val") is None else f" (best val loss so far {entry['best_val']:.4f})"
        return f"val loss < {entry['level']:g}: not reached{best}"
    head = f"val loss < {entry['level']:g}: step {entry['step']:,}, val {entry['val_loss']:.4f}"
    if entry.get("below_at_start"):
        head += " — already below this level at step 0, before any training: an untrained model's sample"
    sample = entry["sample"].replace("\n", "⏎")
    return f"{head}\n    {sample}"


# --- report ------------------------------------------------------------------------------------


def detect(path: Path) -> str:
    if (path / EXPERIMENT).is_file():
        return read_experiment(path).get("kind", "sweep")
    if (path / METRICS).is_file():
        return "run"
    raise UserError(f"{path} is neither a run (metrics.jsonl), a sweep nor an ablation (experiment.json)")


def run_report(run: Path) -> str:
    parts = [f"# Run `{run.name}`\n"]
    config = read_run_config(run) if (run / CONFIG).is_file() else {}
    if (run / SUMMARY).is_file():
        s = read_summary(run)
        parts.append(
            "| Quantity | Value |\n|---|---:|\n"
            f"| Parameters | {s['parameters']:,} |\n| Iterations | {s['steps']:,} |\n"
            f"| Training time (s) | {s['training_time_s']:.1f} |\n| Tokens/s | {s['tokens_per_s']:,.0f} |\n"
            f"| Train loss | {s['train_loss']:.4f} |\n| Validation loss | {s['val_loss']:.4f} |\n"
            f"| Best validation loss (step) | {s['best_val_loss']:.4f} ({s['best_step']:,}) |\n"
        )
        if s.get("stop_reason"):
            parts.append(f"Stopped: {s['stop_reason']}\n")
    else:
        parts.append("No summary.json: the run has not finished (numbers below are from its metrics so far).\n")
    if config:
        m, t = config.get("model", {}), config.get("train", {})
        keys = [
            ("model", k)
            for k in (
                "n_layer",
                "n_head",
                "n_embd",
                "block_size",
                "dropout",
                "attention",
                "positional",
                "norm",
                "residual",
                "activation",
            )
        ]
        keys += [("train", k) for k in ("batch_size", "learning_rate", "schedule", "max_iters", "seed")]
        rows = "\n".join(f"| {s}.{k} | {(m if s == 'model' else t).get(k)} |" for s, k in keys)
        parts.append(f"## Settings\n\n| Setting | Value |\n|---|---|\n{rows}\n")
    plot_loss(read_metrics(run), run / "loss.png", title=f"loss: {run.name}")
    parts.append("## Loss\n\n![loss](loss.png)\n")
    parts.append(
        f"## Train vs validation\n\n{overfit_section(run, None, run / 'overfit.png')}\n\n![overfit](overfit.png)\n"
    )
    if config.get("train", {}).get("loss_levels") or (run / SNAPSHOTS).is_dir():
        try:
            entries = level_samples(run, 100, 1337, 1.0)
            lines = "\n".join(f"    {format_level(e)}" for e in entries)
            parts.append(f"## Samples by validation loss\n\n{lines}\n")
        except UserError as exc:
            parts.append(f"## Samples by validation loss\n\n{exc}\n")
    return "\n".join(parts)


def experiment_report(path: Path, kind: str) -> str:
    """A sweep's or ablation's page: its table (seeds pooled), the notes under it, and every run, missing ones
    with why; also rewrites the directory's results.md and plots."""
    exp = read_experiment(path)
    plan = [
        PlannedRun(r["name"], r["label"], r["overrides"], None, None, r.get("group", ""), r.get("replica", 1))  # type: ignore[arg-type]
        for r in exp["runs"]
    ]
    results = collect_results(path, plan)
    title = "Sweep" if kind == "sweep" else "Ablation"
    parts = [
        f"# {title} `{path.name}`\n",
        f"Corpus: `{exp.get('data')}`; {len(results)} of {len(plan)} runs finished.\n",
    ]
    write = tables.write_sweep_outputs if kind == "sweep" else tables.write_ablation_outputs
    parts.append(write(path, results) + "\n")
    parts.append(tables.notes(path, results, tables.missing_groups(path, results), "runs") + "\n")
    if kind != "sweep":
        parts.append("![val loss per variant](ablation.png)\n")
    if results:
        parts.append("![validation loss](val_loss.png)\n")
    parts.append("## Runs\n")
    for r in results:
        best = f"best val {r['best_val_loss']:.4f} at step {r['best_step']:,}"
        sample = (r.get("sample") or "").replace("\n", "⏎")
        parts.append(f"- #{r['index']} [`{r['run_dir']}`]({r['run_dir']}/): {r['label']}; {best}\n  sample: `{sample}`")
    for name, why in missing_runs(path, tables.planned_runs(path), results).items():
        parts.append(f"- `{name}`: no result: {why}")
    return "\n".join(parts) + "\n"
