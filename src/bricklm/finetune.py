"""Supervised fine-tuning: a pretrained run + conversations → a run that answers in the chat template.

    bricklm finetune --from runs/pydocs --out runs/pydocs-chat                  # built-in Q&A set
    bricklm finetune --from runs/blog --data chats.jsonl --out runs/blog-chat --lora-rank 8
    bricklm finetune --resume runs/pydocs-chat --max-iters 600

What happens, in order:
1. The pretrained run's best weights and tokenizer are loaded. The tokenizer becomes a
   ChatTokenizer: the same ids, then the special tokens (and, with --unknown-chars add, any
   character of the conversations the base vocabulary lacks). The model gains one row per new
   token in `tok_emb` and `head` (weight and bias), initialised to the mean of the existing rows
   so the pretrained predictions barely move; every existing row is kept exactly.
2. Each conversation is rendered with the template (chat_data.py) and cut to block_size + 1
   tokens at the right; targets are -100 (ignored by cross_entropy) everywhere except the
   assistant's content and its <|end|>. A conversation with no target left after the cut is
   skipped. Batches are conversations drawn at random, padded at the right to the longest in the
   batch (padding has target -100, and causal attention never lets a real token see it).
3. Training is train.py's loop (FinetuneTrainer subclasses Trainer): same run directory, metrics,
   plot, checkpoints and resume. Evaluation is the token-weighted loss over all held-out
   conversations ("val") and a fixed sample of training ones ("train").
4. With --lora-rank R the transformer blocks are frozen and adapted by LoRA (lora.py); tok_emb and
   head train in full because their new rows must be learned. Checkpoints hold merged plain
   weights in model.safetensors (so sample, info and chat load them like any run) and the
   adapters plus frozen base weights in state.safetensors (so resume continues exactly).
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bricklm import checkpoint as ckpt
from bricklm.chat_data import (
    SPECIALS,
    ChatTokenizer,
    builtin_conversations,
    load_conversations,
    missing_chars,
    render,
    split_heldout,
)
from bricklm.config import ModelConfig, TrainConfig, build, to_dict
from bricklm.errors import UserError
from bricklm.model import GPT
from bricklm.train import Trainer, format_summary

IGNORE = -100  # F.cross_entropy's default ignore_index, which GPT.forward relies on
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


# --- the model ---------------------------------------------------------------------------------


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


# --- examples and batches ----------------------------------------------------------------------


def make_example(ids: list[int], is_target: list[bool], block_size: int):
    """(x, y) lists of at most block_size tokens: y is ids shifted by one, IGNORE where not a target.

    Cut at the right to block_size + 1 tokens. Returns None when no target survives the cut.
    """
    ids, is_target = ids[: block_size + 1], is_target[: block_size + 1]
    x = ids[:-1]
    y = [t if learn else IGNORE for t, learn in zip(ids[1:], is_target[1:], strict=True)]
    if all(v == IGNORE for v in y):
        return None
    return x, y


class Examples:
    """Conversations as padded (N, block_size) tensors of inputs and targets, plus their lengths."""

    def __init__(self, pairs: list[tuple[list[int], list[int]]], block_size: int, pad_id: int):
        n = len(pairs)
        self.x = torch.full((n, block_size), pad_id, dtype=torch.long)
        self.y = torch.full((n, block_size), IGNORE, dtype=torch.long)
        self.lengths = torch.zeros(n, dtype=torch.long)
        for i, (x, y) in enumerate(pairs):
            self.x[i, : len(x)] = torch.tensor(x)
            self.y[i, : len(y)] = torch.tensor(y)
            self.lengths[i] = len(x)

    def __len__(self) -> int:
        return len(self.lengths)

    def subset(self, index: torch.Tensor) -> Examples:
        out = Examples([], 0, 0)
        out.x, out.y, out.lengths = self.x[index], self.y[index], self.lengths[index]
        return out

    def batch(self, index: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows `index`, cut to the longest of them: less padding, same loss (padding is all IGNORE)."""
        width = int(self.lengths[index].max())
        return self.x[index, :width].to(device), self.y[index, :width].to(device)


def encode_conversations(tokenizer, conversations, block_size: int, unknown: str = "error"):
    """Render and cut each conversation; returns (pairs, number cut at the right, number skipped)."""
    pairs, cut, skipped = [], 0, 0
    for messages in conversations:
        ids, is_target = render(tokenizer, messages, unknown=unknown)
        cut += len(ids) > block_size + 1
        ex = make_example(ids, is_target, block_size)
        if ex is None:
            skipped += 1
        else:
            pairs.append(ex)
    return pairs, cut, skipped


