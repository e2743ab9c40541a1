"""Configuration as data: dataclasses with defaults, a TOML file, flags that override it.

A TOML recipe has up to two tables, `[model]` and `[train]`, whose keys are the
field names below (the blog's and nanoGPT's names). Every field is also a flag:
`--n-embd 128` or `--n_embd 128`; flags override the file. Unknown keys, wrong
types and impossible values are `UserError`s that name the key.

    model, train = load_config("configs/seed/headline-10m.toml", overrides={"max_iters": 10})
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from bricklm.errors import UserError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


def _opt(default, help: str, choices: tuple | None = None):
    """A dataclass field that carries its flag's help text and allowed values."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class ModelConfig:
    """The GPT's shape and its switches for every block the blog experiments with."""

    vocab_size: int = _opt(0, "number of tokens; taken from the corpus's tokenizer when 0")
    block_size: int = _opt(128, "context window: tokens the model reads to predict the next one")
    n_layer: int = _opt(4, "transformer blocks")
    n_head: int = _opt(4, "attention heads per block")
    n_embd: int = _opt(128, "embedding width (d_model)")
    dropout: float = _opt(0.0, "dropout probability")
    bias: bool = _opt(False, "biases in the attention projections (the blog: off)")
    attention: str = _opt(
        "sdpa",
        "manual: per-head, written out; torch_mha: nn.MultiheadAttention; "
        "sdpa: fused scaled_dot_product_attention; none: no attention (ablation)",
        ("manual", "torch_mha", "sdpa", "none"),
    )
    positional: str = _opt(
        "learned", "position information added to the token embedding", ("learned", "sinusoidal", "none")
    )
    norm: str = _opt("layernorm", "normalisation before each sub-layer and at the end", ("layernorm", "none"))
    residual: bool = _opt(True, "residual connections around each sub-layer")
    residual_bug: bool = _opt(False, "the blog's 'subtle bug': x = ln1(x) overwrites the residual stream")
    activation: str = _opt("gelu", "feed-forward activation (the blog used relu)", ("gelu", "relu"))
    tie_weights: bool = _opt(False, "share the token embedding with the output head (the blog: untied)")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    def validate(self) -> None:
        _validate_fields(self, "model")
        for name in ("block_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) <= 0:
                raise UserError(f"model.{name} must be a positive integer, got {getattr(self, name)}")
        if self.vocab_size < 0:
            raise UserError(f"model.vocab_size must be >= 0, got {self.vocab_size}")
        if self.n_embd % self.n_head:
            raise UserError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}) so every head gets the same size"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if self.positional == "sinusoidal" and self.n_embd % 2:
            raise UserError(f"sinusoidal positions need an even n_embd, got {self.n_embd}")


