"""What the trainer trains on and scores against: a prepared corpus as batches and losses.

    data = open_dataset("corpus/")                       # or None: the built-in corpus, prepared into the run
    x, y = data.batch(generator, cfg, block_size, device, dist)
    losses = data.losses(model, cfg, block_size, device, dist)   # {"train": ..., "val": ..., "train_bpb": ...}
    val = full_split_loss(model, data.val, block_size)  # every target of the split scored once

The Trainer only ever calls `check`, `describe`, `batch`, `losses` and reads `tokenizer`, so
fine-tuning hands it a dataset of conversations with the same five (finetune/data.py).

How a batch is shared out under torchrun: every process holds the same batch generator (same
seed) and draws the start positions of the whole global micro-batch, batch_size x world_size
windows; process r takes slice r. torch's CPU generator draws sequentially, so 2 processes with
batch_size B train on exactly the windows that 1 process with 2B, or with B and grad_accum 2,
would, and a checkpoint's generator state is every process's state.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bricklm.config import TrainConfig
from bricklm.model.gpt import evaluating
from bricklm.text.data import as_tensor, batch_at, bits_per_byte, check_split_length, load_corpus, tokens_per_byte
from bricklm.text.prepare import prepare


class TokenDataset:
    """A corpus folder from `bricklm prepare`: train and val token arrays (memory-mapped) and the tokenizer."""

    def __init__(self, data_dir: str | Path):
        self.dir = Path(data_dir)
        self.train, self.val, self.tokenizer, self.meta = load_corpus(self.dir)
        self.tokens_per_byte = tokens_per_byte(self.meta, {"train": self.train, "val": self.val}, self.tokenizer)

    def check(self, block_size: int) -> None:
        check_split_length(self.train, block_size, "train")
        check_split_length(self.val, block_size, "val")

    def describe(self) -> dict[str, Any]:
        """The "data" table of a run's config.json."""
        return {"dir": str(self.dir), "corpus_sha256": self.meta.get("sha256", {}).get("corpus.txt")}

    def batch(self, generator: torch.Generator, cfg: TrainConfig, block_size: int, device, dist=None):
        """This process's (x, y) of the next training batch."""
        return rank_batch(self.train, cfg.batch_size, block_size, generator, device, dist)

    @torch.no_grad()
    def losses(
        self, model, cfg: TrainConfig, block_size: int, device, dist=None, autocast=None, forward=None, progress=None
    ) -> dict[str, float]:
        """Mean loss over eval_iters batches per split, from a generator of its own; with eval_full, val over
        the whole split instead; and each as bits per byte ("train_bpb", "val_bpb"). forward: what to call
        instead of model (compiled, or DDP-wrapped), if anything; progress(done, total): told the batches
        scored so far, from 0 at the start.

        The same batches every evaluation (so curves compare like with like), and training's batch
        sampler is untouched (so evaluating more often doesn't change the run).
        """
        ctx = autocast or contextlib.nullcontext
        forward = forward or model
        progress = progress or (lambda done, total: None)
        splits = (("train", self.train),) if cfg.eval_full else (("train", self.train), ("val", self.val))
        full = full_split_batches(self.val, block_size, cfg.batch_size) if cfg.eval_full else 0
        total = cfg.eval_iters * len(splits) + full
        progress(0, total)
        out = {}
        with evaluating(model):
            for i, (name, tokens) in enumerate(splits):
                gen = torch.Generator().manual_seed(cfg.seed + 1)
                losses = []
                for k in range(cfg.eval_iters):
                    x, y = rank_batch(tokens, cfg.batch_size, block_size, gen, device, dist)
                    with ctx():
                        _, loss = forward(x, y)
                    losses.append(loss.item())
                    progress(i * cfg.eval_iters + k + 1, total)
                mean = float(np.mean(losses))
                out[name] = dist.mean(mean) if dist is not None else mean  # every process's share of the batches
        if cfg.eval_full:  # the honest number: every target of the val split, scored once
            done = lambda k: progress(cfg.eval_iters + k, total)  # noqa: E731
            out["val"] = full_split_loss(model, self.val, block_size, cfg.batch_size, device, autocast, done)
        return out | {f"{name}_bpb": bits_per_byte(out[name], self.tokens_per_byte[name]) for name in ("train", "val")}