@torch.no_grad()
def masked_loss_sum(model, examples: Examples, device, batch_size: int = 32, exclude=()) -> tuple[float, int]:
    """Summed cross-entropy over every target token of examples, and the number of those tokens.

    exclude: target ids not to score (e.g. the special tokens, for a content-only comparison).
    """
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for start in range(0, len(examples), batch_size):
            x, y = examples.batch(torch.arange(start, min(start + batch_size, len(examples))), device)
            for t in exclude:
                y = y.masked_fill(y == t, IGNORE)
            logits, _ = model(x)
            flat = logits.float().reshape(-1, logits.size(-1))
            total += F.cross_entropy(flat, y.reshape(-1), ignore_index=IGNORE, reduction="sum").item()
            count += int((y != IGNORE).sum())
    finally:
        model.train(was_training)
    return total, count


# --- the trainer -------------------------------------------------------------------------------


class _Weights:
    """Something with a state_dict(), for save_checkpoint: the merged plain weights of a LoRA model."""

    def __init__(self, state: dict[str, torch.Tensor]):
        self._state = state

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self._state


class FinetuneTrainer(Trainer):
    """Trainer over conversations: the pretrained run's weights in, masked assistant loss, same run layout."""

    def __init__(
        self,
        model_cfg: ModelConfig,
        train_cfg: TrainConfig,
        out_dir,
        *,
        settings: dict[str, Any],
        source_run=None,
        resume: bool = False,
        **kwargs,
    ):
        # settings: from, from_checkpoint, data (path or BUILTIN_DATA), lora_rank, lora_alpha,
        # unknown_chars, heldout_fraction; saved as the "finetune" table of config.json.
        self.settings, self.source_run = dict(settings), source_run
        super().__init__(model_cfg, train_cfg, None, out_dir, resume=resume, **kwargs)

    @property
    def lora_rank(self) -> int:
        return int(self.settings.get("lora_rank") or 0)

    def load_data(self, data_dir) -> None:
        s = self.settings
        if s["data"] == BUILTIN_DATA:
            train, heldout = builtin_conversations()
        else:
            conversations = load_conversations(s["data"])
            if len(conversations) < 2:
                raise UserError(f"{s['data']} holds one conversation; fine-tuning needs at least 2 (one is held out)")
            train, heldout = split_heldout(conversations, s["heldout_fraction"], self.cfg.seed)
        self.data_dir, self.meta = Path(s["data"]), {}
        if self.resume:
            self.tokenizer = _load_chat_tokenizer(self.run_dir / "tokenizer.json")
            unknown = "drop"  # the vocabulary is fixed once training began
        else:
            self.tokenizer = self.chat_tokenizer(self.source_run.tokenizer, train + heldout)
            unknown = "drop" if s["unknown_chars"] == "drop" else "error"
        self.model_cfg.vocab_size = self.tokenizer.vocab_size
        block = self.model_cfg.block_size
        pad = self.tokenizer.end_id
        datasets = {}
        for name, convs in (("train", train), ("held-out", heldout)):
            pairs, cut, skipped = encode_conversations(self.tokenizer, convs, block, unknown)
            if not pairs:
                raise UserError(f"no {name} conversation has an assistant token within block_size {block}")
            if cut or skipped:
                self.log(
                    f"{name}: {cut} of {len(convs)} conversations are longer than block_size + 1 = {block + 1} "
                    f"tokens and were cut at the right; {skipped} had no assistant token left and were skipped"
                )
            datasets[name] = Examples(pairs, block, pad)
        self.train_data, self.val_data = datasets["train"], datasets["held-out"]
        self.log(f"fine-tuning on {len(self.train_data)} conversations, {len(self.val_data)} held out")

    def chat_tokenizer(self, source_tok, conversations) -> ChatTokenizer:
        """The source's tokenizer with special tokens after it (kept if it already had them)."""
        if isinstance(source_tok, ChatTokenizer):
            base, specials, added = source_tok.base, source_tok.specials, list(source_tok.added_chars)
        else:
            base, specials, added = source_tok, list(SPECIALS), []
        missing = missing_chars(ChatTokenizer(base, specials, added), conversations)
        if missing:
            listed = "".join(missing[:40]) + ("..." if len(missing) > 40 else "")
            if self.settings["unknown_chars"] == "add":
                self.log(f"adding {len(missing)} characters the pretrained vocabulary lacks: {listed!r}")
                added += missing
            else:
                self.log(f"dropping {len(missing)} characters the pretrained vocabulary lacks: {listed!r}")
        return ChatTokenizer(base, specials, added)

    def build_model(self) -> torch.nn.Module:
        from bricklm.lora import apply_lora

        if self.resume:
            model = GPT(self.model_cfg)  # the weights come from the checkpoint (load_weights)
        else:
            model = extend_vocab(self.source_run.model.cpu(), self.model_cfg.vocab_size)
            self.source_run = replace(self.source_run, model=None)  # free the copy we no longer need
        if self.lora_rank:
            names = apply_lora(model, self.lora_rank, float(self.settings["lora_alpha"]), log=self.log)
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
            self.log(f"LoRA rank {self.lora_rank} on {len(names)} layers; {trainable:,} trainable parameters")
        return model

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.randint(len(self.train_data), (self.cfg.batch_size,), generator=self.generator)
        return self.train_data.batch(index, self.device)

    @torch.no_grad()
    def estimate_loss(self) -> dict[str, float]:
        """Token-weighted loss over all held-out conversations, and over the same sample of training ones."""
        n = min(len(self.train_data), self.cfg.eval_iters * self.cfg.batch_size)
        index = torch.randperm(len(self.train_data), generator=torch.Generator().manual_seed(self.cfg.seed + 1))[:n]
        sample = self.train_data.subset(index)
        out = {}
        for name, data in (("train", sample), ("val", self.val_data)):
            with self.autocast():
                total, count = masked_loss_sum(self.model, data, self.device, self.cfg.batch_size)
            out[name] = total / max(count, 1)
        return out

    def config_dict(self) -> dict[str, Any]:
        d = to_dict(self.model_cfg, self.cfg)
        d["data"] = {"dir": str(self.settings["data"]), "corpus_sha256": None}
        d["finetune"] = dict(self.settings)
        return d

    def checkpoint_weights(self):
        """Without LoRA, the model itself; with it, the merged plain weights, and the adapters beside them."""
        from bricklm.lora import adapter_tensors, merged_state_dict

        if not self.lora_rank:
            return self.model, None
        return _Weights(merged_state_dict(self.model)), adapter_tensors(self.model)

    def load_weights(self, c: ckpt.Checkpoint, path: Path) -> None:
        from bricklm.lora import load_adapter_tensors, lora_modules

        if not self.lora_rank:
            return super().load_weights(c, path)
        adapted = lora_modules(self.model)
        plain = {k: v for k, v in c.model.items() if not any(k.startswith(n + ".") for n in adapted)}
        self.model.load_state_dict(plain, strict=False)
        try:
            load_adapter_tensors(self.model, c.state)
        except KeyError as e:
            raise UserError(f"{path / 'state.safetensors'} lacks the LoRA tensor {e}; cannot resume") from None


