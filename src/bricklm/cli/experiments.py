"""The blog's experiments as commands: sweep, ablate, bench-devices, overfit, samples-by-loss, memorization,
report."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from bricklm.cli.flags import add_config_flags, overrides_from_args
from bricklm.cli.train import add_min_span_flag, check_min_span
from bricklm.errors import UserError
from bricklm.experiments.devices import bench_devices, bench_table
from bricklm.experiments.memorization import PLOT, RESULT, format_memorization, memorization
from bricklm.experiments.plan import (
    ABLATIONS,
    RESULTS_JSONL,
    RESULTS_MD,
    failures_line,
    plan_ablation,
    plan_sweep,
    read_sweep_spec,
    run_plan,
    with_seeds,
    write_experiment,
)
from bricklm.experiments.report import (
    detect,
    experiment_report,
    format_level,
    level_samples,
    overfit_section,
    parse_at,
    run_report,
)
from bricklm.experiments.tables import write_ablation_outputs, write_sweep_outputs
from bricklm.files import atomic_write_json, atomic_write_text, check_out_dir, check_out_file, make_dir
from bricklm.recipes import load_config
from bricklm.storage.plots import plot_path


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
    add_seeds_flag(p)
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
    add_seeds_flag(p)
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

    p = sub.add_parser(
        "overfit",
        help="train vs validation loss at chosen iterations, the best-val step, and a plot",
        description="The blog's overfitting table for a run: train and val loss at --at iterations "
        "(default 500,1500,3000 when the run got that far), where val was lowest, and a PNG.",
    )
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--at", metavar="I,J,K", help="iterations to tabulate (nearest evaluation is used)")
    p.add_argument("--plot", metavar="PNG", help="where to write the plot (default RUN/overfit.png)")
    p.set_defaults(func=cmd_overfit)

    p = sub.add_parser(
        "samples-by-loss",
        help="one sample per validation-loss level reached during training (the blog's Inference)",
        description="For each loss level (train.loss_levels), sample from the weights saved when val loss "
        "first fell below it, starting from token 0 like the blog.",
    )
    p.add_argument("run", metavar="RUN", help="run directory trained with loss_levels set (the default)")
    p.add_argument("--chars", type=int, default=100, help="characters per sample (default 100, like the blog)")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--temperature", type=float, default=1.0, help="1.0 = the blog's plain sampling; 0 = greedy")
    p.set_defaults(func=cmd_samples_by_loss)

    p = sub.add_parser(
        "memorization",
        help="how much of what a run generates is copied from its training text, beside held-out text",
        description="Generate --samples samples and measure what each copied verbatim from the training text "
        "(the longest copied span, and the share of the text in copied spans of --min-span characters or more), "
        "beside the same measure on held-out text of the same lengths (what 'not copying' looks like for this "
        "corpus); then the same over the run's loss-level snapshots and its best and last checkpoints, to show "
        "copying grow as it overfits. Writes RUN/memorization.json and RUN/memorization.png.",
    )
    p.add_argument("--run", required=True, metavar="RUN", help="run directory from `bricklm train`")
    p.add_argument("--samples", type=int, default=8, metavar="K", help="samples per set of weights (default 8)")
    p.add_argument("--checkpoint", default="best", help="best (default), last, or a step-... directory name")
    p.add_argument(
        "--max-new-tokens", "--max_new_tokens", type=int, default=500, dest="max_new_tokens", help="default 500"
    )
    p.add_argument("--temperature", type=float, default=0.8, help="as in `bricklm sample` (default 0.8)")
    p.add_argument("--seed", type=int, default=1337)
    add_min_span_flag(p)
    p.set_defaults(func=cmd_memorization)

    p = sub.add_parser(
        "report",
        help="a markdown page (tables + PNG plots) for a run, a sweep or an ablation",
        description="Write DIR/report.md: detects whether DIR is a run, a sweep or an ablation.",
    )
    p.add_argument("dir", metavar="DIR", help="run, sweep or ablation directory")
    p.add_argument("--out", metavar="FILE.md", help="where to write (default DIR/report.md)")
    p.set_defaults(func=cmd_report)


def add_seeds_flag(p) -> None:
    help_text = "train every run with N seeds (train.seed, +1, ...) and report mean ± std (default 1)"
    p.add_argument("--seeds", type=int, default=1, metavar="N", help=help_text)


def cmd_sweep(args) -> int:
    spec = read_sweep_spec(args.spec)
    plan = with_seeds(plan_sweep(spec, overrides_from_args(args), str(args.spec)), args.seeds)
    out = Path(args.out)
    write_experiment(out, "sweep", plan, args.data, spec.get("meta", {}))
    results = run_plan(plan, args.data, out)
    print(write_sweep_outputs(out, results))
    print(f"\nwrote {out / RESULTS_MD}, {out / RESULTS_JSONL}, {out / 'val_loss.png'}")
    return _exit_code(out, len(plan))


def cmd_ablate(args) -> int:
    model, train = load_config(args.config, overrides_from_args(args))
    only = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else None
    plan = with_seeds(plan_ablation(model, train, only), args.seeds)
    out = Path(args.out)
    write_experiment(out, "ablation", plan, args.data, {"config": args.config})
    results = run_plan(plan, args.data, out)
    print(write_ablation_outputs(out, results))
    print(f"\nwrote {out / RESULTS_MD}, {out / RESULTS_JSONL}, {out / 'ablation.png'}")
    return _exit_code(out, len(plan))


def _exit_code(out: Path, total: int) -> int:
    """0 when every planned run trained; else the failures as the one error line (exit 1), after the tables."""
    line = failures_line(out, total)
    if line:
        raise UserError(line)
    return 0


def cmd_bench_devices(args) -> int:
    model, train = load_config(args.config, overrides_from_args(args))
    iters = args.iters if args.iters is not None else train.max_iters
    if iters <= 0:
        raise UserError(f"--iters must be a positive integer, got {iters}")
    devices = [d.strip() for d in args.devices.split(",")] if args.devices else None
    for d in devices or []:
        if d not in ("cpu", "cuda", "mps"):
            raise UserError(f"unknown device {d!r} in --devices (known: cpu, cuda, mps)")
    if args.out:
        check_out_dir(args.out)  # before the benchmark, not after it
    rows = bench_devices(model, train, args.data, iters, devices)
    ok = next((r for r in rows if r["status"] == "ok"), None)
    header = f"{ok['parameters']:,} parameters, {iters} iterations" if ok else f"{iters} iterations"
    table = bench_table(rows)
    print(f"{header}\n\n{table}")
    if args.out:
        out = make_dir(args.out)
        record = {"kind": "bench-devices", "when": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": rows}
        atomic_write_json(out / "bench_devices.json", record)
        atomic_write_text(out / "bench_devices.md", f"# Processors\n\n{header}\n\n{table}\n")
        print(f"\nwrote {out / 'bench_devices.md'}")
    return 0


def cmd_overfit(args) -> int:
    run = Path(args.run)
    if not run.is_dir():
        raise UserError(f"run directory not found: {run}")
    plot = plot_path(args.plot) if args.plot else run / "overfit.png"  # the name it is really written under
    check_out_file(plot, "--plot")
    print(overfit_section(run, parse_at(args.at), plot))
    print(f"\nplot: {plot}")
    return 0


def cmd_samples_by_loss(args) -> int:
    run = Path(args.run)
    if not run.is_dir():
        raise UserError(f"run directory not found: {run}")
    previous = None
    for entry in level_samples(run, args.chars, args.seed, args.temperature):
        line = format_level(entry)
        if previous and entry["reached"] and previous.get("step") == entry["step"]:
            # Evaluations are eval_interval apart: one can cross several levels at once.
            line = line.replace("\n", f" (the same evaluation as < {previous['level']:g})\n", 1)
        print(line)
        previous = entry
    return 0


def cmd_memorization(args) -> int:
    check_min_span(args.min_span)
    result = memorization(
        args.run,
        samples=args.samples,
        max_new_tokens=args.max_new_tokens,
        checkpoint=args.checkpoint,
        min_span=args.min_span,
        temperature=args.temperature,
        seed=args.seed,
        log=lambda line: print(line, file=sys.stderr),
    )
    print(format_memorization(result))
    print(f"\nwrote {Path(args.run) / RESULT}, {Path(args.run) / PLOT}")
    return 0


def cmd_report(args) -> int:
    path = Path(args.dir)
    if not path.is_dir():
        raise UserError(f"not a directory: {path}")
    out = Path(args.out) if args.out else path / "report.md"
    check_out_file(out, "--out")
    kind = detect(path)
    text = run_report(path) if kind == "run" else experiment_report(path, kind)
    atomic_write_text(out, text)
    print(text)
    print(f"wrote {out}")
    return 0
