"""Many runs, one table: hyperparameter sweeps, ablations and the processor comparison.

    bricklm sweep configs/seed/sweep.toml --data corpus/ --out runs/sweep
    bricklm ablate --config configs/seed/ablation-200k.toml --data corpus/ --out runs/ablation
    bricklm bench-devices --config configs/seed/processors-800k.toml --data corpus/ --iters 100

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
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bricklm import checkpoint as ckpt
from bricklm.config import (
    SECTIONS,
    ModelConfig,
    TrainConfig,
    add_config_flags,
    build,
    field_names,
    load_config,
    overrides_from_args,
)
from bricklm.errors import UserError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

EXPERIMENT = "experiment.json"
RESULTS_JSONL = "results.jsonl"
RESULTS_MD = "results.md"

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

# (name, what it changes, overrides). The attention variants that equal the base are skipped.
ABLATIONS: list[tuple[str, str, dict[str, Any]]] = [
    ("original", "the base model", {}),
    ("no-norm", "no normalization", {"norm": "none"}),
    ("no-pos", "no positional encoding", {"positional": "none"}),
    ("no-attention", "no attention", {"attention": "none"}),
    ("no-residual", "no residual connections", {"residual": False}),
    ("residual-bug", "the blog's residual bug (x = ln1(x))", {"residual_bug": True}),
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


# --- planning ------------------------------------------------------------------------------


def split_flat(values: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    """{'n_layer': 4, 'batch_size': 8} -> {'model': {...}, 'train': {...}}, naming unknown keys."""
    out: dict[str, dict[str, Any]] = {"model": {}, "train": {}}
    for key, value in values.items():
        section = next((s for s, cls in SECTIONS.items() if key in field_names(cls)), None)
        if section is None:
            raise UserError(f"{where}: unknown setting {key!r}")
        out[section][key] = value
    return out


def make_configs(base: dict[str, dict[str, Any]], changes: dict[str, Any], where: str):
    tables = {s: dict(base.get(s, {})) for s in SECTIONS}
    for section, table in split_flat(changes, where).items():
        tables[section].update(table)
    return build(ModelConfig, tables["model"], "model"), build(TrainConfig, tables["train"], "train")


def read_sweep_spec(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"sweep spec not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: invalid TOML: {exc}") from None
    known = {"meta", "model", "train", "grid", "runs"}
    for key in raw:
        if key not in known:
            raise UserError(f"{path}: unknown table [{key}] (known: [meta], [model], [train], [grid], [[runs]])")
    if ("grid" in raw) == ("runs" in raw):
        raise UserError(f"{path}: a sweep needs exactly one of a [grid] table or [[runs]] entries")
    return raw


def plan_sweep(spec: dict[str, Any], base_overrides: dict[str, Any], where: str) -> list[PlannedRun]:
    base = {s: dict(spec.get(s, {})) for s in SECTIONS}
    for section, table in split_flat(base_overrides, "flags").items():
        base[section].update(table)
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
        model, train = make_configs(base, changes, f"{where} run {i}")
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
        m, t = make_configs(base, changes, f"variant {name}")
        if name == "original":
            label = f"the base model (attention={model.attention}, positional={model.positional})"
        plan.append(PlannedRun(name, label, dict(changes), m, t))
    return plan


# --- running -------------------------------------------------------------------------------


def planned_dict(run: PlannedRun) -> dict[str, Any]:
    return {
        "name": run.name,
        "label": run.label,
        "overrides": run.overrides,
        "model": dataclasses.asdict(run.model),
        "train": dataclasses.asdict(run.train),
    }


def same_settings(saved: dict[str, Any], run: PlannedRun) -> bool:
    """Does a run directory's config.json describe this planned run? (vocab_size comes from the corpus.)"""
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
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("kind") != kind:
            raise UserError(f"{out} holds a {old.get('kind')}, not a {kind}; pick a new --out")
    out.mkdir(parents=True, exist_ok=True)
    ckpt.atomic_write_json(path, {"kind": kind, "data": str(data), "meta": meta, "runs": planned})


def run_plan(plan: list[PlannedRun], data: str | Path, out: Path, log=print, progress=None) -> list[dict]:
    """Train each planned run that hasn't finished; return every finished run's result."""
    from bricklm.train import Trainer

    failures: dict[str, str] = {}
    for i, run in enumerate(plan, 1):
        run_dir = out / run.name
        saved_cfg = run_dir / "config.json"
        if saved_cfg.is_file() and not same_settings(json.loads(saved_cfg.read_text()), run):
            raise UserError(
                f"{run_dir} was trained with other settings than the spec now asks for; "
                "use a new --out (or delete that run directory)"
            )
        if (run_dir / "summary.json").is_file():
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
            failures[run.name] = str(exc)
            log(f"[{i}/{len(plan)}] {run.name}: not trained: {exc}")
    ckpt.atomic_write_json(out / "failures.json", failures)
    return collect_results(out, plan)