def open_dataset(data_dir: str | Path | None, run_dir: Path, dist=None, log=print) -> TokenDataset:
    """The corpus in data_dir; None: the built-in corpus (Python's documentation), prepared into run_dir/corpus
    by the first process while the others wait."""
    if data_dir:
        return TokenDataset(data_dir)
    target = run_dir / "corpus"
    main = dist is None or dist.is_main
    if main and not (target / "meta.json").is_file():
        log(f"no --data given: preparing the built-in corpus (Python's documentation) in {target}")
        prepare([], target, builtin="python-docs", log=lambda *a, **k: None)
    if dist is not None:
        dist.barrier()  # the other processes read what rank 0 prepared
    return TokenDataset(target)


def rank_batch(tokens, batch_size: int, block_size: int, generator: torch.Generator, device, dist=None):
    """Slice number `rank` of a global batch of batch_size x world_size random windows.

    Alone, this is data.get_batch. Every process draws all the start positions (the generators
    stay in step) and gathers only its own windows.
    """
    rank, world = (dist.rank, dist.world_size) if dist is not None else (0, 1)
    check_split_length(tokens, block_size, "given")
    ix = torch.randint(len(tokens) - block_size, (batch_size * world,), generator=generator)
    return batch_at(tokens, ix[rank * batch_size : (rank + 1) * batch_size], block_size, device)


def full_split_windows(tokens, block_size: int) -> tuple[list[int], int]:
    """The start of each window full_split_loss scores, and the first target they leave unscored."""
    n_targets = len(tokens) - 1
    starts = list(range(0, n_targets - block_size + 1, block_size))
    return starts, starts[-1] + block_size


def full_split_batches(tokens, block_size: int, batch_size: int) -> int:
    """How many forward passes full_split_loss makes over a split."""
    starts, covered = full_split_windows(tokens, block_size)
    return -(-len(starts) // batch_size) + (covered < len(tokens) - 1)


@torch.no_grad()
def full_split_loss(
    model: torch.nn.Module, tokens, block_size: int, batch_size: int = 64, device="cpu", autocast=None, progress=None
):
    """Mean cross-entropy over every target of a split, each scored exactly once.

    Windows of block_size start at 0, T, 2T, ...; one last window ends at the split's end and
    scores only the targets the others missed. Deterministic and the same for every run with the
    same block_size, unlike a few random batches. Costs one forward pass over the split
    (full_split_batches batches); progress(k), if given, hears after each.
    """
    check_split_length(tokens, block_size, "val")
    data = as_tensor(tokens)
    n_targets = len(data) - 1
    starts, covered = full_split_windows(data, block_size)
    tail_start = n_targets - block_size  # the last full window; scores targets covered..n_targets-1 only
    total, count, batches = 0.0, 0, 0
    ctx = autocast if autocast is not None else contextlib.nullcontext
    with evaluating(model):
        for i in range(0, len(starts), batch_size):
            ix = torch.tensor(starts[i : i + batch_size])
            total_i, n_i = _window_loss(model, data, ix, block_size, 0, device, ctx)
            total, count, batches = total + total_i, count + n_i, batches + 1
            if progress:
                progress(batches)
        if covered < n_targets:
            total_i, n_i = _window_loss(
                model, data, torch.tensor([tail_start]), block_size, covered - tail_start, device, ctx
            )
            total, count = total + total_i, count + n_i
            if progress:
                progress(batches + 1)
    return total / count


def _window_loss(model, data, ix, block_size, skip, device, ctx):
    """Summed loss of the windows starting at ix, ignoring each window's first `skip` targets."""
    x, y = batch_at(data, ix, block_size, device)
    with ctx():
        logits, _ = model(x)
    logits = logits[:, skip:].float()
    y = y[:, skip:]
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum")
    return float(loss), y.numel()
