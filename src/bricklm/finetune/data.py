"""Conversations as the trainer sees them: padded examples, batches, and the masked loss.

    data = ConversationDataset(tokenizer, train_convs, heldout_convs, block_size=128, log=print)
    Trainer(model_cfg, train_cfg, data, "runs/chat", ...)      # the same loop as pretraining

Each conversation is rendered with the template (conversations.py) and cut to block_size + 1
tokens at the right; targets are IGNORE (-100, which cross_entropy skips) everywhere except the
assistant's content and its <|end|>. A conversation with no target left after the cut is skipped.
Batches are conversations drawn at random, padded at the right to the longest in the batch
(padding has target IGNORE, and causal attention never lets a real token see it). The loss is
token-weighted over all held-out conversations ("val") and a fixed sample of training ones.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Any

import torch
import torch.nn.functional as F

from bricklm.config import TrainConfig
from bricklm.errors import UserError
from bricklm.finetune.conversations import render
from bricklm.model.gpt import evaluating

IGNORE = -100  # F.cross_entropy's default ignore_index, which GPT.forward relies on


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
def masked_loss_sum(
    model, examples: Examples, device, batch_size: int = 32, exclude=(), on_batch=None
) -> tuple[float, int]:
    """Summed cross-entropy over every target token of examples, and the number of those tokens.

    exclude: target ids not to score (e.g. the special tokens, for a content-only comparison);
    on_batch(): called after each batch (an evaluation's progress).
    """
    total, count = 0.0, 0
    with evaluating(model):
        for start in range(0, len(examples), batch_size):
            x, y = examples.batch(torch.arange(start, min(start + batch_size, len(examples))), device)
            for t in exclude:
                y = y.masked_fill(y == t, IGNORE)
            logits, _ = model(x)
            flat = logits.float().reshape(-1, logits.size(-1))
            total += F.cross_entropy(flat, y.reshape(-1), ignore_index=IGNORE, reduction="sum").item()
            count += int((y != IGNORE).sum())
            if on_batch:
                on_batch()
    return total, count


class ConversationDataset:
    """Training and held-out conversations with the five things the Trainer asks of a dataset."""

    def __init__(self, tokenizer, train, heldout, block_size: int, source: str, unknown: str = "error", log=print):
        self.tokenizer, self.source = tokenizer, source
        encoded = {}
        for name, convs in (("train", train), ("held-out", heldout)):
            pairs, cut, skipped = encode_conversations(tokenizer, convs, block_size, unknown)
            if not pairs:
                raise UserError(f"no {name} conversation has an assistant token within block_size {block_size}")
            if cut or skipped:
                log(
                    f"{name}: {cut} of {len(convs)} conversations are longer than block_size + 1 = {block_size + 1} "
                    f"tokens and were cut at the right; {skipped} had no assistant token left and were skipped"
                )
            encoded[name] = Examples(pairs, block_size, tokenizer.end_id)
        self.train, self.val = encoded["train"], encoded["held-out"]
        log(f"fine-tuning on {len(self.train)} conversations, {len(self.val)} held out")

    def check(self, block_size: int) -> None: ...  # every example was cut to block_size when encoded

    def describe(self) -> dict[str, Any]:
        return {"dir": str(self.source), "corpus_sha256": None}

    def batch(self, generator: torch.Generator, cfg: TrainConfig, block_size: int, device, dist=None):
        index = torch.randint(len(self.train), (cfg.batch_size,), generator=generator)
        return self.train.batch(index, device)

    @torch.no_grad()
    def losses(
        self, model, cfg: TrainConfig, block_size: int, device, dist=None, autocast=None, forward=None, progress=None
    ) -> dict[str, float]:
        """Token-weighted loss over all held-out conversations, and over the same sample of training ones;
        progress(done, total) hears of every batch scored."""
        n = min(len(self.train), cfg.eval_iters * cfg.batch_size)
        index = torch.randperm(len(self.train), generator=torch.Generator().manual_seed(cfg.seed + 1))[:n]
        splits = (("train", self.train.subset(index)), ("val", self.val))
        total = sum(-(-len(data) // cfg.batch_size) for _, data in splits)
        progress = progress or (lambda done, total: None)
        progress(0, total)
        batches = itertools.count(1)
        out = {}
        for name, data in splits:
            with (autocast or contextlib.nullcontext)():
                loss_sum, count = masked_loss_sum(
                    model, data, device, cfg.batch_size, on_batch=lambda: progress(next(batches), total)
                )
            out[name] = loss_sum / max(count, 1)
        return out