def read_failures(out: Path) -> dict[str, str]:
    path = out / "failures.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def collect_results(out: Path, plan: list[PlannedRun]) -> list[dict[str, Any]]:
    """One record per finished run (summary + settings), also written to results.jsonl."""
    results = []
    for index, run in enumerate(plan, 1):
        summary_path = out / run.name / "summary.json"
        if not summary_path.is_file():
            continue
        summary = json.loads(summary_path.read_text())
        config = json.loads((out / run.name / "config.json").read_text())
        record = {k: v for k, v in summary.items() if k != "sample"}
        record.update(index=index, name=run.name, label=run.label, overrides=run.overrides)
        record.update(model=config["model"], train=config["train"], run_dir=run.name, sample=summary.get("sample"))
        results.append(record)
    lines = "".join(json.dumps(r) + "\n" for r in results)
    ckpt.atomic_write_bytes(out / RESULTS_JSONL, lines.encode())
    return results


def read_results(out: Path) -> list[dict[str, Any]]:
    path = out / RESULTS_JSONL
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- tables and plots ---------------------------------------------------------------------


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
    from bricklm.plots import plt, save
    from bricklm.train import read_metrics

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in results:
        evals = [m for m in read_metrics(out / r["run_dir"]) if m.get("eval")]
        ax.plot([m["step"] for m in evals], [m["val_loss"] for m in evals], "o-", markersize=3,
                label=f"#{r['index']} {r['name']}: {r['parameters']:,} params")  # fmt: skip
    # Runs still training (or interrupted) are drawn dashed, so a running sweep can be watched.
    done = {r["name"] for r in results}
    planned = json.loads((out / EXPERIMENT).read_text())["runs"] if (out / EXPERIMENT).is_file() else []
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
    from bricklm.plots import plt, save

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
    ckpt.atomic_write_bytes(out / RESULTS_MD, text.encode())
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
    ckpt.atomic_write_bytes(out / RESULTS_MD, text.encode())
    if results:
        plot_ablation_bars(results, out / "ablation.png")
        plot_val_curves(out, results, out / "val_loss.png", "ablation: validation loss")
    return table


# --- commands ------------------------------------------------------------------------------


def cmd_sweep(args) -> int:
    spec = read_sweep_spec(args.spec)
    plan = plan_sweep(spec, overrides_from_args(args), str(args.spec))
    out = Path(args.out)
    write_experiment(out, "sweep", plan, args.data, spec.get("meta", {}))
    results = run_plan(plan, args.data, out)
    print(write_sweep_outputs(out, results, len(plan)))
    print(f"\nwrote {out / RESULTS_MD}, {out / RESULTS_JSONL}, {out / 'val_loss.png'}")
    return 0


def cmd_ablate(args) -> int:
    model, train = load_config(args.config, overrides_from_args(args))
    only = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else None
    plan = plan_ablation(model, train, only)
    out = Path(args.out)
    write_experiment(out, "ablation", plan, args.data, {"config": args.config})
    results = run_plan(plan, args.data, out)
    print(write_ablation_outputs(out, results, len(plan)))
    print(f"\nwrote {out / RESULTS_MD}, {out / RESULTS_JSONL}, {out / 'ablation.png'}")
    return 0


def device_list() -> list[tuple[str, str | None]]:
    """[(device, None if usable else why not)] for cpu, cuda and mps: what this PyTorch can see."""
    import torch

    mps = getattr(torch.backends, "mps", None)
    return [
        ("cpu", None),
        ("cuda", None if torch.cuda.is_available() else "unavailable: PyTorch sees no CUDA GPU"),
        ("mps", None if mps is not None and mps.is_available() else "unavailable: no Apple MPS device"),
    ]


def device_name(device: str) -> str:
    import platform

    import torch

    if device == "cuda":
        return torch.cuda.get_device_name(0)
    if device == "cpu":
        return cpu_model() or platform.processor() or "CPU"
    return "Apple GPU (MPS)"


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def bench_devices(model_cfg, train_cfg, data, iters: int, devices: list[str] | None, log=print) -> list[dict]:
    """Train the same model for `iters` steps on each device; unavailable devices are listed, not run."""
    rows = []
    for device, why_not in device_list():
        if devices and device not in devices:
            continue
        if why_not:
            rows.append({"device": device, "status": why_not})
            continue
        from bricklm.train import Trainer

        t = dataclasses.replace(
            train_cfg, device=device, max_iters=iters, eval_interval=max(iters, 1), eval_iters=1,
            sample_chars=0, loss_levels="", early_stop=0,
        )  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="bricklm-bench-") as tmp:
            log(f"{device}: training {iters} steps")
            result = Trainer(dataclasses.replace(model_cfg), t, data, Path(tmp) / "run", log=lambda *a: None).run()
        rows.append({
            "device": device, "status": "ok", "name": device_name(device), "parameters": result["parameters"],
            "iterations": iters, "training_time_s": result["training_time_s"],
            "tokens_per_s": result["tokens_per_s"], "final_train_loss": result["train_loss"],
        })  # fmt: skip
    cpu = next((r for r in rows if r["device"] == "cpu" and r["status"] == "ok"), None)
    for r in rows:
        if r["status"] == "ok" and cpu:
            r["speedup_vs_cpu"] = cpu["training_time_s"] / r["training_time_s"] if r["training_time_s"] else math.nan
    return rows