@dataclass
class TrainConfig:
    """How to train: the optimiser, the schedule, evaluation and where it runs."""

    batch_size: int = _opt(32, "sequences per step")
    max_iters: int = _opt(600, "optimiser steps")
    learning_rate: float = _opt(2e-3, "peak learning rate")
    min_lr: float = _opt(2e-4, "learning rate at the end of the cosine decay")
    schedule: str = _opt(
        "cosine", "cosine: warmup then cosine decay; constant: the blog's fixed rate", ("cosine", "constant")
    )
    warmup_iters: int = _opt(50, "linear warm-up steps (cosine schedule)")
    weight_decay: float = _opt(0.1, "AdamW weight decay on matrices (not on biases, norms, embeddings)")
    beta1: float = _opt(0.9, "AdamW beta1")
    beta2: float = _opt(0.99, "AdamW beta2")
    grad_clip: float = _opt(1.0, "clip the gradient norm to this (0 = off)")
    eval_interval: int = _opt(100, "estimate train and val loss every this many steps")
    eval_iters: int = _opt(10, "batches per loss estimate")
    seed: int = _opt(1337, "seed for weights, dropout and batch sampling")
    device: str = _opt("auto", "auto picks cuda, then mps, then cpu", ("auto", "cpu", "cuda", "mps"))
    dtype: str = _opt(
        "float32", "float32, or bfloat16 autocast (matmuls in bf16, weights in fp32)", ("float32", "bfloat16")
    )
    compile: bool = _opt(False, "torch.compile the model (falls back to eager if it cannot)")
    threads: int = _opt(0, "CPU threads for PyTorch (0 = leave PyTorch's default)")
    sample_chars: int = _opt(100, "characters sampled at the end of training, like the blog")
    grad_accum: int = _opt(1, "micro-batches of batch_size per optimiser step, per process (gradient accumulation)")
    dist_timeout: int = _opt(300, "under torchrun: seconds to wait for the other processes before failing")
    fsdp: bool = _opt(False, "under torchrun: shard weights, gradients and AdamW state over the processes (FSDP2)")
    keep_last: int = _opt(2, "complete checkpoints kept besides the best one (at least 1)")
    max_nonfinite_steps: int = _opt(
        5, "stop after this many steps in a row whose loss or gradient norm is not finite (each one is skipped)"
    )
    memory_check: bool = _opt(
        True, "refuse a model whose estimated training memory exceeds what is free (--no-memory-check: try anyway)"
    )
    early_stop: int = _opt(
        0, "stop when val loss hasn't improved for this many evaluations; the best checkpoint is kept (0 = off)"
    )
    loss_levels: str = _opt(
        "4.0,3.0,2.5,2.0,1.6",
        "val-loss thresholds; a snapshot is kept in RUN/snapshots/ when val first drops below each ('' = off)",
    )
    log_health: bool = _opt(
        False, "at every evaluation, log gradient norms, update ratios, activations and attention entropy per layer "
        "to metrics.jsonl (see `bricklm inspect`)",
    )
    eval_full: bool = _opt(
        False, "val loss over the whole val split (every target scored once) instead of eval_iters random batches"
    )
    max_seconds: float = _opt(
        0.0, "stop at an evaluation once this much wall time has passed since the first step (0 = no limit)"
    )
    target_val_loss: float = _opt(0.0, "stop at the first evaluation whose val loss is at or below this (0 = off)")
    recompute_activations: bool = _opt(
        False, "keep only each block's input and recompute the rest in backward: far less memory, ~1/3 more compute"
    )
    adamw: str = _opt(
        "auto",
        "AdamW implementation: auto (fused on CUDA), fused, foreach, plain",
        ("auto", "fused", "foreach", "plain"),
    )

    def validate(self) -> None:
        _validate_fields(self, "train")
        for name in ("grad_accum", "dist_timeout"):  # distributed.py
            if getattr(self, name) <= 0:
                raise UserError(f"train.{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("batch_size", "eval_interval", "eval_iters", "keep_last", "max_nonfinite_steps"):
            if getattr(self, name) <= 0:
                raise UserError(f"train.{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("max_iters", "warmup_iters", "threads", "sample_chars", "early_stop"):
            if getattr(self, name) < 0:
                raise UserError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise UserError(f"train.learning_rate must be > 0, got {self.learning_rate}")
        for name in ("min_lr", "weight_decay", "grad_clip", "max_seconds", "target_val_loss"):
            if getattr(self, name) < 0:
                raise UserError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise UserError(f"train.{name} must be in [0, 1), got {getattr(self, name)}")
        from bricklm.callbacks import parse_loss_levels

        parse_loss_levels(self.loss_levels)  # a UserError naming the bad value


SECTIONS: dict[str, type] = {"model": ModelConfig, "train": TrainConfig}


def _validate_fields(obj, section: str) -> None:
    """Type and choice checks shared by both configs (TOML gives us ints, floats, bools and strings)."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        _check_type(section, f.name, f.type, value)
        if f.type == "float" and not math.isfinite(value):  # TOML and flags both accept nan and inf
            raise UserError(f"{section}.{f.name} must be a finite number, got {value}")
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise UserError(f"{section}.{f.name} must be one of {', '.join(choices)}; got {value!r}")


def _check_type(section: str, name: str, type_name: str, value: Any) -> None:
    # bool is a subclass of int in Python, so `n_layer = true` must be caught explicitly.
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
    }[type_name]
    if not ok:
        raise UserError(f"{section}.{name} must be a {type_name}, got {value!r} ({type(value).__name__})")


def field_names(cls) -> set[str]:
    return {f.name for f in fields(cls)}


def build(cls, values: dict[str, Any], section: str):
    """Make a config from a dict, naming any unknown key; floats given as ints become floats."""
    unknown = sorted(set(values) - field_names(cls))
    if unknown:
        raise UserError(f"unknown key {section}.{unknown[0]} (known: {', '.join(sorted(field_names(cls)))})")
    types = {f.name: f.type for f in fields(cls)}
    clean = {}
    for key, value in values.items():
        _check_type(section, key, types[key], value)
        clean[key] = float(value) if types[key] == "float" else value
    cfg = cls(**clean)
    cfg.validate()
    return cfg


def read_toml(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read a recipe: {'model': {...}, 'train': {...}}; anything else is an error naming it."""
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
    out: dict[str, dict[str, Any]] = {}
    for key, value in raw.items():
        if key not in SECTIONS and key != "meta":
            raise UserError(f"{path}: unknown table [{key}] (known: [model], [train], [meta])")
        if not isinstance(value, dict):
            raise UserError(f"{path}: '{key}' must be a table like [{key}]")
        out[key] = value
    return out


def load_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> tuple[ModelConfig, TrainConfig]:
    """Defaults, then the TOML file, then `overrides` (flat field names, e.g. from flags)."""
    tables = read_toml(path) if path else {}
    values = {name: dict(tables.get(name, {})) for name in SECTIONS}
    for key, value in (overrides or {}).items():
        section = "model" if key in field_names(ModelConfig) else "train"
        if key not in field_names(SECTIONS[section]):
            raise UserError(f"unknown setting {key}")
        values[section][key] = value
    return build(ModelConfig, values["model"], "model"), build(TrainConfig, values["train"], "train")


def to_dict(model: ModelConfig, train: TrainConfig | None = None) -> dict[str, dict[str, Any]]:
    out = {"model": dataclasses.asdict(model)}
    if train is not None:
        out["train"] = dataclasses.asdict(train)
    return out


# --- flags -------------------------------------------------------------------------------


def add_config_flags(parser: argparse.ArgumentParser, classes=(ModelConfig, TrainConfig), skip=()) -> None:
    """One flag per field, spelled both --n-embd and --n_embd; unset flags stay out of the overrides."""
    for cls in classes:
        group = parser.add_argument_group(f"{cls.__name__} (also settable in the [{_section(cls)}] table)")
        for f in fields(cls):
            if f.name in skip:
                continue
            names = [f"--{f.name.replace('_', '-')}"] + ([f"--{f.name}"] if "_" in f.name else [])
            kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
            help_text = f"{f.metadata.get('help', '')} (default: {f.default})"
            if f.type == "bool":
                group.add_argument(*names, action=argparse.BooleanOptionalAction, help=help_text, **kwargs)
            else:
                typ = {"int": int, "float": float, "str": str}[f.type]
                group.add_argument(*names, type=typ, choices=f.metadata.get("choices"), help=help_text, **kwargs)


def overrides_from_args(args: argparse.Namespace, classes=(ModelConfig, TrainConfig)) -> dict[str, Any]:
    names = set().union(*(field_names(c) for c in classes))
    return {k: v for k, v in vars(args).items() if k in names}


def _section(cls) -> str:
    return next(name for name, c in SECTIONS.items() if c is cls)
