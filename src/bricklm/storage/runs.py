"""Reading a run directory, finished or still training: its configs, its summary, a model with weights.

    run = load_run("runs/blog")                  # best checkpoint: .model (eval mode), .tokenizer, .model_cfg
    config = read_run_config("runs/blog")        # config.json, checked and in today's terms
    summary = read_summary("runs/blog")          # summary.json, checked
    config = check_run_config(obj, path)         # the same checks, on JSON read another way (the studio's)

Every file a command or the studio reads from a run comes through here (or checkpoint.py, metrics.py,
snapshots.py), and damage (bad JSON, a list where an object belongs, a string where a number belongs,
weights of the wrong shapes) is a UserError naming the file, never a traceback further on.

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

from bricklm.config import ModelConfig, TrainConfig
from bricklm.errors import UserError
from bricklm.fields import check_types
from bricklm.model.gpt import GPT
from bricklm.recipes import build, upgrade_model_table
from bricklm.storage import checkpoint as ckpt
from bricklm.storage.metrics import has_type
from bricklm.text.tokenizer import Tokenizer, tokenizer_from_dict

CONFIG = "config.json"  # written first: a folder holding it is a run
SUMMARY = "summary.json"  # written last: a run holding it has finished
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
    try:
        model = GPT(model_cfg)
    except ValueError as exc:  # a config that builds but describes no model (e.g. no vocab_size)
        raise UserError(f"{path / 'config.json'}: {exc}") from None
    ckpt.load_model_tensors(model, c.model, str(path / "model.safetensors"))
    model.to(device).eval()
    try:
        tokenizer = tokenizer_from_dict(c.tokenizer)
    except UserError as exc:
        raise UserError(f"{path / 'tokenizer.json'}: {exc}") from None
    return LoadedRun(run_dir, path, model, model_cfg, train_cfg, tokenizer, c.trainer)


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """RUN/config.json as a dict with its [model] table in today's terms (check_run_config); damage is a UserError
    naming the file."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise UserError(f"{run_dir} has no {CONFIG}; is it a bricklm run directory?")
    return check_run_config(read_json_object(path, "run's config"), path)


def check_run_config(config: Any, path: Path) -> dict[str, Any]:
    """A run's config.json read from `path`, checked, with its [model] table in today's terms; damage is a UserError
    naming the file.

    Checked: each table is an object, the model table makes a model, train settings have their types.
    Train values out of range are left to whoever builds a TrainConfig from them (a resume may fix them).
    """
    if not isinstance(config, dict) or not isinstance(config.get("model", {}), dict):
        raise UserError(f"{path} is not a bricklm run config (expected an object with a model table)")
    for key in ("train", "data", "finetune", "init_from"):
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
    path = Path(run_dir) / SUMMARY
    return check_summary(read_json_object(path, "summary"), path)


def check_summary(summary: Any, path: Path) -> dict[str, Any]:
    """A run's summary.json read from `path`, checked; damage is a UserError naming the file."""
    if not isinstance(summary, dict):
        raise UserError(f"{path} is not a JSON object; the summary is damaged")
    for key, kind in SUMMARY_FIELDS.items():
        if not has_type(summary.get(key), kind):
            raise UserError(f"{path}: {key} is {summary.get(key)!r}, not {kind}; the summary is damaged")
    if summary.get("val_bpb") is not None and not has_type(summary["val_bpb"], "a number"):  # absent before bpb
        raise UserError(f"{path}: val_bpb is {summary['val_bpb']!r}, not a number; the summary is damaged")
    return summary


def read_json_object(path: Path, what: str, max_bytes: int | None = None) -> dict[str, Any]:
    """A JSON object from a file of a run (what: "summary", "run's config", ... for the message); a file that is
    missing, unreadable, over max_bytes, not UTF-8 JSON or not an object is a UserError naming it."""
    try:
        with open(path, "rb") as fh:
            data = fh.read() if max_bytes is None else fh.read(max_bytes + 1)
    except FileNotFoundError:
        raise UserError(f"{path} not found") from None
    except OSError as exc:
        raise UserError(f"{path} is not readable ({exc.strerror or type(exc).__name__})") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise UserError(f"{path} is over {max_bytes:,} bytes; the {what} is damaged")
    try:
        obj = json.loads(data.decode("utf-8"))
    except ValueError as exc:  # bad JSON or bad UTF-8
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