def _load_chat_tokenizer(path: Path) -> ChatTokenizer:
    from bricklm.tokenizer import load_tokenizer

    tok = load_tokenizer(path)
    if not isinstance(tok, ChatTokenizer):
        raise UserError(f"{path} is not a chat tokenizer; is {path.parent} a `bricklm finetune` run?")
    return tok


# --- the command -------------------------------------------------------------------------------


def register(sub) -> None:
    from bricklm.config import add_config_flags

    p = sub.add_parser(
        "finetune",
        help="fine-tune a trained run on conversations (JSONL, or the built-in Q&A set) so it answers",
        description=(
            "Supervised fine-tuning: start from RUN's best weights, add the chat template's special tokens, "
            "and train on the assistant turns only. Train settings: fine-tuning defaults, then --config, "
            "then flags. See docs/finetune.md."
        ),
    )
    p.add_argument("--from", dest="source", metavar="RUN", help="pretrained run directory (from `bricklm train`)")
    p.add_argument("--checkpoint", default="best", help="which checkpoint of --from: best, last or step-...")
    p.add_argument(
        "--data", metavar="FILE.jsonl", help="conversations, one JSON object a line (default: the built-in Q&A set)"
    )
    p.add_argument("--out", metavar="RUN2", help="run directory to create (default: RUN-chat)")
    p.add_argument("--resume", metavar="RUN2", help="continue the fine-tuning run in RUN2")
    p.add_argument("--config", metavar="FILE.toml", help="a recipe; only its [train] table is used")
    p.add_argument("--lora-rank", "--lora_rank", dest="lora_rank", type=int, default=0,
                   help="train LoRA adapters of this rank instead of all weights (0 = full fine-tune)")  # fmt: skip
    p.add_argument("--lora-alpha", "--lora_alpha", dest="lora_alpha", type=float, default=None,
                   help="LoRA scale numerator: updates are scaled by alpha/rank (default: 2 x rank)")  # fmt: skip
    p.add_argument("--unknown-chars", "--unknown_chars", dest="unknown_chars", choices=("add", "drop"),
                   default="add", help="characters of the conversations the pretrained vocabulary lacks: "
                   "add them as new tokens (default) or drop them")  # fmt: skip
    p.add_argument("--heldout-fraction", "--heldout_fraction", dest="heldout_fraction", type=float, default=0.1,
                   help="share of a --data file held out for the val loss (the built-in set has its own)")  # fmt: skip
    add_config_flags(p, (TrainConfig,))
    p.set_defaults(func=cmd_finetune)


