"""Reading a run directory, finished or still training: its configs, its summary, a model with weights.

    run = load_run("runs/blog")                  # best checkpoint: .model (eval mode), .tokenizer, .model_cfg
    config = read_run_config("runs/blog")        # config.json, checked and in today's terms
    summary = read_summary("runs/blog")          # summary.json, checked

Every file a command reads from a run comes through here (or checkpoint.py, metrics.py, snapshots.py), and
damage (bad JSON, a list where an object belongs, a string where a number belongs, weights of the
wrong shapes) is a UserError naming the file, never a traceback further on.

A run directory holds config.json, tokenizer.json, metrics.jsonl, samples.jsonl (a sample at
every evaluation), loss.png, summary.json, checkpoints/ (checkpoint.py) and snapshots/loss-X.XX/
(the weights the moment val loss first fell below X.XX: model.safetensors and snapshot.json).
Everything here only reads, except what the trainer and its callbacks call to write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bricklm.config import ModelConfig, TrainConfig, check_types
from bricklm.errors import UserError
from bricklm.model.gpt import GPT
from bricklm.recipes import build, upgrade_model_table
from bricklm.storage import checkpoint as ckpt
from bricklm.storage.metrics import has_type
from bricklm.text.tokenizer import Tokenizer, tokenizer_from_dict

SUMMARY_FIELDS = {
    "parameters": "an integer",
    "steps": "an integer",
    "training_time_s": "a number",
    "train_loss": "a number",
    "val_loss": "a number",
    "best_val_loss": "a number",
    "best_step": "an integer",
    "tokens_per_s": "a number",
}


@dataclass
class LoadedRun:
    path: Path
    checkpoint: Path
    model: GPT
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    tokenizer: Tokenizer
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
    except KeyError:
        raise UserError(f"{path / 'config.json'} is not a bricklm config (no model table)") from None
    except UserError as exc:
        raise UserError(f"{path / 'config.json'}: {exc}") from None
    model = GPT(model_cfg)
    ckpt.load_model_tensors(model, c.model, str(path / "model.safetensors"))
    model.to(device).eval()
    try:
        tokenizer = tokenizer_from_dict(c.tokenizer)
    except UserError as exc:
        raise UserError(f"{path / 'tokenizer.json'}: {exc}") from None
    return LoadedRun(run_dir, path, model, model_cfg, train_cfg, tokenizer, c.trainer)


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """RUN/config.json as a dict with its [model] table in today's terms; damage is a UserError naming the file.

    Checked: each table is an object, the model table makes a model, train settings have their types.
    Train values out of range are left to whoever builds a TrainConfig from them (a resume may fix them).
    """
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise UserError(f"{run_dir} has no config.json; is it a bricklm run directory?")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or bad UTF-8
        raise UserError(f"{path} is not readable JSON ({type(exc).__name__}); the run's config is damaged") from None
    if not isinstance(config, dict) or not isinstance(config.get("model", {}), dict):
        raise UserError(f"{path} is not a bricklm run config (expected an object with a model table)")
    for key in ("train", "data", "finetune"):
        if not isinstance(config.get(key, {}), dict):
            raise UserError(f"{path}: {key} is not a table; the run's config is damaged")
    if not isinstance(config.get("data", {}).get("dir", ""), (str, type(None))):
        raise UserError(f"{path}: data.dir is not a path; the run's config is damaged")
    try:
        if "model" in config:
            config["model"] = upgrade_model_table(config["model"], quiet=True)
            build(ModelConfig, config["model"], "model")
        check_types(TrainConfig, config.get("train", {}), "train")
    except UserError as exc:
        raise UserError(f"{path}: {exc}; the run's config is damaged") from None
    return config


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    """RUN/summary.json (what training wrote at the end), checked; damage is a UserError naming the file."""
    path = Path(run_dir) / "summary.json"
    summary = _read_json(path, "summary")
    for key, kind in SUMMARY_FIELDS.items():
        if not has_type(summary.get(key), kind):
            raise UserError(f"{path}: {key} is {summary.get(key)!r}, not {kind}; the summary is damaged")
    if summary.get("val_bpb") is not None and not has_type(summary["val_bpb"], "a number"):  # absent before bpb
        raise UserError(f"{path}: val_bpb is {summary['val_bpb']!r}, not a number; the summary is damaged")
    return summary


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} not found") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not readable JSON ({type(exc).__name__}); the {what} is damaged") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path} is not a JSON object; the {what} is damaged")
    return obj


def format_summary(result: dict) -> str:
    """summary.json as the console shows it at the end of training: why it stopped early, if it did, and the
    sample, if one was drawn."""
    lines = [
        f"parameters:      {result['parameters']:,}",
        f"training time:   {result['training_time_s']:.1f} s ({result['steps']} steps, "
        f"{result['tokens_per_s']:,.0f} tokens/s)",
        f"train loss:      {result['train_loss']:.4f}",
        f"val loss:        {result['val_loss']:.4f} (best {result['best_val_loss']:.4f} at step {result['best_step']})"
        + (f"; {result['val_bpb']:.4f} bits per byte" if result.get("val_bpb") is not None else ""),
        f"checkpoints:     {Path(result['run_dir']) / 'checkpoints'}",
    ]
    if result.get("stop_reason"):
        lines.insert(1, f"stopped early:   {result['stop_reason']}")
    if result.get("sample"):
        lines += ["sample:", result["sample"]]
    if result.get("heldout_reply"):  # a fine-tuned run: its answer to a question it never trained on
        qa = result["heldout_reply"]
        lines += [f"held-out question: {qa['question']}", f"reply:    {qa['reply']}", f"expected: {qa['expected']}"]
    return "\n".join(lines)
