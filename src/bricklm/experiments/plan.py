"""Many runs, one table: planning and running hyperparameter sweeps and ablations.

    bricklm sweep configs/seed/sweep.toml --data corpus/ --out runs/sweep
    bricklm ablate --config configs/seed/ablation-200k.toml --data corpus/ --out runs/ablation

A sweep or ablation directory holds experiment.json (what was planned), one run directory
per combination (run-01, ... or the variant's name), results.jsonl, results.md and a PNG.
Rerunning the same command skips runs that finished (they have summary.json) and resumes
a half-finished one from its newest checkpoint through the Trainer's own resume, so an
interrupted sweep picks up where it stopped.

A sweep spec is a recipe ([meta], [model], [train]: shared by every run) plus either
`[[runs]]` entries (explicit settings per run) or a `[grid]` table of lists (every
combination). Keys in runs/grid are the flat field names of ModelConfig/TrainConfig.
Every run is seeded with train.seed (the same for all runs, so they differ only in what
the spec changes) unless `seed` itself is swept.

`--seeds N` (with_seeds) trains each planned run N times: seed 1 is train.seed in the run's
own directory (so a single-seed sweep or ablation is the first seed of a multi-seed one, and
reruns with more seeds reuse it), seed k is train.seed + k - 1 in NAME-sK. An experiment.json
without seed fields is one seed per run.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bricklm.config import ModelConfig, TrainConfig
from bricklm.errors import UserError
from bricklm.files import atomic_write_bytes, atomic_write_json, check_out_dir, make_dir
from bricklm.recipes import merge, read_toml, resolve
from bricklm.storage import checkpoint as ckpt
from bricklm.storage.runs import CONFIG, SUMMARY, read_run_config, read_summary
from bricklm.training.trainer import Trainer

EXPERIMENT = "experiment.json"
RESULTS_JSONL = "results.jsonl"
RESULTS_MD = "results.md"
FAILURES = "failures.json"
ERROR_LOG = "error.log"  # a failed run's traceback, in its run directory
# Shorter runs get a warning that their ranking means little (experiments/stats.py says why 1,000).
MIN_RANKING_STEPS = 1000

# (name, what it changes, overrides). The attention variants that equal the base are skipped.
ABLATIONS: list[tuple[str, str, dict[str, Any]]] = [
    ("original", "the base model", {}),
    ("no-norm", "no normalization", {"norm": "none"}),
    ("no-pos", "no positional encoding", {"positional": "none"}),
    ("no-attention", "no attention", {"attention": "none"}),
    ("no-residual", "no residual connections", {"residual": "off"}),
    ("residual-bug", "the blog's residual bug (x = ln1(x))", {"residual": "bug"}),
    ("sinusoidal", "sinusoidal positions (fixed, not learned)", {"positional": "sinusoidal"}),
    ("attn-manual", "hand-written attention", {"attention": "manual"}),
    ("attn-torch-mha", "nn.MultiheadAttention", {"attention": "torch_mha"}),
    ("attn-sdpa", "fused scaled_dot_product_attention", {"attention": "sdpa"}),
]


@dataclass
class PlannedRun:
    name: str
    label: str
    overrides: dict[str, Any]  # what this run changes relative to the base
    model: ModelConfig
    train: TrainConfig
    group: str = ""  # the variant or sweep run this is one seed of ("" = its own name)
    replica: int = 1  # which seed of the group: 1 .. N

    def __post_init__(self) -> None:
        self.group = self.group or self.name


# --- planning ------------------------------------------------------------------------------


def read_sweep_spec(path: str | Path) -> dict[str, Any]:
    raw = read_toml(path, extra_tables=("grid", "runs"))
    if ("grid" in raw) == ("runs" in raw):
        raise UserError(f"{path}: a sweep needs exactly one of a [grid] table or [[runs]] entries")
    return raw


def plan_sweep(spec: dict[str, Any], base_overrides: dict[str, Any], where: str) -> list[PlannedRun]:
    base = merge(spec, None, base_overrides)  # the shared settings; each run's changes go on top
    if "grid" in spec:
        grid = spec["grid"]
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise UserError(f"{where}: grid.{key} must be a non-empty list, like {key} = [1, 2]")
        keys = list(grid)
        combos = [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]
    else:
        combos = spec["runs"]
        if not isinstance(combos, list) or not all(isinstance(c, dict) for c in combos):
            raise UserError(f"{where}: runs must be [[runs]] tables")
    plan = []
    for i, changes in enumerate(combos, 1):
        model, train = resolve(base, None, changes, where=f"{where} run {i}")
        label = ", ".join(f"{k}={v}" for k, v in changes.items()) or "base"
        plan.append(PlannedRun(f"run-{i:02d}", label, dict(changes), model, train))
    if not plan:
        raise UserError(f"{where}: the sweep has no runs")
    return plan


def plan_ablation(model: ModelConfig, train: TrainConfig, only: list[str] | None = None) -> list[PlannedRun]:
    names = [n for n, _, _ in ABLATIONS]
    for name in only or []:
        if name not in names:
            raise UserError(f"unknown variant {name!r} (known: {', '.join(names)})")
    base = {"model": dataclasses.asdict(model), "train": dataclasses.asdict(train)}
    plan = []
    for name, label, changes in ABLATIONS:
        if only and name not in only and name != "original":
            continue
        if changes and all(base["model"].get(k) == v for k, v in changes.items()):
            continue  # e.g. attn-torch-mha when the base already uses torch_mha: that is the original
        m, t = resolve(base, None, changes, where=f"variant {name}")
        if name == "original":
            label = f"the base model (attention={model.attention}, positional={model.positional})"
        plan.append(PlannedRun(name, label, dict(changes), m, t))
    return plan


def with_seeds(plan: list[PlannedRun], seeds: int) -> list[PlannedRun]:
    """Each run of plan trained with `seeds` seeds, seed-major: every run's first seed, then every run's second...

    Seed-major so that an interrupted multi-seed experiment has a complete one-seed table first.
    """
    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {seeds}")
    out = []
    for k in range(1, seeds + 1):
        for run in plan:
            if k == 1:
                out.append(run)
                continue
            train = dataclasses.replace(run.train, seed=run.train.seed + k - 1)
            out.append(
                PlannedRun(
                    f"{run.name}-s{k}",
                    run.label,
                    run.overrides,
                    dataclasses.replace(run.model),
                    train,
                    group=run.name,
                    replica=k,
                )
            )
    return out


# --- running -------------------------------------------------------------------------------


def planned_dict(run: PlannedRun) -> dict[str, Any]:
    return {
        "name": run.name,
        "label": run.label,
        "overrides": run.overrides,
        "group": run.group,
        "replica": run.replica,
        "model": dataclasses.asdict(run.model),
        "train": dataclasses.asdict(run.train),
    }


def same_settings(saved: dict[str, Any], run: PlannedRun) -> bool:
    """Does a run directory's config.json (runs.read_run_config) describe this planned run? (vocab_size comes
    from the corpus.)"""
    # Only keys both sides know: a field added to the configs later must not orphan old runs.
    for section, cfg in (("model", run.model), ("train", run.train)):
        have = saved.get(section, {})
        for key, value in dataclasses.asdict(cfg).items():
            if key != "vocab_size" and key in have and have[key] != value:
                return False
    return True


def write_experiment(out: Path, kind: str, plan: list[PlannedRun], data: str, meta: dict[str, Any]) -> None:
    path = out / EXPERIMENT
    planned = [planned_dict(r) for r in plan]
    check_out_dir(out)
    if path.is_file():
        old = read_experiment(out)
        if old.get("kind") != kind:
            raise UserError(f"{out} holds a {old.get('kind')}, not a {kind}; pick a new --out")
    make_dir(out)
    atomic_write_json(path, {"kind": kind, "data": str(data), "meta": meta, "runs": planned})


def run_plan(plan: list[PlannedRun], data: str | Path, out: Path, log=print, progress=None) -> list[dict]:
    """Train each planned run that hasn't finished; return every finished run's result.

    A run that cannot train (a
    UserError: refused) or crashes (failed: its traceback goes to RUN/error.log) is recorded in
    failures.json and the others still train; Ctrl-C still stops the whole plan.
    """
    warning = too_short_warning(min(run.train.max_iters for run in plan)) if plan else None
    if warning:
        log(f"warning: {warning}")
    failures: dict[str, dict[str, str]] = {}
    for i, run in enumerate(plan, 1):
        run_dir = out / run.name
        if (run_dir / CONFIG).is_file() and not same_settings(read_run_config(run_dir), run):
            raise UserError(
                f"{run_dir} was trained with other settings than the spec now asks for; "
                "use a new --out (or delete that run directory)"
            )
        if (run_dir / SUMMARY).is_file():
            log(f"[{i}/{len(plan)}] {run.name}: finished earlier, skipped ({run.label})")
            continue
        # Half-finished with a checkpoint: continue it (the Trainer's exact resume). Started but
        # never checkpointed: train from scratch in place (the Trainer rewrites metrics.jsonl).
        resume = ckpt.latest_checkpoint(run_dir, required=False) is not None
        log(f"[{i}/{len(plan)}] {run.name}: {'resuming' if resume else 'training'} ({run.label})")
        model_cfg, train_cfg = dataclasses.replace(run.model), dataclasses.replace(run.train)
        try:
            Trainer(model_cfg, train_cfg, data, run_dir, resume=resume, log=log, progress=progress).run()
        except UserError as exc:
            # One run that can't train here (e.g. too big for memory) must not cost the others.
            failures[run.name] = {"status": "refused", "reason": str(exc)}
            log(f"[{i}/{len(plan)}] {run.name}: refused: {exc}")
        except Exception as exc:  # a crash in one run: keep its traceback, train the rest, report it at the end
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(run_dir / ERROR_LOG, traceback.format_exc().encode())
            failures[run.name] = {"status": "failed", "reason": f"{type(exc).__name__}: {exc} (see {ERROR_LOG})"}
            log(f"[{i}/{len(plan)}] {run.name}: failed: {type(exc).__name__}: {exc} (see {run_dir / ERROR_LOG})")
    atomic_write_json(out / FAILURES, failures)
    return collect_results(out, plan)


def too_short_warning(steps: int) -> str | None:
    """Why runs of `steps` steps cannot be ranked yet, or None (the rule: MIN_RANKING_STEPS)."""
    if steps >= MIN_RANKING_STEPS:
        return None
    return (
        f"runs of {steps:,} steps are too short to rank: in the blog's 200k ablation (3 seeds, docs/results.md) "
        "dropping the positions ties the original at 200 steps but is 0.17 worse at 2,000, and no normalization "
        "and no attention swap places at 500; from 1,000 steps on the order is the one at 2,000. Give --max-iters "
        f"{MIN_RANKING_STEPS} or more before reading anything into the ranking"
    )


def failures_line(out: Path, total: int) -> str | None:
    """One line naming the runs the last sweep or ablation in `out` could not train (refused or crashed), or None
    if every one trained."""
    failures = read_failures(out)
    if not failures:
        return None
    crashed = [name for name, f in failures.items() if f["status"] == "failed"]
    tracebacks = f"; the tracebacks of {', '.join(crashed)} are in {out}/RUN/{ERROR_LOG}" if crashed else ""
    return (
        f"{len(failures)} of {total} runs were not trained: {', '.join(failures)} (why: above, and in "
        f"{out / RESULTS_MD}{tracebacks}); fix that and rerun the same command to train just those"
    )


def read_failures(out: Path) -> dict[str, dict[str, str]]:
    """failures.json: {run name: {"status": "refused" | "failed", "reason": ...}} for the runs the last command
    could not train (an older file's plain messages read as refusals); damage is a UserError naming it."""
    path = out / FAILURES
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raw = None
    ok = isinstance(raw, dict) and all(
        isinstance(v, str) or (isinstance(v, dict) and isinstance(v.get("reason"), str)) for v in raw.values()
    )
    if not ok:
        raise UserError(f"{path} is damaged (not a table of run names and reasons); delete it and rerun")
    return {name: f if isinstance(f, dict) else {"status": "refused", "reason": f} for name, f in raw.items()}


def collect_results(out: Path, plan: list[PlannedRun]) -> list[dict[str, Any]]:
    """One record per finished run (summary + settings), also written to results.jsonl."""
    results = []
    groups = list(dict.fromkeys(run.group for run in plan))  # a run's number is its group's: #2 for every seed of #2
    for run in plan:
        index = groups.index(run.group) + 1
        summary_path = out / run.name / SUMMARY
        if not summary_path.is_file():
            continue
        summary = read_summary(out / run.name)
        config = read_run_config(out / run.name)
        record = {k: v for k, v in summary.items() if k != "sample"}
        record.update(
            index=index,
            name=run.name,
            label=run.label,
            overrides=run.overrides,
            group=run.group,
            replica=run.replica,
            seed=config["train"].get("seed"),
        )
        record.update(model=config["model"], train=config["train"], run_dir=run.name, sample=summary.get("sample"))
        results.append(record)
    lines = "".join(json.dumps(r) + "\n" for r in results)
    atomic_write_bytes(out / RESULTS_JSONL, lines.encode())
    return results


def read_experiment(out: Path) -> dict[str, Any]:
    """experiment.json: what a sweep or ablation planned; damage is a UserError naming the file."""
    path = out / EXPERIMENT
    try:
        exp = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path} ({type(exc).__name__}); is {out} a sweep or ablation?") from None
    if not isinstance(exp, dict) or not isinstance(exp.get("runs", []), list):
        raise UserError(f"{path} is not a bricklm experiment record")
    for r in exp.get("runs", []):
        ok = isinstance(r, dict) and isinstance(r.get("label"), str) and isinstance(r.get("overrides"), dict)
        name = r.get("name") if isinstance(r, dict) else None
        # A run's name is a folder inside `out`: nothing that reaches outside it.
        if not ok or not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name:
            raise UserError(f"{path} is not a bricklm experiment record (a damaged entry in runs)")
    return exp
