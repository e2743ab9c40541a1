"""Training callbacks switched on by TrainConfig fields: early stopping and loss-level snapshots.

    early_stop = 5          # stop after 5 evaluations without a new best val loss
    loss_levels = "4.0,3.0,2.5,2.0,1.6"

A snapshot is `RUN/snapshots/loss-2.50/` holding model.safetensors (the weights the
moment val loss first fell below 2.5) and snapshot.json (level, step, losses); the run's
own config.json and tokenizer.json rebuild the model. `bricklm samples-by-loss RUN`
reads them. Both callbacks keep their progress in `trainer.state.extra`, which every
checkpoint saves, so a resumed run neither re-snapshots a level nor forgets its patience.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from bricklm import checkpoint as ckpt
from bricklm.errors import UserError
from bricklm.train import Callback

SNAPSHOTS = "snapshots"


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


def config_callbacks(train_cfg) -> list[Callback]:
    """The callbacks a TrainConfig asks for (Trainer adds them to any it was given)."""
    out: list[Callback] = []
    levels = parse_loss_levels(train_cfg.loss_levels)
    if levels:
        out.append(LossLevelSnapshots(levels))
    if train_cfg.early_stop > 0:
        out.append(EarlyStopping(train_cfg.early_stop))
    return out


class EarlyStopping(Callback):
    """Stop once `patience` evaluations in a row bring no new best val loss.

    The Trainer marks the best checkpoint and pruning never deletes it, so stopping late
    costs nothing: `load_run(run, "best")` gets the weights from the best evaluation.
    """

    def __init__(self, patience: int):
        self.patience = patience

    def on_eval(self, trainer, record: dict[str, Any]) -> bool:
        s = trainer.state
        if s.best_step == record["step"]:
            s.extra["evals_without_improvement"] = 0
            return False
        bad = s.extra.get("evals_without_improvement", 0) + 1
        s.extra["evals_without_improvement"] = bad
        if bad >= self.patience:
            trainer.stop_reason = (
                f"early stop: val loss has not improved for {bad} evaluations "
                f"(best {s.best_val:.4f} at step {s.best_step})"
            )
            trainer.write(trainer.stop_reason)
            return True
        return False


class LossLevelSnapshots(Callback):
    """Keep the weights from the first evaluation whose val loss is below each level."""

    def __init__(self, levels: list[float]):
        self.levels = levels

    def on_eval(self, trainer, record: dict[str, Any]) -> None:
        reached = trainer.state.extra.setdefault("loss_levels_reached", {})
        for level in self.levels:
            key = level_name(level)
            if key in reached or not record["val_loss"] < level:
                continue
            info = {
                "level": level,
                "step": record["step"],
                "val_loss": record["val_loss"],
                "train_loss": record["train_loss"],
                # Below the level before any training: this snapshot says nothing about learning.
                "below_at_start": record["step"] == 0,
            }
            write_snapshot(trainer.run_dir / SNAPSHOTS / key, trainer.model, info)
            reached[key] = info
        return None


def level_name(level: float) -> str:
    return f"loss-{level:.2f}"


def write_snapshot(path: Path, model, info: dict[str, Any]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / "model.safetensors.tmp"
    save_file(ckpt.model_tensors(model), str(tmp))
    tmp.replace(path / "model.safetensors")
    ckpt.atomic_write_json(path / "snapshot.json", info)  # last: a snapshot without it is incomplete


def list_snapshots(run_dir: str | Path) -> list[dict[str, Any]]:
    """Complete snapshots of a run, highest level first, each with its 'path'."""
    root = Path(run_dir) / SNAPSHOTS
    out = []
    for d in sorted(root.glob("loss-*")) if root.is_dir() else []:
        meta = d / "snapshot.json"
        if meta.is_file() and (d / "model.safetensors").is_file():
            info = json.loads(meta.read_text())
            info["path"] = d
            out.append(info)
    return sorted(out, key=lambda i: -i["level"])


def load_snapshot_model(run_dir: str | Path, snapshot: dict[str, Any], device="cpu"):
    """A GPT with a snapshot's weights, shaped by the run's config.json."""
    from bricklm.config import ModelConfig, build
    from bricklm.model import GPT

    config = json.loads((Path(run_dir) / "config.json").read_text())
    model = GPT(build(ModelConfig, config["model"], "model"))
    path = Path(snapshot["path"]) / "model.safetensors"
    ckpt.load_model_tensors(model, load_file(str(path)), str(path))
    return model.to(device).eval()
