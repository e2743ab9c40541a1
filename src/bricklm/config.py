"""Configuration as data: every setting a dataclass field with its default, help text and allowed values.

    ModelConfig    the GPT's shape and switches          [model] table, flags of `train`
    TrainConfig    the optimiser, schedule, evaluation   [train] table, flags of `train`
    PrepareConfig  how `prepare` cleans and splits       [prepare] table, flags of `prepare`
    FinetuneConfig what `finetune` teaches, and how      [finetune] table, flags of `finetune`

Field names are the blog's and nanoGPT's. Each config checks itself (`validate`): types, choices,
ranges, and settings that make no sense together, as `UserError`s naming the key. They are merged
from defaults, a saved run, a TOML recipe and flags in one place: recipes.py. The command line
offers every field as a flag (cli/flags.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from bricklm.errors import UserError

RESIDUAL_MODES = ("on", "off", "bug")
MAX_THREADS = 1024
MAX_LEARNING_RATE = 10.0  # far past divergence; 1e300 overflowed float32 inside AdamW's step (a traceback)
MAX_BPE_VOCAB = 1 << 20  # a vocabulary of 2**32 made the BPE trainer abort the process allocating it
SPLITS = ("documents", "tail")
CODE_MODES = ("drop", "keep")
IMAGE_MODES = ("drop", "alt")
TABLE_MODES = ("keep", "drop")
TITLE_MODES = ("drop", "keep")
TOKENIZERS = ("char", "bpe")
DATE_ORDERS = ("auto", "dmy", "mdy")  # a WhatsApp chat's dates: read from the file, day-first or month-first


def _opt(default, help: str, choices: tuple | None = None, metavar: str | None = None):
    """A dataclass field that carries its flag's help text, allowed values and (optionally) its value's name."""
    return field(default=default, metadata={"help": help, "choices": choices, "metavar": metavar})


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
        "sdpa: fused scaled_dot_product_attention; auto: the kernel measured fastest for this shape here "
        "(the same weights as sdpa); none: no attention (ablation)",
        ("manual", "torch_mha", "sdpa", "auto", "none"),
    )
    positional: str = _opt(
        "learned",
        "position information: learned or sinusoidal, added to the token embedding; rope, rotating queries "
        "and keys; none",
        ("learned", "sinusoidal", "rope", "none"),
    )
    norm: str = _opt(
        "layernorm", "normalisation before each sub-layer and at the end", ("layernorm", "rmsnorm", "none")
    )
    residual: str = _opt(
        "on",
        "residual connections around each sub-layer: on; off (ablation); bug: the blog's 'subtle bug', "
        "x = ln1(x) overwriting the stream it should add to",
        RESIDUAL_MODES,
    )
    activation: str = _opt("gelu", "feed-forward activation (the blog used relu)", ("gelu", "relu", "relu2"))
    tie_weights: bool = _opt(False, "share the token embedding with the output head (the blog: untied)")
    qk_norm: bool = _opt(False, "RMS-normalise each head's queries and keys before attention (sdpa, manual)")
    zero_init: bool = _opt(False, "start the projections into the residual stream at zero (each block the identity)")
    ffn_bias: bool = _opt(True, "biases in the feed-forward layers (the blog: on)")
    head_bias: bool = _opt(True, "a bias in the output head (the blog: on)")

    def __post_init__(self):
        # Python callers of the old API passed residual=True/False; the setting now has three values.
        if isinstance(self.residual, bool):
            self.residual = "on" if self.residual else "off"

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
        if self.positional == "rope" and self.head_size % 2:
            raise UserError(
                f"rope rotates pairs within a head: head size n_embd/n_head must be even, got {self.head_size}"
            )
        for name, on in (("positional = rope", self.positional == "rope"), ("qk_norm", self.qk_norm)):
            if on and self.attention not in ("sdpa", "manual", "auto"):
                raise UserError(f"{name} needs attention sdpa, auto or manual (it changes q, k), not {self.attention}")


@dataclass
class TrainConfig:
    """How to train: the optimiser, the schedule, evaluation and where it runs."""

    batch_size: int = _opt(32, "sequences per step")
    max_iters: int = _opt(600, "optimiser steps")
    learning_rate: float = _opt(2e-3, "peak learning rate")
    min_lr: float = _opt(2e-4, "learning rate at the end of the decay (cosine, wsd)")
    schedule: str = _opt(
        "cosine",
        "cosine: warm-up then cosine decay; wsd: warm-up, stable, then a linear cool-down over the last "
        "cooldown_frac; constant: the blog's fixed rate",
        ("cosine", "wsd", "constant"),
    )
    warmup_iters: int = _opt(50, "linear warm-up steps (cosine, wsd)")
    cooldown_frac: float = _opt(0.2, "wsd: the share of the run spent decaying to min_lr")
    schedule_by_time: bool = _opt(
        False, "with max_seconds: the schedule runs on wall time (the budget's share spent) instead of max_iters"
    )
    optimizer: str = _opt(
        "adamw",
        "adamw; or muon: Muon (orthogonalised momentum) for the blocks' weight matrices, AdamW for the rest",
        ("adamw", "muon"),
    )
    muon_lr: float = _opt(0.0, "Muon's learning rate (0 = learning_rate: Muon's step is scaled to AdamW's size)")
    weight_decay: float = _opt(0.1, "weight decay on matrices (not on biases, norms, embeddings)")
    beta1: float = _opt(0.9, "AdamW beta1")
    beta2: float = _opt(0.99, "AdamW beta2")
    grad_clip: float = _opt(1.0, "clip the gradient norm to this (0 = off)")
    eval_interval: int = _opt(100, "estimate train and val loss every this many steps")
    eval_iters: int = _opt(10, "batches per loss estimate")
    seed: int = _opt(1337, "seed for weights, dropout and batch sampling")
    device: str = _opt("auto", "auto picks cuda, then mps, then cpu", ("auto", "cpu", "cuda", "mps"))
    dtype: str = _opt(
        "float32",
        "float32; bfloat16 autocast (matmuls in bf16, weights in fp32); auto: bfloat16 only where it measures faster",
        ("float32", "bfloat16", "auto"),
    )
    compile: bool = _opt(False, "torch.compile the model (falls back to eager if it cannot)")
    threads: int = _opt(0, "CPU threads for PyTorch (0 = leave PyTorch's default; -1 or auto: the fastest, measured)")
    sample_chars: int = _opt(
        100, "characters sampled at the end of training (like the blog) and, with eval_samples, at every evaluation"
    )
    eval_samples: bool = _opt(
        True, "at every evaluation, write a sample (from a newline, temperature 0.8) to samples.jsonl"
    )
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
        False,
        "at every evaluation, log gradient norms, update ratios, activations and attention entropy per layer "
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
    ema: float = _opt(
        0.0, "decay of a moving average of the weights that is evaluated, sampled and saved (0 = off; e.g. 0.99)"
    )

    def validate(self) -> None:
        _validate_fields(self, "train")
        for name in ("grad_accum", "dist_timeout"):  # distributed.py
            if getattr(self, name) <= 0:
                raise UserError(f"train.{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("batch_size", "eval_interval", "eval_iters", "keep_last", "max_nonfinite_steps"):
            if getattr(self, name) <= 0:
                raise UserError(f"train.{name} must be a positive integer, got {getattr(self, name)}")
        if self.threads < -1:
            raise UserError(f"train.threads must be >= 0, or -1 (auto), got {self.threads}")
        for name in ("max_iters", "warmup_iters", "sample_chars", "early_stop"):
            if getattr(self, name) < 0:
                raise UserError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.learning_rate <= MAX_LEARNING_RATE:
            raise UserError(f"train.learning_rate must be > 0 and <= {MAX_LEARNING_RATE:g}, got {self.learning_rate}")
        for name in ("min_lr", "weight_decay", "grad_clip", "max_seconds", "target_val_loss", "muon_lr"):
            if getattr(self, name) < 0:
                raise UserError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("beta1", "beta2", "ema"):
            if not 0 <= getattr(self, name) < 1:
                raise UserError(f"train.{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0 < self.cooldown_frac <= 1:
            raise UserError(f"train.cooldown_frac must be in (0, 1], got {self.cooldown_frac}")
        if self.schedule_by_time and not self.max_seconds:
            raise UserError("train.schedule_by_time follows the time budget: set max_seconds too")
        if not 0 <= self.seed < 2**32:  # NumPy's seeds are 32-bit
            raise UserError(f"train.seed must be in 0..{2**32 - 1}, got {self.seed}")
        if self.threads > MAX_THREADS:  # PyTorch would try to start them all
            raise UserError(f"train.threads must be -1..{MAX_THREADS}, got {self.threads}")
        parse_loss_levels(self.loss_levels)  # a UserError naming the bad value
        # Settings taken together: each may be fine alone and still make no sense beside another.
        if self.learning_rate * self.weight_decay > 1:  # AdamW scales weights by 1 - lr * decay each step
            raise UserError(
                f"train.weight_decay ({self.weight_decay:g}) times train.learning_rate ({self.learning_rate:g}) is "
                "above 1: each step would flip the weights' sign instead of decaying them; lower --weight-decay"
            )
        if self.schedule in ("cosine", "wsd") and self.min_lr > self.learning_rate:
            raise UserError(
                f"train.min_lr ({self.min_lr:g}) is above train.learning_rate ({self.learning_rate:g}): the "
                f"{self.schedule} schedule would raise the rate instead of decaying it; give --min-lr at most "
                f"{self.learning_rate:g} (or --schedule constant)"
            )


@dataclass
class PrepareConfig:
    """How `bricklm prepare` cleans writing, holds some out and tokenizes it."""

    split: str = _opt(
        "documents",
        "documents: hold out whole documents, picked by seed; tail: hold out the end of the text, like the blog",
        SPLITS,
    )
    val_fraction: float = _opt(0.1, "share of the text held out for validation")
    seed: int = _opt(1337, "seed for picking held-out documents")
    code: str = _opt("drop", "drop or keep fenced code and highlight blocks", CODE_MODES)
    images: str = _opt("drop", "drop images or keep their alt text", IMAGE_MODES)
    tables: str = _opt("keep", "keep tables as one line per row, cells separated by commas, or drop them", TABLE_MODES)
    titles: str = _opt(
        "drop",
        "drop each document's title (front matter title:, a WordPress post's title, a notebook's first heading), "
        "as the blog did, or keep it as the document's first line",
        TITLE_MODES,
    )
    include_drafts: bool = _opt(False, "also read a WordPress export's drafts, pending, scheduled and private posts")
    comments: bool = _opt(False, "also read a WordPress export's approved reader comments, after their post")
    tokenizer: str = _opt(
        "char",
        "char: one token per character, like the blog; bpe: byte-level BPE trained on the corpus",
        TOKENIZERS,
    )
    vocab_size: int = _opt(4096, "most tokens the BPE vocabulary may have, at least 256 (tokenizer = bpe only)")
    archive_max_member_mb: int = _opt(1024, "refuse a zip with a member that inflates past this many MB (a zip bomb)")
    archive_max_ratio: int = _opt(
        100, "refuse a zip with a member that inflates past this many times its compressed size, once past 1 MB"
    )
    json_max_mb: int = _opt(256, "largest JSON export read whole (a notebook, a Ghost export), in MB")
    date_order: str = _opt("auto", "a WhatsApp chat's dates: auto (a day above 12 decides), dmy or mdy", DATE_ORDERS)

    def validate(self) -> None:
        _validate_fields(self, "prepare")
        for name in ("archive_max_member_mb", "archive_max_ratio", "json_max_mb"):
            if getattr(self, name) < 1:
                raise UserError(f"prepare.{name} must be at least 1, not {getattr(self, name)}")
        if not 0 < self.val_fraction <= 0.5:
            raise UserError(f"prepare.val_fraction must be more than 0 and at most 0.5, not {self.val_fraction}")
        if self.tokenizer == "bpe" and self.vocab_size < 256:
            raise UserError(
                f"--vocab-size must be at least 256 for byte-level BPE (one token per byte), not {self.vocab_size}"
            )
        if self.tokenizer == "bpe" and self.vocab_size > MAX_BPE_VOCAB:
            raise UserError(f"--vocab-size must be at most {MAX_BPE_VOCAB:,} for byte-level BPE, not {self.vocab_size}")


BUILTIN_DATA = "builtin:python-docs-qa"  # finetune's conversations when no file is given (finetune/conversations.py)
UNKNOWN_CHARS = ("add", "drop")
# The train settings a fine-tune starts from instead of TrainConfig's defaults (a recipe's [train] table and flags
# still win): fewer steps, a gentler rate, smaller batches, frequent evaluation (a few hundred conversations
# overfit within ~50 steps; the best checkpoint is kept). Here, beside FinetuneConfig, because they depend on
# it (lora_rank) and `finetune --help` shows them.
FINETUNE_TRAIN_DEFAULTS: dict[str, Any] = {
    "max_iters": 200,
    "learning_rate": 1e-4,
    "min_lr": 1e-5,
    "warmup_iters": 10,
    "eval_interval": 25,
    "batch_size": 16,
    "sample_chars": 0,
}
# LoRA trains few parameters from a zero update: it wants a larger rate (as in the LoRA paper).
LORA_TRAIN_DEFAULTS: dict[str, Any] = {"learning_rate": 1e-3, "min_lr": 1e-4}


@dataclass
class FinetuneConfig:
    """What `bricklm finetune` teaches a pretrained run and how: the conversations, LoRA, new characters."""

    data: str = _opt(
        BUILTIN_DATA,
        f"conversations: a JSONL file, one conversation a line, a chat export (WhatsApp, Telegram, ChatGPT; with "
        f"--me), or {BUILTIN_DATA} (the built-in Q&A set)",
        metavar="FILE",
    )
    lora_rank: int = _opt(
        0,
        "train LoRA adapters of this rank, at most n_embd, instead of all weights (0: a full fine-tune); the "
        f"learning rate then defaults to {LORA_TRAIN_DEFAULTS['learning_rate']:g}",
    )
    lora_alpha: float = _opt(0.0, "LoRA scale numerator: updates are scaled by alpha/rank (0: 2 x lora_rank)")
    unknown_chars: str = _opt(
        "add",
        "characters of the conversations the pretrained vocabulary lacks: add them as new tokens, or drop them",
        UNKNOWN_CHARS,
    )
    heldout_fraction: float = _opt(
        0.1, "share of a data file's conversations held out for the val loss (the built-in set has its own)"
    )
    me: str = _opt(
        "", "a chat export's owner: their messages become the assistant's turns (ChatGPT: user)", metavar="NAME"
    )
    gap_hours: float = _opt(6.0, "a chat export is cut into conversations at silences longer than this")
    date_order: str = _opt("auto", "a WhatsApp chat's dates: auto (a day above 12 decides), dmy or mdy", DATE_ORDERS)

    @property
    def alpha(self) -> float:
        """LoRA's scale numerator as used: lora_alpha, or 2 x lora_rank where lora_alpha is 0."""
        return float(self.lora_alpha or 2 * self.lora_rank)

    def train_defaults(self) -> dict[str, Any]:
        """The train settings this fine-tune starts from where they differ from TrainConfig's defaults."""
        return {**FINETUNE_TRAIN_DEFAULTS, **(LORA_TRAIN_DEFAULTS if self.lora_rank else {})}

    def validate(self) -> None:
        alpha = self.lora_alpha  # before the generic checks, so that nan gets this rule (0 means 2 x rank)
        if isinstance(alpha, (int, float)) and not (math.isfinite(alpha) and alpha >= 0):
            raise UserError(
                f"--lora-alpha must be a finite number > 0 (0: 2 x rank), got {alpha} (finetune.lora_alpha)"
            )
        _validate_fields(self, "finetune")
        if self.lora_rank < 0:
            raise UserError(f"finetune.lora_rank must be >= 0, got {self.lora_rank}")
        if self.lora_alpha and not self.lora_rank:
            raise UserError(
                "--lora-alpha applies only to LoRA: give --lora-rank too (finetune.lora_alpha needs lora_rank)"
            )
        if not 0 < self.heldout_fraction < 1:
            raise UserError(f"finetune.heldout_fraction must be between 0 and 1, got {self.heldout_fraction}")
        if not self.gap_hours > 0:
            raise UserError(f"finetune.gap_hours must be more than 0, got {self.gap_hours}")
        if not self.data.strip():
            raise UserError(f"finetune.data must name a JSONL file of conversations, or {BUILTIN_DATA}")


