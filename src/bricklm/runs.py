"""Opening a finished (or running) run directory: its configs, tokenizer and a model with weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from bricklm import checkpoint as ckpt
from bricklm.config import ModelConfig, TrainConfig, build
from bricklm.errors import UserError
from bricklm.model import GPT
from bricklm.tokenizer import tokenizer_from_dict


@dataclass
class LoadedRun:
    path: Path
    checkpoint: Path
    model: GPT
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    tokenizer: object
    trainer: dict


def load_run(run_dir: str | Path, which: str = "best", device: str | torch.device = "cpu") -> LoadedRun:
    """which: 'best' (lowest val loss), 'last', or a checkpoint directory name like 'step-000001000'."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory not found: {run_dir}")
    if which == "best":
        path = ckpt.best_checkpoint(run_dir)
    elif which == "last":
        path = ckpt.latest_checkpoint(run_dir)
    else:
        path = run_dir / ckpt.CHECKPOINTS / which
        if not path.is_dir():
            raise UserError(f"no checkpoint {which} in {run_dir}")
    c = ckpt.load_checkpoint(path)
    try:
        model_cfg = build(ModelConfig, c.config["model"], "model")
        train_cfg = build(TrainConfig, c.config.get("train", {}), "train")
    except (KeyError, TypeError):
        raise UserError(f"{path / 'config.json'} is not a bricklm config") from None
    model = GPT(model_cfg)
    ckpt.load_model_tensors(model, c.model, str(path / "model.safetensors"))
    model.to(device).eval()
    return LoadedRun(run_dir, path, model, model_cfg, train_cfg, tokenizer_from_dict(c.tokenizer), c.trainer)
