"""Every config field as a flag, spelled both --n-embd and --n_embd; the old residual flags still work.

    add_config_flags(parser)                        # one flag per ModelConfig and TrainConfig field
    overrides = overrides_from_args(args)           # only the flags the user gave, as flat field names
    with recipe_help(argv): parser = build_parser() # `--help --config FILE`: the recipe's values as defaults

Unset flags stay out of the overrides, so a recipe's value is never replaced by a default.
`--no-residual` and `--residual-bug` (from when residual was two switches) map onto
`--residual off|bug` with a deprecation line.

argparse reads the command line in one pass and prints --help as soon as it meets it, so the help
cannot ask what --config says; recipe_help looks for `--config FILE` beside `--help` first, and
while the parser is built, each flag's shown default is the recipe's value where it sets one.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import warnings
from dataclasses import fields
from typing import Any

from bricklm.config import SECTIONS, TABLES, ModelConfig, TrainConfig
from bricklm.fields import field_names
from bricklm.recipes import build, build_configs, merge, read_toml

LEGACY = "_legacy_residual"  # where --no-residual / --residual-bug put their value
# ({table: the recipe's settings}, its path) while a parser is built for `--help --config FILE`; see recipe_help
_RECIPE: contextvars.ContextVar[tuple[dict[str, dict[str, Any]], str]] = contextvars.ContextVar(
    "recipe", default=({}, "")
)


def add_config_flags(
    parser: argparse.ArgumentParser,
    classes=(ModelConfig, TrainConfig),
    skip=(),
    only=None,
    defaults: dict[str, Any] | None = None,
) -> None:
    """One flag per field of classes; a bool field gets --x and --no-x.

    skip: fields to leave out; only: if given, the only fields to offer; defaults: the defaults a command
    uses instead of the dataclass's (finetune's), for the help text.
    """
    recipe, source = _RECIPE.get()
    for cls in classes:
        section = next(name for name, c in TABLES.items() if c is cls)
        table = recipe.get(section, {})
        group = parser.add_argument_group(f"{cls.__name__} (also settable in the [{section}] table)")
        for f in fields(cls):
            if f.name in skip or (only is not None and f.name not in only):
                continue
            names = [f"--{f.name.replace('_', '-')}"] + ([f"--{f.name}"] if "_" in f.name else [])
            kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
            shown = f"{table[f.name]}, from {source}" if f.name in table else (defaults or {}).get(f.name, f.default)
            help_text = f"{f.metadata.get('help', '')} (default: {shown})".replace("%", "%%")
            if f.type == "bool":
                group.add_argument(*names, action=argparse.BooleanOptionalAction, help=help_text, **kwargs)
                continue
            if f.name == "residual":  # `--residual` alone meant "on" when it was a switch
                kwargs.update(nargs="?", const="on")
            typ = {"int": int, "float": float, "str": str}[f.type]
            if f.name == "threads":
                typ = _threads
            if f.metadata.get("metavar"):
                kwargs["metavar"] = f.metadata["metavar"]
            group.add_argument(*names, type=typ, choices=f.metadata.get("choices"), help=help_text, **kwargs)
        if cls is ModelConfig and "residual" not in skip and (only is None or "residual" in only):
            old = {"dest": LEGACY, "default": argparse.SUPPRESS, "action": "store_const", "help": argparse.SUPPRESS}
            group.add_argument("--no-residual", "--no_residual", const="off", **old)
            group.add_argument("--residual-bug", "--residual_bug", const="bug", **old)
            group.add_argument("--no-residual-bug", "--no_residual_bug", const="on", **old)


def add_compile_flag(p) -> None:
    """sample's and chat's --compile (the decode step's; `generate(compiled=...)`)."""
    p.add_argument(
        "--compile",
        action="store_true",
        help="compile the decode step with torch.compile: seconds once, then faster per token; without a C "
        "compiler it says so and decodes eagerly",
    )


@contextlib.contextmanager
def recipe_help(argv: list[str]):
    """While a parser is built inside this block, flags show the recipe's values as their defaults, if argv asks
    for --help with --config FILE (a bad recipe is a UserError, as it would be without --help)."""
    path = _config_path(argv) if {"-h", "--help"} & set(argv) else None
    if path is None:
        yield
        return
    tables = merge(None, path)
    build_configs(tables)  # an unknown key or a bad value is an error here too
    raw = read_toml(path)
    for name, cls in TABLES.items():  # [prepare] and [finetune] too, each its own (their names overlap: seed)
        if name not in SECTIONS:
            tables[name] = raw.get(name, {})
            build(cls, tables[name], name)
    token = _RECIPE.set((tables, path))
    try:
        yield
    finally:
        _RECIPE.reset(token)


def _config_path(argv: list[str]) -> str | None:
    """The FILE of `--config FILE` or `--config=FILE` in argv, if any."""
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def _threads(text: str) -> int:
    """--threads N, or --threads auto (-1: the fastest count, measured)."""
    return -1 if text == "auto" else int(text)


def overrides_from_args(args: argparse.Namespace, classes=(ModelConfig, TrainConfig)) -> dict[str, Any]:
    """The config fields the user set on the command line, by field name."""
    names = set().union(*(field_names(c) for c in classes))
    out = {k: v for k, v in vars(args).items() if k in names}
    legacy = getattr(args, LEGACY, None)
    if legacy is not None and "residual" in names:
        warnings.warn(
            f"--no-residual and --residual-bug are the old spellings of --residual {legacy}",
            FutureWarning,
            stacklevel=2,
        )
        out.setdefault("residual", legacy)
    return out