SECTIONS: dict[str, type] = {"model": ModelConfig, "train": TrainConfig}  # the tables `train`'s flat flags fill
# every table a recipe may hold (and [meta])
TABLES: dict[str, type] = {**SECTIONS, "prepare": PrepareConfig, "finetune": FinetuneConfig}


def parse_loss_levels(text: str) -> list[float]:
    """'4.0,3.0,2.5' -> [4.0, 3.0, 2.5] (sorted high to low); '' -> []."""
    levels = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise UserError(
                f"train.loss_levels must be comma-separated numbers like '4.0,3.0,2.5', got {text!r}"
            ) from None
        if not value > 0:
            raise UserError(f"train.loss_levels must be positive, got {value}")
        levels.append(value)
    return sorted(set(levels), reverse=True)


def _validate_fields(obj, section: str) -> None:
    """Type and choice checks shared by both configs (TOML gives us ints, floats, bools and strings)."""
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


LEGACY_MODEL_KEYS = ("residual_bug",)  # older spellings recipes.upgrade_model_table reads


def section_of(key: str) -> str | None:
    """'n_layer' -> 'model', 'batch_size' -> 'train'; None for an unknown key (old spellings included)."""
    if key in LEGACY_MODEL_KEYS:
        return "model"
    return next((name for name, cls in SECTIONS.items() if key in field_names(cls)), None)
