"""Recipes and the one settings merge: defaults, then a base (a saved run), then a TOML recipe, then flags.

    model, train = load_config("configs/seed/headline-10m.toml", overrides={"max_iters": 10})
    model, train = resolve(saved_run_config, "more.toml", {"learning_rate": 3e-4})
    prepare_cfg = resolve_table(PrepareConfig, "prepare", None, "recipe.toml", {"split": "tail"})

A TOML recipe has the tables `[model]` and `[train]` (sorted between by field name, so flat flags
like `--n-layer` land in the right one), `[prepare]` and `[finetune]` (read by those commands
alone), and a free-form `[meta]`. Unknown tables and keys, wrong types and impossible values are
`UserError`s that name them. Older spellings (the two residual switches) are read and upgraded here.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import fields
from pathlib import Path
from typing import Any

from bricklm.config import SECTIONS, TABLES, ModelConfig, TrainConfig, section_of
from bricklm.errors import UserError
from bricklm.fields import check_type, field_names

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


# --- older spellings ----------------------------------------------------------------------------


def upgrade_model_table(table: dict[str, Any], quiet: bool = False) -> dict[str, Any]:
    """A [model] table in today's terms: `residual = true/false` and `residual_bug = true` (the old
    two switches) become `residual = "on" | "off" | "bug"`. Saved runs upgrade quietly; a recipe or
    flag that still uses the old keys gets a FutureWarning (the CLI prints it as one line)."""
    old_bug = table.get("residual_bug")
    if "residual_bug" not in table and not isinstance(table.get("residual"), bool):
        return table
    table = dict(table)
    bug = table.pop("residual_bug", False)
    if not isinstance(bug, bool):
        raise UserError(f"model.residual_bug must be a bool, got {bug!r} ({type(bug).__name__})")
    on = table.get("residual", True)
    if isinstance(on, bool):
        table["residual"] = "bug" if bug else ("on" if on else "off")
    elif bug:
        table["residual"] = "bug"
    if not quiet:
        old = "residual_bug = true" if old_bug else f"residual = {str(on).lower()}"
        warnings.warn(f'{old} is the old spelling of residual = "{table["residual"]}"', FutureWarning, stacklevel=3)
    return table


# --- building and merging ------------------------------------------------------------------------


def build(cls, values: dict[str, Any], section: str):
    """Make a config from a dict, naming any unknown key; floats given as ints become floats."""
    if cls is ModelConfig:
        values = upgrade_model_table(values, quiet=True)  # the caller decides whether to warn (resolve)
    unknown = sorted(set(values) - field_names(cls))
    if unknown:
        raise UserError(f"unknown key {section}.{unknown[0]} (known: {', '.join(sorted(field_names(cls)))})")
    types = {f.name: f.type for f in fields(cls)}
    if cls is TrainConfig and values.get("threads") == "auto":
        values = {**values, "threads": -1}
    clean = {}
    for key, value in values.items():
        check_type(section, key, types[key], value)
        clean[key] = float(value) if types[key] == "float" else value
    cfg = cls(**clean)
    cfg.validate()
    return cfg


def read_toml(path: str | Path, extra_tables: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a recipe: {'model': {...}, 'train': {...}, 'meta': {...}}; any other table is an error naming it.

    extra_tables: further top-level keys a caller accepts (a sweep spec's `grid` and `runs`).
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise UserError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:  # TOML files are UTF-8; tomllib lets this one through
        raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise UserError(f"cannot read config {path}: {exc.strerror}") from None
    known = (*TABLES, "meta", *extra_tables)
    for key, value in raw.items():
        if key not in known:
            raise UserError(f"{path}: unknown table [{key}] (known: {', '.join(f'[{k}]' for k in known)})")
        if key in (*TABLES, "meta") and not isinstance(value, dict):
            raise UserError(f"{path}: '{key}' must be a table like [{key}]")
    return raw


def merge(
    base: dict[str, Any] | None = None, recipe: str | Path | None = None, *flat: dict[str, Any], where: str = "flags"
) -> dict[str, dict[str, Any]]:
    """THE settings merge: base tables, then a recipe file's tables, then each flat dict of overrides.

    base: {"model": {...}, "train": {...}} (a saved config.json, a sweep's shared settings, a
    feature's defaults); flat: {"n_layer": 4, "batch_size": 8}, sorted into their sections here
    (an unknown key is an error naming `where`). Returns the merged tables, not yet validated.
    """
    tables = {name: dict((base or {}).get(name) or {}) for name in SECTIONS}
    tables["model"] = upgrade_model_table(tables["model"], quiet=True)  # saved runs: no warning
    if recipe:
        for name, table in read_toml(recipe).items():
            if name in SECTIONS:
                tables[name].update(upgrade_model_table(table) if name == "model" else table)
    for overrides in flat:
        for key, value in overrides.items():
            section = section_of(key)
            if section is None:
                raise UserError(f"{where}: unknown setting {key!r}")
            tables[section][key] = value
        tables["model"] = upgrade_model_table(tables["model"])
    return tables


def build_configs(tables: dict[str, dict[str, Any]]) -> tuple[ModelConfig, TrainConfig]:
    return build(ModelConfig, tables.get("model", {}), "model"), build(TrainConfig, tables.get("train", {}), "train")


def resolve(
    base: dict[str, Any] | None = None, recipe: str | Path | None = None, *flat: dict[str, Any], where: str = "flags"
) -> tuple[ModelConfig, TrainConfig]:
    """merge() then build both configs: defaults < base < recipe < each flat dict in turn."""
    return build_configs(merge(base, recipe, *flat, where=where))


def load_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> tuple[ModelConfig, TrainConfig]:
    """Defaults, then the TOML file, then `overrides` (flat field names, e.g. from flags)."""
    return resolve(None, path, overrides or {})


def to_dict(model: ModelConfig, train: TrainConfig | None = None) -> dict[str, dict[str, Any]]:
    out = {"model": dataclasses.asdict(model)}
    if train is not None:
        out["train"] = dataclasses.asdict(train)
    return out


def resolve_table(
    cls, section: str, base: dict[str, Any] | None = None, recipe: str | Path | None = None, *flat: dict[str, Any]
):
    """One table's settings, merged as model and train are: cls's defaults < base < the recipe's [section] table <
    each flat dict in turn; an unknown key names it, and the result is checked as build() checks every config."""
    values = dict(base or {})
    if recipe:
        values.update(read_toml(recipe).get(section, {}))
    for overrides in flat:
        values.update(overrides)
    return build(cls, values, section)
