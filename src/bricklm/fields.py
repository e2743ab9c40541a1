"""What every setting is made of: a dataclass field carrying its help text and allowed values, and the checks
every config applies to its fields (types, finite numbers, choices).

    n_layer: int = setting(4, "transformer blocks")                      # in a config dataclass
    validate_fields(cfg, "model")                                         # in its validate()
"""

from __future__ import annotations

import math
from dataclasses import field, fields
from typing import Any

from bricklm.errors import UserError


def setting(default, help: str, choices: tuple | None = None, metavar: str | None = None):
    """A dataclass field that carries its flag's help text, allowed values and (optionally) its value's name."""
    return field(default=default, metadata={"help": help, "choices": choices, "metavar": metavar})


def validate_fields(obj, section: str) -> None:
    """Type and choice checks shared by every config (TOML gives us ints, floats, bools and strings)."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        check_type(section, f.name, f.type, value)
        if f.type == "float" and not math.isfinite(value):  # TOML and flags both accept nan and inf
            raise UserError(f"{section}.{f.name} must be a finite number, got {value}")
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise UserError(f"{section}.{f.name} must be one of {', '.join(choices)}; got {value!r}")


def check_type(section: str, name: str, type_name: str, value: Any) -> None:
    # bool is a subclass of int in Python, so `n_layer = true` must be caught explicitly.
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
    }[type_name]
    if not ok:
        raise UserError(f"{section}.{name} must be a {type_name}, got {value!r} ({type(value).__name__})")


def check_types(cls, values: dict[str, Any], section: str) -> None:
    """The type of every value whose key is a field of cls (other keys and ranges are left alone): how a saved
    config is checked, which may hold keys of another bricklm version and values a resume will change."""
    types = {f.name: f.type for f in fields(cls)}
    for key, value in values.items():
        if key in types:
            check_type(section, key, types[key], value)


def field_names(cls) -> set[str]:
    return {f.name for f in fields(cls)}
