"""Continuing a trained model on new writing: `bricklm train --init-from RUN --data corpus2/ --out runs/new`.

    start = continued("runs/blog", "corpus2", recipe=None, overrides={"max_iters": 300})
    Trainer(start.model_cfg, start.train_cfg, "corpus2", "runs/new", build_model=start.build_model,
            extra_config=start.config)

Not a resume: RUN's best weights with a fresh optimiser, schedule and step count, in a run directory of its own.
What comes from where:
- the model's shape and switches are RUN's; a flag or a recipe's [model] value that says otherwise is an error
  naming it. Only FREE (dropout, and the attention kernel where the weights are laid out the same) are the user's.
- the training settings are the user's alone: TrainConfig's defaults, then the recipe's [train], then flags.
- the corpus must be in RUN's tokenizer or an extension of it (`prepare --tokenizer-from RUN`); characters it
  added get new rows in tok_emb and head, the mean of the old ones (model/vocab.py, as finetune does), so the
  model starts from exactly RUN's predictions over the old tokens.
- config.json records the lineage: "init_from": {"run", "checkpoint", "step", "vocab_size", "added_tokens"}.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from bricklm.config import ModelConfig, TrainConfig
from bricklm.errors import UserError
from bricklm.model.gpt import GPT
from bricklm.model.vocab import extend_vocab
from bricklm.recipes import build, merge
from bricklm.storage import checkpoint as ckpt
from bricklm.storage.runs import load_run
from bricklm.text.tokenizer import extends, load_tokenizer

FREE = ("dropout", "attention")  # model settings a continued run may change: they leave the weights as they are
INIT_FROM = "init_from"  # config.json's lineage table


@dataclass
class Continued:
    """What a continued run starts from: its settings, its first weights (once), and config.json's lineage."""

    model_cfg: ModelConfig
    train_cfg: TrainConfig
    model: torch.nn.Module | None
    config: dict[str, Any]  # {"init_from": {...}}: merged into the run's config.json

    def build_model(self) -> torch.nn.Module:
        """The starting weights the first time; later calls (--fsdp's full copies) a model of the same shape,
        whose weights the caller fills in."""
        model, self.model = self.model, None  # the trainer owns it now
        return model if model is not None else GPT(self.model_cfg)


def continued(
    run: str | Path,
    data: str | Path | None,
    recipe: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    checkpoint: str = "best",
) -> Continued:
    """The settings and weights of a run that continues `run` (its `checkpoint`) on the corpus `data`. Every
    mistake (no checkpoint, another tokenizer, a contradicting model setting) is a UserError before any file is
    written."""
    run, overrides = Path(run), dict(overrides or {})
    if not data:
        raise UserError(
            f"--init-from {run} needs --data: a corpus prepared with `bricklm prepare ... --tokenizer-from {run}`"
        )
    if not run.is_dir():
        raise UserError(f"--init-from {run}: run directory not found")
    if not ckpt.list_checkpoints(run, warn=False):
        raise UserError(f"--init-from {run}: it has no checkpoint to start from (has it trained past step 0?)")
    parent = load_run(run, checkpoint)
    if not (Path(data) / "tokenizer.json").is_file():
        raise UserError(f"--data {data} has no tokenizer.json: give a corpus folder from `bricklm prepare`")
    tokenizer = load_tokenizer(Path(data) / "tokenizer.json")
    if not extends(tokenizer, parent.tokenizer):
        raise UserError(
            f"{data} was not prepared with {run}'s tokenizer, so its token ids mean other things; prepare it with "
            f"`bricklm prepare SRC --out {data} --tokenizer-from {run}` (add --overwrite to replace it)"
        )
    tables = merge(None, recipe, overrides)
    model_cfg = _model_config(parent.model_cfg, tables["model"], run, recipe, overrides, tokenizer.vocab_size)
    train_cfg = build(TrainConfig, tables["train"], "train")
    try:
        model = extend_vocab(parent.model.cpu(), model_cfg.vocab_size, model_cfg)
    except RuntimeError as exc:
        given = ", ".join(f"model.{k} = {v!r}" for k, v in tables["model"].items() if k in FREE)
        raise UserError(f"{given} lays out the weights differently from {run}'s ({exc}); leave it out") from None
    old = parent.model_cfg.vocab_size
    lineage = {
        "run": str(run),
        "checkpoint": str(parent.checkpoint),
        "step": parent.trainer.get("step"),
        "vocab_size": old,
        "added_tokens": model_cfg.vocab_size - old,
    }
    return Continued(model_cfg, train_cfg, model.train(), {INIT_FROM: lineage})


def _model_config(saved: ModelConfig, given: dict, run: Path, recipe, flags: dict, vocab: int) -> ModelConfig:
    """RUN's model settings, with the FREE ones the user gave; any other given value must equal RUN's."""
    values = asdict(saved)
    for key, value in given.items():
        if key in FREE or key == "vocab_size" or values.get(key) == value:
            continue  # vocab_size: the corpus's, checked against it by the trainer
        where = f"--{key.replace('_', '-')} {value}" if key in flags else f"model.{key} = {value!r} in {recipe}"
        raise UserError(
            f"{where} contradicts {run}'s model.{key} = {values.get(key)!r}: a continued model keeps the shape and "
            "switches of the run it starts from (leave it out)"
        )
    if given.get("vocab_size", vocab) != vocab:
        raise UserError(f"model.vocab_size is {given['vocab_size']} but the corpus vocabulary has {vocab}")
    free = {key: given[key] for key in FREE if key in given}
    return build(ModelConfig, {**values, **free, "vocab_size": vocab}, "model")


def lineage_line(config: dict[str, Any]) -> str | None:
    """ "continued from RUN (its step N, CHECKPOINT; +K tokens)" for a run's config.json, or None."""
    origin = config.get(INIT_FROM)
    if not isinstance(origin, dict):
        return None
    added = origin.get("added_tokens")
    more = f"; {added} tokens added" if isinstance(added, int) and added else ""
    return f"continued from {origin.get('run')} (step {origin.get('step')}, {origin.get('checkpoint')}{more})"
