"""How much a sweep's or an ablation's ranking means: seeds, spread, runs too short to rank, missing runs.

    groups = group_results(results)        # one record per variant (or sweep run), its seeds pooled
    inside_spread(a, b)                    # True: a and b differ by less than seed noise; None: unknown (1 seed)
    note = too_short_warning(steps)        # (plan.py) a sentence when runs are too short to rank, else None
    why = missing_runs(out, planned, results)   # {run name: why it has no result}

Spread is the sample standard deviation (n - 1) of the final val loss over a group's seeds.

Inside the seed spread: |mean a - mean b| <= 2 x the larger of the two standard deviations. With
3 seeds each and equal spreads, a two-sided t-test at 95 % needs |Δ| > 2.3 s, so this rule is close
to it, and simple to check by eye from a table of mean ± std. With one seed the spread is unknown
and nothing is marked.

Too short to rank: fewer than plan.MIN_RANKING_STEPS (1,000) steps; run_plan warns before training
and the notes under a table repeat it. Measured on the blog's corpus with configs/seed/ablation-200k.toml
and 3 seeds (docs/results.md, dev/ranking_by_step.py): at 200 steps dropping the positions scores as
well as the original (2.569 against 2.582) though it is 0.17 worse at 2,000; at 500 no normalization
and no attention are in each other's places; from 1,000 steps on the blog's variants keep their
2,000-step order.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from bricklm.experiments.plan import read_failures
from bricklm.storage import checkpoint as ckpt
from bricklm.storage.runs import CONFIG

SPREAD_FACTOR = 2.0  # |Δ| within this many (larger) standard deviations is seed noise
MEAN_KEYS = ("val_loss", "train_loss", "best_val_loss", "training_time_s", "tokens_per_s")


def group_results(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per group (a variant, or one sweep run) in plan order, its seeds pooled.

    The record has a single run's keys, with MEAN_KEYS (and val_bpb, where every seed has it) the mean over
    seeds, plus: seeds (how many
    finished), val_std (sample std of val_loss; None for one seed), val_losses (per seed, plan order),
    best_steps, run_dirs. A group of one seed is that run's record with seeds = 1.
    """
    by_group: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_group.setdefault(r.get("group") or r["name"], []).append(r)
    out = []
    for name, runs in by_group.items():
        runs = sorted(runs, key=lambda r: r.get("replica", 1))
        record = dict(runs[0], name=name)
        for key in MEAN_KEYS:
            record[key] = statistics.fmean(r[key] for r in runs)
        bpb = [r.get("val_bpb") for r in runs]  # absent from runs trained before bits per byte
        record["val_bpb"] = statistics.fmean(bpb) if None not in bpb else None
        losses = [r["val_loss"] for r in runs]
        record.update(
            seeds=len(runs),
            val_losses=losses,
            val_std=statistics.stdev(losses) if len(runs) > 1 else None,
            best_steps=[r["best_step"] for r in runs],
            run_dirs=[r["run_dir"] for r in runs],
        )
        out.append(record)
    return sorted(out, key=lambda r: r["index"])


def format_loss(record: dict[str, Any]) -> str:
    """'1.925' for one seed, '1.925 ± 0.012' for several."""
    if record.get("val_std") is None:
        return f"{record['val_loss']:.3f}"
    return f"{record['val_loss']:.3f} ± {record['val_std']:.3f}"


def inside_spread(a: dict[str, Any], b: dict[str, Any]) -> bool | None:
    """Is the gap between two groups' mean val losses within seed noise (the module's rule)? None: 1 seed."""
    if a.get("val_std") is None or b.get("val_std") is None:
        return None
    return abs(a["val_loss"] - b["val_loss"]) <= SPREAD_FACTOR * max(a["val_std"], b["val_std"])


def format_delta(record: dict[str, Any], reference: dict[str, Any]) -> str:
    """record's mean val loss minus reference's, marked when it is inside the seed spread."""
    delta = record["val_loss"] - reference["val_loss"]
    return f"{delta:+.3f}" + (" (inside spread)" if inside_spread(record, reference) else "")


def spread_note(groups: list[dict[str, Any]]) -> str:
    """A line under a table: what ± means and which rule marks a difference, or that one seed says nothing."""
    seeds = sorted({g["seeds"] for g in groups})
    if seeds == [1]:
        return (
            "One seed per run: the spread from seed to seed is not measured, so small differences may be "
            "noise (`--seeds 3` measures it)."
        )
    counts = " or ".join(str(n) for n in seeds)
    return (
        f"Val loss: the mean ± sample standard deviation over {counts} seeds. A difference is marked "
        f"*inside spread* when it is at most {SPREAD_FACTOR:g} × the larger of the two standard deviations "
        "(about a t-test at 95 % for 3 seeds each): treat those as ties."
    )


def missing_runs(out: Path, planned: list[dict[str, Any]], results: list[dict[str, Any]]) -> dict[str, str]:
    """{run name: why it has no result} for each planned run (experiment.json's entries) that has none:
    refused or failed (failures.json), unfinished (a checkpoint, no summary), started, or not started."""
    done = {r["name"] for r in results}
    failures = read_failures(out)
    why = {}
    for run in planned:
        name = run["name"]
        if name in done:
            continue
        if name in failures:
            f = failures[name]
            why[name] = f"{f['status']}: {f['reason']}"
            continue
        found = ckpt.list_checkpoints(out / name, warn=False)
        if found:
            step = int(found[-1].name.removeprefix("step-"))
            # Interrupted, or still training in another process: either way the same command resumes it.
            why[name] = (
                f"unfinished at step {step:,} of {run['train']['max_iters']:,} (last checkpoint); "
                "the same command resumes it"
            )
        elif (out / name / CONFIG).is_file():
            why[name] = "started, no checkpoint yet; the same command trains it"
        else:
            why[name] = "not started yet"
    return why
