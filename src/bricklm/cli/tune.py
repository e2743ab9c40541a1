"""`bricklm tune`: what `auto` chose (attention kernel, dtype, threads) for which shape, and why; measure one now."""

from __future__ import annotations

import os

from bricklm.cli.flags import add_config_flags, overrides_from_args
from bricklm.errors import UserError
from bricklm.recipes import load_config
from bricklm.training.hardware import resolve_device
from bricklm.training.tuning import TUNE_ENV, auto_settings, cache_file, cached_choices, tune


def register(sub) -> None:
    p = sub.add_parser(
        "tune",
        help="show the measured choices of attention/dtype/threads = auto; measure a shape now",
        description="With no settings, list the choices `auto` measured on this machine (cached in "
        "tuning.json under BRICKLM_CACHE_DIR, default ~/.cache/bricklm): the shape, the choice, each candidate's "
        "fastest probe step, the CPU other processes used (in cores) just before and while measuring, and when. "
        "With --config or flags (the "
        "ones `train` takes), measure the shape that `train` would train with them unless it is cached, then "
        "list. A choice measured while the machine was busy is measured again by the next new run (or this "
        "command) once it is quiet; --retune measures again now. A run keeps the choice it trained with in "
        "RUN/tuning.json, and --resume reuses it whatever the cache says.",
    )
    p.add_argument("--config", metavar="FILE.toml", help="a recipe: tune the shape it trains")
    p.add_argument("--retune", action="store_true", help="measure again even if a choice is cached")
    add_config_flags(p)
    p.set_defaults(func=cmd_tune)


def cmd_tune(args) -> int:
    overrides = overrides_from_args(args)
    if args.config or overrides or args.retune:
        if os.environ.get(TUNE_ENV, "").lower() == "off":
            raise UserError(f"{TUNE_ENV}=off is set here, so nothing is measured (unset it to tune)")
        model_cfg, train_cfg = load_config(args.config, overrides)
        if not auto_settings(model_cfg, train_cfg):
            raise UserError("nothing to tune: attention, dtype and threads are all set (make one of them auto)")
        tune(model_cfg, train_cfg, resolve_device(train_cfg.device), print, retune=args.retune)
    entries = cached_choices()
    print(f"{len(entries)} measured choice{'s' * (len(entries) != 1)} in {cache_file()}")
    for entry in entries:
        print(describe(entry))
    return 0


def describe(entry: dict) -> str:
    """One cached choice in three lines: the shape, the choice with its load and time, each candidate's time."""
    shape = dict(entry.get("shape") or {})
    wanted = shape.pop("wanted", ["kernel", "dtype", "threads"])
    where = f"{shape.pop('cpu', '?')} ({shape.pop('device', '?')})"
    if shape.get("threads") == -1:
        shape["threads"] = "auto"
    chose = {
        "kernel": f"attention {entry.get('kernel')}",
        "dtype": entry.get("dtype"),
        "threads": f"{entry.get('threads')} thread{'s' * (entry.get('threads') != 1)}",
    }
    load = entry.get("load")
    if load is None:
        state = "load not recorded: measured again when the machine is quiet"
    else:
        state = f"other processes used {load[0]} cores before, {load[1]} while measuring: " + (
            "busy, measured again when quiet" if entry.get("loaded") else "quiet"
        )
    took = f" in {entry['probe_seconds']} s" if entry.get("probe_seconds") else ""
    timings = ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in (entry.get("timings") or {}).items())
    return (
        f"- {where}: {' '.join(f'{k}={v}' for k, v in shape.items())}\n"
        f"  chose {', '.join(chose[w] for w in wanted)} (measured {entry.get('measured_at') or '?'}{took}; {state})\n"
        f"  fastest probe step: {timings or 'not recorded'}"
    )