def cmd_finetune(args) -> int:
    """`bricklm finetune`; also `bricklm train --resume RUN2` of a fine-tuning run lands here."""
    from bricklm.config import overrides_from_args, read_toml
    from bricklm.runs import load_run

    overrides = overrides_from_args(args, (TrainConfig,))
    model_flags = overrides_from_args(args, (ModelConfig,))  # only `train --resume` has these flags
    if model_flags:
        raise UserError(f"--{next(iter(model_flags))}: a fine-tuned model keeps its pretrained run's shape")
    if args.resume:
        run_dir = Path(args.resume)
        saved = run_dir / "config.json"
        if not saved.is_file():
            raise UserError(f"cannot resume {run_dir}: no config.json there (is it a bricklm run directory?)")
        config = json.loads(saved.read_text(encoding="utf-8"))
        if "finetune" not in config:
            raise UserError(f"{run_dir} is not a fine-tuning run; resume it with `bricklm train --resume`")
        settings = config["finetune"]
        if args.data:
            settings["data"] = args.data
        model_cfg = build(ModelConfig, config["model"], "model")
        train_values = dict(config.get("train", {}))
        source_run = None
    else:
        if not args.source:
            raise UserError("give --from RUN (a trained run) or --resume RUN2")
        if args.lora_rank < 0:
            raise UserError(f"--lora-rank must be >= 0, got {args.lora_rank}")
        if not 0 < args.heldout_fraction < 1:
            raise UserError(f"--heldout-fraction must be between 0 and 1, got {args.heldout_fraction}")
        source_run = load_run(args.source, args.checkpoint)
        run_dir = Path(args.out or f"{str(args.source).rstrip('/')}-chat")
        settings = {
            "from": str(args.source),
            "from_checkpoint": str(source_run.checkpoint),
            "data": str(args.data) if args.data else BUILTIN_DATA,
            "lora_rank": args.lora_rank,
            "lora_alpha": (args.lora_alpha if args.lora_alpha is not None else 2.0 * args.lora_rank),
            "unknown_chars": args.unknown_chars,
            "heldout_fraction": args.heldout_fraction,
        }
        model_cfg = replace(source_run.model_cfg)
        # The source's device and threads carry over; everything else starts from fine-tuning defaults.
        train_values = {k: v for k, v in asdict(source_run.train_cfg).items() if k in ("device", "threads", "dtype")}
        train_values.update(FINETUNE_DEFAULTS)
        if args.lora_rank:
            train_values.update(LORA_DEFAULTS)
    if args.config:
        train_values.update(read_toml(args.config).get("train", {}))
    train_values.update(overrides)
    train_cfg = build(TrainConfig, {k: v for k, v in train_values.items() if k in _train_fields()}, "train")
    if getattr(train_cfg, "log_health", False):  # its probe batch reads a token array, not conversations
        raise UserError("--log-health is not supported by finetune yet")
    trainer = FinetuneTrainer(model_cfg, train_cfg, run_dir, settings=settings, source_run=source_run,
                              resume=bool(args.resume))  # fmt: skip
    result = trainer.run()
    print(format_summary(result))
    print(f"chat with it: bricklm chat --run {run_dir}")
    return 0


def _train_fields() -> set[str]:
    return {f.name for f in fields(TrainConfig)}
