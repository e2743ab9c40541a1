"""Supervised fine-tuning: a pretrained run + conversations → a run that answers in the chat template.

    result, run_dir = finetune(source="runs/pydocs")                       # the built-in Q&A set
    result, run_dir = finetune(source="runs/blog", data="chats.jsonl", lora_rank=8)
    result, run_dir = finetune(resume="runs/pydocs-chat", overrides={"max_iters": 600})

What happens, in order:
1. The pretrained run's best weights and tokenizer are loaded. The tokenizer becomes a
   ChatTokenizer: the same ids, then the special tokens (and, with unknown_chars="add", any
   character of the conversations the base vocabulary lacks). The model gains one row per new
   token in `tok_emb` and `head` (weight and bias), initialised to the mean of the existing rows
   so the pretrained predictions barely move; every existing row is kept exactly.
2. The conversations become a ConversationDataset (data.py): assistant tokens are the only targets.
3. Training is train.py's Trainer, handed that dataset: same run directory, metrics, plot,
   checkpoints and resume. The run's config.json gains a "finetune" table (these settings).
4. With lora_rank R the transformer blocks are frozen and adapted by LoRA (lora.py); tok_emb and
   head train in full because their new rows must be learned. Checkpoints hold merged plain
   weights in model.safetensors (so sample, info and chat load them like any run) and the
   adapters plus frozen base weights in state.safetensors (so resume continues exactly).
5. At the end, the best weights answer the first held-out question; summary.json keeps the
   question, the reply and the expected answer under "heldout_reply", and the console shows them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from bricklm.config import ModelConfig, TrainConfig, field_names
from bricklm.errors import UserError
from bricklm.files import atomic_write_json
from bricklm.finetune.chat import Chat
from bricklm.finetune.conversations import (
    builtin_conversations,
    load_conversations,
    missing_chars,
    split_heldout,
)
from bricklm.finetune.data import ConversationDataset
from bricklm.finetune.lora import LoRAWeights, apply_lora
from bricklm.model.gpt import GPT
from bricklm.recipes import build, merge
from bricklm.storage.runs import load_run, read_run_config
from bricklm.text.tokenizer import SPECIALS, ChatTokenizer, load_tokenizer
from bricklm.training.callbacks import sample_seed
from bricklm.training.trainer import Trainer

BUILTIN_DATA = "builtin:python-docs-qa"
# Fine-tuning defaults that differ from pretraining's: fewer steps, a gentler rate, smaller batches,
# frequent evaluation (a few hundred conversations overfit within ~50 steps; the best checkpoint is kept).
FINETUNE_DEFAULTS: dict[str, Any] = {
    "max_iters": 200,
    "learning_rate": 1e-4,
    "min_lr": 1e-5,
    "warmup_iters": 10,
    "eval_interval": 25,
    "batch_size": 16,
    "sample_chars": 0,
}
# LoRA trains few parameters from a zero update: it wants a larger rate (as in the LoRA paper).
LORA_DEFAULTS: dict[str, Any] = {"learning_rate": 1e-3, "min_lr": 1e-4}
UNKNOWN_CHARS = ("add", "drop")


def extend_vocab(model: GPT, vocab_size: int) -> GPT:
    """A copy of model with vocab_size rows in tok_emb and head; old rows kept, new rows the mean of the old."""
    old = model.config.vocab_size
    if vocab_size < old:
        raise ValueError(f"cannot shrink the vocabulary from {old} to {vocab_size}")
    new = GPT(replace(model.config, vocab_size=vocab_size)).to(next(model.parameters()).device)
    state = {}
    for key, t in model.state_dict().items():
        if key in ("tok_emb.weight", "head.weight", "head.bias"):
            # The mean row keeps a new token's logit at the average of the old ones (Hewitt, 2021),
            # so the extended model predicts almost exactly what the pretrained one did.
            rows = t.mean(dim=0, keepdim=True).expand(vocab_size - old, *t.shape[1:])
            t = torch.cat([t, rows], dim=0)
        state[key] = t
    missing, unexpected = new.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"head.weight"}, (missing, unexpected)
    return new


def chat_tokenizer(source_tok, conversations, unknown_chars: str, log=print) -> ChatTokenizer:
    """The source's tokenizer with special tokens after it (kept if it already had them); characters of the
    conversations it lacks are added as tokens (unknown_chars="add") or dropped."""
    if isinstance(source_tok, ChatTokenizer):
        base, specials, added = source_tok.base, source_tok.specials, list(source_tok.added_chars)
    else:
        base, specials, added = source_tok, list(SPECIALS), []
    missing = missing_chars(ChatTokenizer(base, specials, added), conversations)
    if missing:
        listed = "".join(missing[:40]) + ("..." if len(missing) > 40 else "")
        if unknown_chars == "add":
            log(f"adding {len(missing)} characters the pretrained vocabulary lacks: {listed!r}")
            added += missing
        else:
            log(f"dropping {len(missing)} characters the pretrained vocabulary lacks: {listed!r}")
    return ChatTokenizer(base, specials, added)


def finetune(
    *,
    source: str | Path | None = None,
    checkpoint: str | None = None,
    data: str | Path | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    recipe: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    model_overrides: dict[str, Any] | None = None,
    lora_rank: int | None = None,
    lora_alpha: float | None = None,
    unknown_chars: str | None = None,
    heldout_fraction: float | None = None,
    log=print,
    progress=None,
) -> tuple[dict[str, Any], Path]:
    """Fine-tune `source` (a run directory) into `out` (default SOURCE-chat), or continue `resume`.

    Train settings: the fine-tuning defaults (the source's device, threads and dtype carry over), then
    the recipe's [train] table, then overrides. Returns (the summary, the run directory). The settings
    that shape a new fine-tuning run (source, checkpoint, out, the LoRA and data options) default to
    None: "best", rank 0 (full), alpha 2 x rank, "add", 0.1; a resume refuses them, since the run keeps its own.
    """
    if model_overrides:
        raise UserError(f"--{next(iter(model_overrides))}: a fine-tuned model keeps its pretrained run's shape")
    if resume:
        run_dir = Path(resume)
        given = {
            "--from": source,
            "--checkpoint": checkpoint,
            "--lora-rank": lora_rank,
            "--lora-alpha": lora_alpha,
            "--unknown-chars": unknown_chars,
            "--heldout-fraction": heldout_fraction,
        }
        if out is not None and Path(out).resolve() != run_dir.resolve():
            given["--out"] = out
        ignored = [flag for flag, value in given.items() if value is not None]
        if ignored:
            raise UserError(
                f"{' and '.join(ignored)} cannot be used with --resume: a resumed fine-tuning run keeps the source, "
                f"the folder and the settings it started with (in {run_dir / 'config.json'})"
            )
        config = read_run_config(run_dir)
        if "finetune" not in config:
            raise UserError(f"{run_dir} is not a fine-tuning run; resume it with `bricklm train --resume`")
        model_cfg = build(ModelConfig, config["model"], "model")
        settings = _saved_settings(config["finetune"], run_dir / "config.json", model_cfg.n_embd)
        if data:
            settings["data"] = str(data)
        train_values = dict(config.get("train", {}))
        source_run = None
    else:
        if not source:
            raise UserError("give --from RUN (a trained run) or --resume RUN2")
        lora_rank = lora_rank or 0
        heldout_fraction = 0.1 if heldout_fraction is None else heldout_fraction
        unknown_chars = unknown_chars or "add"
        if not 0 < heldout_fraction < 1:
            raise UserError(f"--heldout-fraction must be between 0 and 1, got {heldout_fraction}")
        if unknown_chars not in UNKNOWN_CHARS:
            raise UserError(f"unknown_chars must be one of {', '.join(UNKNOWN_CHARS)}, not {unknown_chars!r}")
        source_run = load_run(source, checkpoint or "best")
        check_lora(lora_rank, lora_alpha, source_run.model_cfg.n_embd)
        run_dir = Path(out or f"{str(source).rstrip('/')}-chat")
        settings = {
            "from": str(source),
            "from_checkpoint": str(source_run.checkpoint),
            "data": str(data) if data else BUILTIN_DATA,
            "lora_rank": lora_rank,
            "lora_alpha": lora_alpha if lora_alpha is not None else 2.0 * lora_rank,
            "unknown_chars": unknown_chars,
            "heldout_fraction": heldout_fraction,
        }
        model_cfg = replace(source_run.model_cfg)
        train_values = {k: v for k, v in asdict(source_run.train_cfg).items() if k in ("device", "threads", "dtype")}
        train_values.update(FINETUNE_DEFAULTS, **(LORA_DEFAULTS if lora_rank else {}))
    known = field_names(TrainConfig)  # a saved run may hold keys of an older bricklm
    tables = merge({"train": {k: v for k, v in train_values.items() if k in known}}, recipe, overrides or {})
    train_cfg = build(TrainConfig, tables["train"], "train")
    if train_cfg.log_health:  # its probe batch reads a token array, not conversations
        raise UserError("--log-health is not supported by finetune yet")
    if train_cfg.ema and int(settings.get("lora_rank") or 0):
        raise UserError("--ema averages whole weights; with --lora-rank the checkpoint holds merged adapters instead")

    train, heldout = _conversations(settings, train_cfg.seed)
    if resume:
        tokenizer = load_tokenizer(run_dir / "tokenizer.json")
        if not isinstance(tokenizer, ChatTokenizer):
            raise UserError(f"{run_dir / 'tokenizer.json'} is not a chat tokenizer; is {run_dir} a finetune run?")
        unknown = "drop"  # the vocabulary is fixed once training began
    else:
        tokenizer = chat_tokenizer(source_run.tokenizer, train + heldout, settings["unknown_chars"], log)
        unknown = "drop" if settings["unknown_chars"] == "drop" else "error"
    model_cfg.vocab_size = tokenizer.vocab_size
    dataset = ConversationDataset(tokenizer, train, heldout, model_cfg.block_size, settings["data"], unknown, log)
    rank = int(settings.get("lora_rank") or 0)

    def build_model() -> torch.nn.Module:
        if source_run is None or source_run.model is None:
            model = GPT(model_cfg)  # resuming: the weights come from the checkpoint
        else:
            model = extend_vocab(source_run.model.cpu(), model_cfg.vocab_size)
            source_run.model = None  # free the copy we no longer need
        if rank:
            names = apply_lora(model, rank, float(settings["lora_alpha"]), log=log)
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
            log(f"LoRA rank {rank} on {len(names)} layers; {trainable:,} trainable parameters")
        return model

    trainer = Trainer(
        model_cfg,
        train_cfg,
        dataset,
        run_dir,
        resume=bool(resume),
        log=log,
        progress=progress,
        build_model=build_model,
        weights=LoRAWeights() if rank else None,
        extra_config={"finetune": settings},
    )
    result = trainer.run()
    if trainer.dist.is_main and heldout:  # what the model learned, shown the way it will be used: a reply
        result["heldout_reply"] = heldout_reply(run_dir, heldout[0], train_cfg.seed)
        atomic_write_json(run_dir / "summary.json", result)
    return result, run_dir


def heldout_reply(run_dir: Path, conversation: list[dict[str, str]], seed: int, max_new_tokens: int = 200) -> dict:
    """The best checkpoint's reply to the first question of a held-out conversation (never trained on), sampled
    as `bricklm chat` does (temperature 0.7) with the run's sampling seed: {"question", "reply", "expected"}."""
    run = load_run(run_dir)
    system = next((m["content"] for m in conversation if m["role"] == "system"), None)
    turn = next(i for i, m in enumerate(conversation) if m["role"] == "user")
    question = conversation[turn]["content"]
    expected = next((m["content"] for m in conversation[turn + 1 :] if m["role"] == "assistant"), "")
    generator = torch.Generator().manual_seed(sample_seed(seed, run_dir))
    chat = Chat(
        run.model,
        run.tokenizer,
        system=system,
        max_new_tokens=max_new_tokens,
        generator=generator,
        notify=lambda message: None,
        temperature=0.7,
    )
    return {"question": question, "reply": "".join(chat.say(question)), "expected": expected}


def check_lora(rank: int, alpha: float | None, width: int) -> None:
    """LoRA settings that make sense together, for a model `width` (n_embd) wide."""
    if rank < 0:
        raise UserError(f"--lora-rank must be >= 0, got {rank}")
    if rank > width:  # a rank past the width adapts nothing more and costs rank x width parameters per layer
        raise UserError(f"--lora-rank {rank} is more than the model's width (n_embd {width}); give at most {width}")
    if alpha is not None and not rank:
        raise UserError("--lora-alpha applies only to LoRA: give --lora-rank too")
    if alpha is not None and not (math.isfinite(alpha) and alpha > 0):
        raise UserError(f"--lora-alpha must be a finite number > 0, got {alpha}")


def _saved_settings(table: dict[str, Any], path: Path, width: int) -> dict[str, Any]:
    """A fine-tuning run's saved settings (config.json's finetune table), checked; damage names the file."""
    kinds = {
        "data": str,
        "lora_rank": int,
        "lora_alpha": (int, float),
        "unknown_chars": str,
        "heldout_fraction": (int, float),
    }
    for key, kind in kinds.items():
        value = table.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise UserError(f"{path}: finetune.{key} is {value!r}; the run's config is damaged")
    try:
        check_lora(table["lora_rank"], table["lora_alpha"] if table["lora_rank"] else None, width)
    except UserError as exc:
        raise UserError(f"{path}: {exc}; the run's config is damaged") from None
    return dict(table)


def _conversations(settings: dict[str, Any], seed: int) -> tuple[list, list]:
    """(train, held-out) conversations: the built-in set, or a JSONL file split by seed."""
    if settings["data"] == BUILTIN_DATA:
        return builtin_conversations()
    conversations = load_conversations(settings["data"])
    if len(conversations) < 2:
        raise UserError(f"{settings['data']} holds one conversation; fine-tuning needs at least 2 (one is held out)")
    return split_heldout(conversations, settings["heldout_fraction"], seed)
