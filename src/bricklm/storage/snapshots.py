"""Loss-level snapshots: the weights the moment val loss first fell below each level.

    write_snapshot(run_dir / SNAPSHOTS / level_name(2.0), model, {"level": 2.0, "step": 300, "val_loss": 1.98})
    for snap in list_snapshots("runs/blog"):         # highest level first, each with its "path"
        model = load_snapshot_model("runs/blog", snap)

RUN/snapshots/loss-X.XX/ holds model.safetensors and snapshot.json (written last: a folder without it
is incomplete and skipped).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from bricklm.config import ModelConfig
from bricklm.errors import UserError
from bricklm.files import atomic_write_bytes, atomic_write_json
from bricklm.model.gpt import GPT
from bricklm.recipes import build
from bricklm.storage import checkpoint as ckpt
from bricklm.storage.metrics import has_type
from bricklm.storage.runs import CONFIG, read_run_config

SNAPSHOTS = "snapshots"
WEIGHTS, RECORD = "model.safetensors", "snapshot.json"
FILES = (WEIGHTS, RECORD)  # RECORD is written last: a folder without it is incomplete


def level_name(level: float) -> str:
    return f"loss-{level:.2f}"


def write_snapshot(path: Path, model: torch.nn.Module, info: dict[str, Any]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    # Bytes through Python's files, not safetensors' own (it refuses a path that isn't UTF-8).
    atomic_write_bytes(path / WEIGHTS, st_save(ckpt.model_tensors(model)))
    atomic_write_json(path / RECORD, info)  # last: a snapshot without it is incomplete


def complete_snapshots(run_dir: str | Path) -> list[Path]:
    """The run's snapshot folders that hold both FILES (an incomplete one is skipped), by name."""
    root = Path(run_dir) / SNAPSHOTS
    found = sorted(root.glob("loss-*")) if root.is_dir() else []
    return [d for d in found if all((d / name).is_file() for name in FILES)]


def list_snapshots(run_dir: str | Path) -> list[dict[str, Any]]:
    """Complete snapshots of a run, highest level first, each with its 'path'; a damaged one is a UserError."""
    out = []
    for d in complete_snapshots(run_dir):
        meta = d / RECORD
        try:
            info = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            info = None
        fields = {"level": "a number", "step": "an integer", "val_loss": "a number"}
        if not isinstance(info, dict) or not all(has_type(info.get(k), kind) for k, kind in fields.items()):
            raise UserError(f"{meta} is damaged (not a snapshot record); delete {d} to go on without it")
        info["path"] = d
        out.append(info)
    return sorted(out, key=lambda i: -i["level"])


def load_snapshot_model(run_dir: str | Path, snapshot: dict[str, Any], device="cpu") -> GPT:
    """A GPT with a snapshot's weights, shaped by the run's config.json."""
    config = read_run_config(run_dir)
    try:
        model = GPT(build(ModelConfig, config.get("model", {}), "model"))
    except ValueError as exc:  # e.g. a config.json of {}: no vocab_size, so no model to load the weights into
        raise UserError(f"{Path(run_dir) / CONFIG}: {exc}") from None
    path = Path(snapshot["path"]) / WEIGHTS
    try:
        tensors = st_load(path.read_bytes())
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{path} is not a readable safetensors file ({exc})") from None
    ckpt.load_model_tensors(model, tensors, str(path))
    return model.to(device).eval()
