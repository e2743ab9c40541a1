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
from dataclasses import dataclass
from typing import Any

from bricklm.errors import UserError
from bricklm.fields import field_names, setting, validate_fields

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
PREPARE_UNKNOWN_CHARS = ("add", "drop", "error")  # characters a reused tokenizer lacks (prepare --tokenizer-from)
DATE_ORDERS = ("auto", "dmy", "mdy")  # a WhatsApp chat's dates: read from the file, day-first or month-first


@dataclass
class ModelConfig:
    """The GPT's shape and its switches for every block the blog experiments with."""

    vocab_size: int = setting(0, "number of tokens; taken from the corpus's tokenizer when 0")
    block_size: int = setting(128, "context window: tokens the model reads to predict the next one")
    n_layer: int = setting(4, "transformer blocks")
    n_head: int = setting(4, "attention heads per block")
    n_embd: int = setting(128, "embedding width (d_model)")
    dropout: float = setting(0.0, "dropout probability")
    bias: bool = setting(False, "biases in the attention projections (the blog: off)")
    attention: str = setting(
        "auto",
        "manual: per-head, written out; torch_mha: nn.MultiheadAttention; "
        "sdpa: fused scaled_dot_product_attention; auto: the kernel measured fastest for this shape here "
        "(the same weights and maths as sdpa: `bricklm tune` shows the choice); none: no attention (ablation)",
        ("manual", "torch_mha", "sdpa", "auto", "none"),
    )
    positional: str = setting(
        "learned",
        "position information: learned or sinusoidal, added to the token embedding; rope, rotating queries "
        "and keys; none",
        ("learned", "sinusoidal", "rope", "none"),
    )
    norm: str = setting(
        "layernorm", "normalisation before each sub-layer and at the end", ("layernorm", "rmsnorm", "none")
    )
    residual: str = setting(
        "on",
        "residual connections around each sub-layer: on; off (ablation); bug: the blog's 'subtle bug', "
        "x = ln1(x) overwriting the stream it should add to",
        RESIDUAL_MODES,
    )
    activation: str = setting(
        "gelu",
        "feed-forward activation (the blog used relu); swiglu: silu(gate) * up, gated as in Llama and Qwen3, with "
        "a hidden width of round(8 * n_embd / 3) so the feed-forward keeps the parameters of the 4x ungated one",
        ("gelu", "relu", "relu2", "swiglu"),
    )
    tie_weights: bool = setting(False, "share the token embedding with the output head (the blog: untied)")
    qk_norm: bool = setting(False, "RMS-normalise each head's queries and keys before attention (sdpa, manual)")
    zero_init: bool = setting(False, "start the projections into the residual stream at zero (each block the identity)")
    ffn_bias: bool = setting(True, "biases in the feed-forward layers (the blog: on)")
    head_bias: bool = setting(True, "a bias in the output head (the blog: on)")

    def __post_init__(self):
        # Python callers of the old API passed residual=True/False; the setting now has three values.
        if isinstance(self.residual, bool):
            self.residual = "on" if self.residual else "off"

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    def validate(self) -> None:
        validate_fields(self, "model")
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

    batch_size: int = setting(32, "sequences per step")
    max_iters: int = setting(600, "optimiser steps")
    learning_rate: float = setting(2e-3, "peak learning rate")
    min_lr: float = setting(2e-4, "learning rate at the end of the decay (cosine, wsd)")
    schedule: str = setting(
        "cosine",
        "cosine: warm-up then cosine decay; wsd: warm-up, stable, then a linear cool-down over the last "
        "cooldown_frac; constant: the blog's fixed rate",
        ("cosine", "wsd", "constant"),
    )
    warmup_iters: int = setting(50, "linear warm-up steps (cosine, wsd)")
    cooldown_frac: float = setting(0.2, "wsd: the share of the run spent decaying to min_lr")
    schedule_by_time: bool = setting(
        False, "with max_seconds: the schedule runs on wall time (the budget's share spent) instead of max_iters"
    )
    optimizer: str = setting(
        "adamw",
        "adamw; or muon: Muon (orthogonalised momentum) for the blocks' weight matrices, AdamW for the rest",
        ("adamw", "muon"),
    )
    muon_lr: float = setting(0.0, "Muon's learning rate (0 = learning_rate: Muon's step is scaled to AdamW's size)")
    weight_decay: float = setting(0.1, "weight decay on matrices (not on biases, norms, embeddings)")
    beta1: float = setting(0.9, "AdamW beta1")
    beta2: float = setting(0.99, "AdamW beta2")
    grad_clip: float = setting(1.0, "clip the gradient norm to this (0 = off)")
    eval_interval: int = setting(100, "estimate train and val loss every this many steps")
    eval_iters: int = setting(10, "batches per loss estimate")
    seed: int = setting(1337, "seed for weights, dropout and batch sampling")
    device: str = setting("auto", "auto picks cuda, then mps, then cpu", ("auto", "cpu", "cuda", "mps"))
    dtype: str = setting(
        "auto",
        "float32; bfloat16 autocast (matmuls in bf16, weights in fp32); auto: bfloat16 only where it measures faster "
        "for this shape here (its val loss stayed inside float32's seed spread: docs/performance.md)",
        ("float32", "bfloat16", "auto"),
    )
    compile: bool = setting(False, "torch.compile the model (falls back to eager if it cannot)")
    threads: int = setting(
        -1, "CPU threads for PyTorch (-1 or auto: the fastest count, measured; 0 = leave PyTorch's default)"
    )
    sample_chars: int = setting(
        100, "characters sampled at the end of training (like the blog) and, with eval_samples, at every evaluation"
    )
    eval_samples: bool = setting(
        True, "at every evaluation, write a sample (from a newline, temperature 0.8) to samples.jsonl"
    )
    grad_accum: int = setting(1, "micro-batches of batch_size per optimiser step, per process (gradient accumulation)")
    dist_timeout: int = setting(300, "under torchrun: seconds to wait for the other processes before failing")
    fsdp: bool = setting(False, "under torchrun: shard weights, gradients and AdamW state over the processes (FSDP2)")
    keep_last: int = setting(2, "complete checkpoints kept besides the best one (at least 1)")
    max_nonfinite_steps: int = setting(
        5, "stop after this many steps in a row whose loss or gradient norm is not finite (each one is skipped)"
    )
    memory_check: bool = setting(
        True, "refuse a model whose estimated training memory exceeds what is free (--no-memory-check: try anyway)"
    )
    early_stop: int = setting(
        0, "stop when val loss hasn't improved for this many evaluations; the best checkpoint is kept (0 = off)"
    )
    loss_levels: str = setting(
        "4.0,3.0,2.5,2.0,1.6",
        "val-loss thresholds; a snapshot is kept in RUN/snapshots/ when val first drops below each ('' = off)",
    )
    log_health: bool = setting(
        False,
        "at every evaluation, log gradient norms, update ratios, activations and attention entropy per layer "
        "to metrics.jsonl (see `bricklm inspect`)",
    )
    eval_full: bool = setting(
        False, "val loss over the whole val split (every target scored once) instead of eval_iters random batches"
    )
    max_seconds: float = setting(
        0.0, "stop at an evaluation once this much wall time has passed since the first step (0 = no limit)"
    )
    target_val_loss: float = setting(0.0, "stop at the first evaluation whose val loss is at or below this (0 = off)")
    recompute_activations: bool = setting(
        False, "keep only each block's input and recompute the rest in backward: far less memory, ~1/3 more compute"
    )
    recompute_attention: bool = setting(
        False,
        "keep attention's q, k, v (and dropout's mask, as bytes) and recompute its T x T probabilities in backward, "
        "instead of keeping them: the same numbers; the blog's 10M model peaked at 3.3 instead of 4.3 GB in float32 "
        "(2.2 instead of 2.5 in bf16) for ~10% more time",
    )
    adamw: str = setting(
        "auto",
        "AdamW implementation: auto (fused on CUDA), fused, foreach, plain",
        ("auto", "fused", "foreach", "plain"),
    )
    ema: float = setting(
        0.0, "decay of a moving average of the weights that is evaluated, sampled and saved (0 = off; e.g. 0.99)"
    )
    copy_index: bool = setting(
        True,
        "at the start, index the training text in RUN/copying for the copying meter of sample and memorization "
        "(on disk: about 5 bytes per byte of training text; without it they build it on first use)",
    )

    def validate(self) -> None:
        validate_fields(self, "train")
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

    split: str = setting(
        "documents",
        "documents: hold out whole documents, picked by seed; tail: hold out the end of the text, like the blog",
        SPLITS,
    )
    val_fraction: float = setting(0.1, "share of the text held out for validation")
    seed: int = setting(1337, "seed for picking held-out documents")
    code: str = setting("drop", "drop or keep fenced code and highlight blocks", CODE_MODES)
    images: str = setting("drop", "drop images or keep their alt text", IMAGE_MODES)
    tables: str = setting(
        "keep", "keep tables as one line per row, cells separated by commas, or drop them", TABLE_MODES
    )
    titles: str = setting(
        "drop",
        "drop each document's title (front matter title:, a WordPress post's title, a notebook's first heading), "
        "as the blog did, or keep it as the document's first line",
        TITLE_MODES,
    )
    include_drafts: bool = setting(False, "also read a WordPress export's drafts, pending, scheduled and private posts")
    comments: bool = setting(False, "also read a WordPress export's approved reader comments, after their post")
    tokenizer: str = setting(
        "char",
        "char: one token per character, like the blog; bpe: byte-level BPE trained on the corpus",
        TOKENIZERS,
    )
    vocab_size: int = setting(4096, "most tokens the BPE vocabulary may have, at least 256 (tokenizer = bpe only)")
    tokenizer_from: str = setting(
        "",
        "reuse this run's (or corpus's, or file's) tokenizer.json instead of building one, so that `train "
        "--init-from RUN` can continue RUN on this writing (tokenizer and vocab_size are then RUN's)",
        metavar="RUN",
    )
    unknown_chars: str = setting(
        "add",
        "with tokenizer_from: characters the reused tokenizer lacks are added as new tokens after its own, "
        "dropped from the token files, or an error (byte-level BPE lacks none)",
        PREPARE_UNKNOWN_CHARS,
    )
    archive_max_member_mb: int = setting(
        1024, "refuse a zip with a member that inflates past this many MB (a zip bomb)"
    )
    archive_max_ratio: int = setting(
        100, "refuse a zip with a member that inflates past this many times its compressed size, once past 1 MB"
    )
    json_max_mb: int = setting(256, "largest JSON export read whole (a notebook, a Ghost export), in MB")
    date_order: str = setting("auto", "a WhatsApp chat's dates: auto (a day above 12 decides), dmy or mdy", DATE_ORDERS)

    def validate(self) -> None:
        validate_fields(self, "prepare")
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

    data: str = setting(
        BUILTIN_DATA,
        f"conversations: a JSONL file, one conversation a line, a chat export (WhatsApp, Telegram, ChatGPT; with "
        f"--me), or {BUILTIN_DATA} (the built-in Q&A set)",
        metavar="FILE",
    )
    lora_rank: int = setting(
        0,
        "train LoRA adapters of this rank, at most n_embd, instead of all weights (0: a full fine-tune); the "
        f"learning rate then defaults to {LORA_TRAIN_DEFAULTS['learning_rate']:g}",
    )
    lora_alpha: float = setting(0.0, "LoRA scale numerator: updates are scaled by alpha/rank (0: 2 x lora_rank)")
    unknown_chars: str = setting(
        "add",
        "characters of the conversations the pretrained vocabulary lacks: add them as new tokens, or drop them",
        UNKNOWN_CHARS,
    )
    heldout_fraction: float = setting(
        0.1, "share of a data file's conversations held out for the val loss (the built-in set has its own)"
    )
    me: str = setting(
        "", "a chat export's owner: their messages become the assistant's turns (ChatGPT: user)", metavar="NAME"
    )
    gap_hours: float = setting(6.0, "a chat export is cut into conversations at silences longer than this")
    date_order: str = setting("auto", "a WhatsApp chat's dates: auto (a day above 12 decides), dmy or mdy", DATE_ORDERS)

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
        validate_fields(self, "finetune")
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


LEGACY_MODEL_KEYS = ("residual_bug",)  # older spellings recipes.upgrade_model_table reads


def section_of(key: str) -> str | None:
    """'n_layer' -> 'model', 'batch_size' -> 'train'; None for an unknown key (old spellings included)."""
    if key in LEGACY_MODEL_KEYS:
        return "model"
    return next((name for name, cls in SECTIONS.items() if key in field_names(cls)), None)
