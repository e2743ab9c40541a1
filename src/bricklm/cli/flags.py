"""Every config field as a flag, spelled both --n-embd and --n_embd; the old residual flags still work.

    add_config_flags(parser)                        # one flag per ModelConfig and TrainConfig field
    overrides = overrides_from_args(args)           # only the flags the user gave, as flat field names

Unset flags stay out of the overrides, so a recipe's value is never replaced by a default.
`--no-residual` and `--residual-bug` (from when residual was two switches) map onto
`--residual off|bug` with a deprecation line.
"""

from __future__ import annotations

import argparse
import warnings
from dataclasses import fields
from typing import Any

from bricklm.config import SECTIONS, ModelConfig, TrainConfig, field_names

LEGACY = "_legacy_residual"  # where --no-residual / --residual-bug put their value


def add_config_flags(parser: argparse.ArgumentParser, classes=(ModelConfig, TrainConfig), skip=()) -> None:
    """One flag per field of classes; a bool field gets --x and --no-x."""
    for cls in classes:
        section = next(name for name, c in SECTIONS.items() if c is cls)
        group = parser.add_argument_group(f"{cls.__name__} (also settable in the [{section}] table)")
        for f in fields(cls):
            if f.name in skip:
                continue
            names = [f"--{f.name.replace('_', '-')}"] + ([f"--{f.name}"] if "_" in f.name else [])
            kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
            help_text = f"{f.metadata.get('help', '')} (default: {f.default})"
            if f.type == "bool":
                group.add_argument(*names, action=argparse.BooleanOptionalAction, help=help_text, **kwargs)
                continue
            if f.name == "residual":  # `--residual` alone meant "on" when it was a switch
                kwargs.update(nargs="?", const="on")
            typ = {"int": int, "float": float, "str": str}[f.type]
            if f.name == "threads":
                typ = _threads
            group.add_argument(*names, type=typ, choices=f.metadata.get("choices"), help=help_text, **kwargs)
        if cls is ModelConfig and "residual" not in skip:
            old = {"dest": LEGACY, "default": argparse.SUPPRESS, "action": "store_const", "help": argparse.SUPPRESS}
            group.add_argument("--no-residual", "--no_residual", const="off", **old)
            group.add_argument("--residual-bug", "--residual_bug", const="bug", **old)
            group.add_argument("--no-residual-bug", "--no_residual_bug", const="on", **old)


def _threads(text: str) -> int:
    """--threads N, or --threads auto (-1: the fastest count, measured)."""
    return -1 if text == "auto" else int(text)


def overrides_from_args(args: argparse.Namespace, classes=(ModelConfig, TrainConfig)) -> dict[str, Any]:
    """The config fields the user set on the command line, by field name."""
    names = set().union(*(field_names(c) for c in classes))
    out = {k: v for k, v in vars(args).items() if k in names}
    legacy = getattr(args, LEGACY, None)
    if legacy is not None and "residual" in names:
        warnings.warn(f"--no-residual and --residual-bug are the old spellings of --residual {legacy}", FutureWarning,
                      stacklevel=2)  # fmt: skip
        out.setdefault("residual", legacy)
    return out
