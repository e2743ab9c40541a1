"""Supervised fine-tuning: a pretrained run + conversations → a run that answers in the chat template.

    result, run_dir = finetune(source="runs/pydocs")                                 # the built-in Q&A set
    result, run_dir = finetune(FinetuneConfig(data="chats.jsonl", lora_rank=8), source="runs/blog")
    result, run_dir = finetune(source="runs/blog", overrides={"lora_rank": 8, "max_iters": 100})  # as flags
    result, run_dir = finetune(resume="runs/pydocs-chat", overrides={"max_iters": 600})

What happens, in order:
1. The pretrained run's best weights and tokenizer are loaded. The tokenizer becomes a
   ChatTokenizer: the same ids, then the special tokens (and, with unknown_chars="add", any
   character of the conversations the base vocabulary lacks). The model gains one row per new
   token in `tok_emb` and `head` (weight and bias), initialised to the mean of the existing rows
   so the pretrained predictions barely move; every existing row is kept exactly.
2. The conversations become a ConversationDataset (data.py): assistant tokens are the only targets.
3. Training is train.py's Trainer, handed that dataset: same run directory, metrics, plot,
   checkpoints and resume. The run's config.json gains a "finetune" table: the source run, then
   the FinetuneConfig (settings.py decides every setting, new or resumed).
4. With lora_rank R the transformer blocks are frozen and adapted by LoRA (lora.py); tok_emb and
   head train in full because their new rows must be learned. Checkpoints hold merged plain
   weights in model.safetensors (so sample, info and chat load them like any run) and the
   adapters plus frozen base weights in state.safetensors (so resume continues exactly).
5. At the end, the best weights answer the first held-out question; summary.json keeps the
   question, the reply and the expected answer under "heldout_reply", and the console shows them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from bricklm.config import BUILTIN_DATA, FinetuneConfig, PrepareConfig
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
from bricklm.finetune.settings import resolve_settings
from bricklm.finetune.voice import owner, voice_conversations
from bricklm.model.gpt import GPT
from bricklm.model.vocab import extend_vocab
from bricklm.storage.runs import load_run
from bricklm.text.chatexport import read_chat
from bricklm.text.readers.chats import ChatExport
from bricklm.text.tokenizer import SPECIALS, ChatTokenizer, load_tokenizer
from bricklm.training.callbacks import sample_seed
from bricklm.training.trainer import Trainer


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
    config: FinetuneConfig | None = None,
    *,
    source: str | Path | None = None,
    checkpoint: str | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    recipe: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    log=print,
    progress=None,
) -> tuple[dict[str, Any], Path]:
    """Fine-tune `source` (a run directory, its `checkpoint`: best by default) into `out` (default SOURCE-chat), or
    continue the fine-tuning run `resume`. Returns (the summary, the run directory).

    config: finetune's own settings to start from instead of FinetuneConfig's defaults (a resume keeps the run's);
    recipe: a TOML file whose [finetune] and [train] tables come next; overrides: then settings by field name,
    exactly as `bricklm finetune` flags give them (FinetuneConfig's and TrainConfig's). settings.py merges them.
    """
    setup = resolve_settings(
        config, source=source, checkpoint=checkpoint, out=out, resume=resume, recipe=recipe, overrides=overrides
    )
    cfg, model_cfg, train_cfg = setup.config, setup.model_cfg, setup.train_cfg
    run_dir, source_run = setup.run_dir, setup.source_run
    if train_cfg.log_health:  # its probe batch reads a token array, not conversations
        raise UserError("--log-health is not supported by finetune yet")
    if train_cfg.ema and cfg.lora_rank:
        raise UserError("--ema averages whole weights; with --lora-rank the checkpoint holds merged adapters instead")

    export = _chat_export(cfg)
    if export is None:
        train, heldout = _conversations(cfg, train_cfg.seed)
    else:  # the vocabulary first: cutting a chat to fit the window counts its tokens
        train, heldout = [], [[{"role": "user", "content": m.text} for t in export.threads for m in t.messages]]
    if resume:
        tokenizer = load_tokenizer(run_dir / "tokenizer.json")
        if not isinstance(tokenizer, ChatTokenizer):
            raise UserError(f"{run_dir / 'tokenizer.json'} is not a chat tokenizer; is {run_dir} a finetune run?")
        unknown = "drop"  # the vocabulary is fixed once training began
    else:
        tokenizer = chat_tokenizer(source_run.tokenizer, train + heldout, cfg.unknown_chars, log)
        unknown = "drop" if cfg.unknown_chars == "drop" else "error"
    model_cfg.vocab_size = tokenizer.vocab_size
    if export is not None:
        conversations, made = voice_conversations(
            export, cfg.me, cfg.gap_hours, tokenizer, model_cfg.block_size, unknown
        )
        for line in made.describe(export, cfg.gap_hours):
            log(line)
        train, heldout = _split(conversations, cfg, train_cfg.seed)
    dataset = ConversationDataset(tokenizer, train, heldout, model_cfg.block_size, cfg.data, unknown, log)
    rank = cfg.lora_rank

    def build_model() -> torch.nn.Module:
        if source_run is None or source_run.model is None:
            model = GPT(model_cfg)  # resuming: the weights come from the checkpoint
        else:
            model = extend_vocab(source_run.model.cpu(), model_cfg.vocab_size)
            source_run.model = None  # free the copy we no longer need
        if rank:
            names = apply_lora(model, rank, cfg.lora_alpha, log=log)
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
        extra_config={"finetune": setup.table},
    )
    result = trainer.run()
    # what the model learned, shown the way it will be used: a reply to the first held-out question
    asked = next((c for c in heldout if any(m["role"] == "user" for m in c[:-1])), None)
    if trainer.dist.is_main and asked:
        result["heldout_reply"] = heldout_reply(run_dir, asked, train_cfg.seed)
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


def _chat_export(cfg: FinetuneConfig) -> ChatExport | None:
    """The chat export --data names, or None for the built-in set or a JSONL file of conversations."""
    export = None if cfg.data == BUILTIN_DATA else read_chat(Path(cfg.data), PrepareConfig(date_order=cfg.date_order))
    if export is None and cfg.me:
        raise UserError(f"--me picks the owner of a chat export; {cfg.data} is not one (a JSONL file has roles)")
    if export is not None:
        owner(export, cfg.me)  # before anything else is said: whose voice it is, or the names to pick from
    return export


def _conversations(cfg: FinetuneConfig, seed: int) -> tuple[list, list]:
    """(train, held-out) conversations: the built-in set, or a JSONL file split by seed."""
    if cfg.data == BUILTIN_DATA:
        return builtin_conversations()
    return _split(load_conversations(cfg.data), cfg, seed)


def _split(conversations: list, cfg: FinetuneConfig, seed: int) -> tuple[list, list]:
    if len(conversations) < 2:
        raise UserError(f"{cfg.data} holds one conversation; fine-tuning needs at least 2 (one is held out)")
    return split_heldout(conversations, cfg.heldout_fraction, seed)