def bench_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| Device | Name | Training time (s) | Tokens/s | Speed-up vs CPU |", "|---|---|---:|---:|---:|"]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['device']} | {r['status']} | – | – | – |")
            continue
        speed = f"{r['speedup_vs_cpu']:.1f}×" if "speedup_vs_cpu" in r else "–"
        lines.append(
            f"| {r['device']} | {r['name']} | {r['training_time_s']:.1f} | {r['tokens_per_s']:,.0f} | {speed} |"
        )
    return "\n".join(lines)


def cmd_bench_devices(args) -> int:
    model, train = load_config(args.config, overrides_from_args(args))
    iters = args.iters if args.iters is not None else train.max_iters
    if iters <= 0:
        raise UserError(f"--iters must be a positive integer, got {iters}")
    devices = [d.strip() for d in args.devices.split(",")] if args.devices else None
    for d in devices or []:
        if d not in ("cpu", "cuda", "mps"):
            raise UserError(f"unknown device {d!r} in --devices (known: cpu, cuda, mps)")
    rows = bench_devices(model, train, args.data, iters, devices)
    ok = next((r for r in rows if r["status"] == "ok"), None)
    header = f"{ok['parameters']:,} parameters, {iters} iterations" if ok else f"{iters} iterations"
    table = bench_table(rows)
    print(f"{header}\n\n{table}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        record = {"kind": "bench-devices", "when": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": rows}
        ckpt.atomic_write_json(out / "bench_devices.json", record)
        ckpt.atomic_write_bytes(out / "bench_devices.md", f"# Processors\n\n{header}\n\n{table}\n".encode())
        print(f"\nwrote {out / 'bench_devices.md'}")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="train a grid or list of hyperparameter sets; table + plot (resumable)",
        description="Train one run per combination in SPEC.toml ([model]/[train] shared, then [grid] or "
        "[[runs]]). Rerunning skips finished runs and resumes a half-finished one. Flags override the "
        "shared settings (not the swept ones).",
    )
    p.add_argument("spec", metavar="SPEC.toml", help="sweep spec, e.g. configs/seed/sweep.toml")
    p.add_argument("--data", required=True, metavar="DIR", help="corpus directory from `bricklm prepare`")
    p.add_argument("--out", required=True, metavar="DIR", help="sweep directory (created; reused to resume)")
    add_config_flags(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser(
        "ablate",
        help="the same model and seed with one block changed at a time; table + bar plot (resumable)",
        description="Variants: " + ", ".join(f"{n} ({label})" for n, label, _ in ABLATIONS) + ".",
    )
    p.add_argument("--config", metavar="FILE.toml", help="base recipe, e.g. configs/seed/ablation-200k.toml")
    p.add_argument("--data", required=True, metavar="DIR", help="corpus directory from `bricklm prepare`")
    p.add_argument("--out", required=True, metavar="DIR", help="ablation directory (created; reused to resume)")
    p.add_argument("--variants", metavar="A,B", help="only these variants (original always runs)")
    add_config_flags(p)
    p.set_defaults(func=cmd_ablate)

    p = sub.add_parser(
        "bench-devices",
        help="the same model for N iterations on every device present (cpu, cuda, mps)",
        description="Time training on each device PyTorch can see; absent devices are listed as unavailable.",
    )
    p.add_argument("--config", metavar="FILE.toml", help="recipe, e.g. configs/seed/processors-800k.toml")
    p.add_argument("--data", required=True, metavar="DIR", help="corpus directory from `bricklm prepare`")
    p.add_argument("--iters", type=int, help="training steps per device (default: the recipe's max_iters)")
    p.add_argument("--devices", metavar="LIST", help="comma-separated subset of cpu,cuda,mps (default: all)")
    p.add_argument("--out", metavar="DIR", help="also write bench_devices.md and .json here")
    add_config_flags(p, skip=("device",))
    p.set_defaults(func=cmd_bench_devices)
