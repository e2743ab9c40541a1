"""Reading a run directory, finished or still training: its configs, metrics, snapshots, a model with weights.

    run = load_run("runs/blog")                  # best checkpoint: .model (eval mode), .tokenizer, .model_cfg
    metrics = read_metrics("runs/blog")          # every whole line of metrics.jsonl
    config = read_run_config("runs/blog")        # config.json, checked and in today's terms
    summary = read_summary("runs/blog")          # summary.json, checked

Every file a command reads from a run comes through here (or checkpoint.py for checkpoints), and
damage (bad JSON, a list where an object belongs, a string where a number belongs, weights of the
wrong shapes) is a UserError naming the file, never a traceback further on.

A run directory holds config.json, tokenizer.json, metrics.jsonl, samples.jsonl (a sample at
every evaluation), loss.png, summary.json, checkpoints/ (checkpoint.py) and snapshots/loss-X.XX/
(the weights the moment val loss first fell below X.XX: model.safetensors and snapshot.json).
Everything here only reads, except what the trainer and its callbacks call to write.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from tqdm import tqdm

from bricklm import checkpoint as ckpt
from bricklm.config import ModelConfig, TrainConfig, build, check_types, upgrade_model_table
from bricklm.errors import UserError
from bricklm.files import atomic_write_bytes, atomic_write_json
from bricklm.model import GPT
from bricklm.plots import plot_loss
from bricklm.tokenizer import Tokenizer, tokenizer_from_dict

SNAPSHOTS = "snapshots"
METRICS = "metrics.jsonl"
SAMPLES = "samples.jsonl"  # a sample at every evaluation (callbacks.EvalSamples)
SUMMARY_FIELDS = {
    "parameters": "an integer", "steps": "an integer", "training_time_s": "a number", "train_loss": "a number",
    "val_loss": "a number", "best_val_loss": "a number", "best_step": "an integer", "tokens_per_s": "a number",
}  # fmt: skip
# What a metrics.jsonl line may hold, and its type; "step" is in every line of metrics.jsonl and samples.jsonl.
METRIC_FIELDS = {
    "step": "an integer", "loss": "a number", "lr": "a number", "time": "a number", "train_loss": "a number",
    "val_loss": "a number", "skipped": "a boolean", "eval": "a boolean",
}  # fmt: skip


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
        if not _is(summary.get(key), kind):
            raise UserError(f"{path}: {key} is {summary.get(key)!r}, not {kind}; the summary is damaged")
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


def _is(value: Any, kind: str) -> bool:
    """value has the JSON type kind: "an integer", "a number", "a string", "a boolean" (bools are not numbers)."""
    if kind == "a boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    return isinstance(value, {"an integer": int, "a number": (int, float), "a string": str}[kind])


def format_summary(result: dict) -> str:
    """summary.json as the console shows it at the end of training: why it stopped early, if it did, and the
    sample, if one was drawn."""
    lines = [
        f"parameters:      {result['parameters']:,}",
        f"training time:   {result['training_time_s']:.1f} s ({result['steps']} steps, "
        f"{result['tokens_per_s']:,.0f} tokens/s)",
        f"train loss:      {result['train_loss']:.4f}",
        f"val loss:        {result['val_loss']:.4f} (best {result['best_val_loss']:.4f} at step {result['best_step']})",
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


# --- the console and metrics.jsonl ---------------------------------------------------------------

LOG_EVERY_S = 30.0  # without a terminal: a progress line at most this often, in training and in evaluations
LONG_EVAL_S = 30.0  # an evaluation projected to take longer than this is announced, with how to shorten it


def duration(seconds: float) -> str:
    """45 s, 2.4 min, 1.3 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


class RunLog:
    """Where a training run's lines go: metrics.jsonl, loss.png and the console.

    On a terminal the console has a progress bar (messages print above it), and a second one while a
    long evaluation runs; without one (a log file, a notebook, CI) a line every LOG_EVERY_S seconds
    says the step, loss, tokens/s and time left (evaluations included), or how far an evaluation is,
    so a long run is never silent. The first evaluation that will take over LONG_EVAL_S is announced
    with its cost and how to shorten it. `enabled` is False on every process but rank 0.
    """

    def __init__(self, run_dir: Path, enabled: bool = True, log=print, bar: bool = False, every: float | None = None,
                 cfg: TrainConfig | None = None):  # fmt: skip
        self.run_dir, self.enabled, self.log = Path(run_dir), enabled, log
        self.every = LOG_EVERY_S if every is None else every
        self.cfg = cfg or TrainConfig()
        self.use_bar, self.bar, self.last_line = enabled and bar, None, 0.0
        self.at_step, self.eval_bar, self.eval_start, self.eval_times, self.announced = 0, None, 0.0, [], False
        self.first_batch = 0.0  # seconds the current evaluation's first batch took

    def say(self, message: str) -> None:
        if self.enabled:
            (tqdm.write if self.bar is not None else self.log)(message)

    def append(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.run_dir / METRICS, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")

    def start(self, total: int, initial: int) -> None:
        self.last_line, self.at_step = time.monotonic(), initial
        if self.use_bar:
            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)

    def evals_left(self, step: int, total: int) -> int:
        """Evaluations after `step`: one every eval_interval steps, and one at the end."""
        interval = self.cfg.eval_interval
        return total // interval - step // interval + (total % interval != 0 and step < total)

    def step(self, step: int, total: int, loss: float, tokens_per_s: float, seconds_per_step: float,
             wall: float = 0.0) -> None:  # fmt: skip
        self.at_step = step
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tokens_per_s:,.0f}")
        elif self.enabled and time.monotonic() - self.last_line >= self.every:
            self.last_line = time.monotonic()
            per_eval = sum(self.eval_times) / len(self.eval_times) if self.eval_times else 0.0
            left = (total - step) * seconds_per_step + self.evals_left(step, total) * per_eval
            if self.cfg.max_seconds:  # a time budget ends the run first: at the evaluation after it is spent
                left = min(left, max(self.cfg.max_seconds - wall, 0.0) + per_eval)
            self.log(f"step {step}/{total}: loss {loss:.4f}, {tokens_per_s:,.0f} tokens/s, ~{duration(left)} left")

    def eval_progress(self, done: int, total: int) -> None:
        """An evaluation has scored `done` of its `total` batches (0 at its start): time it, show how far it is,
        and announce the first one that will take long."""
        if not self.enabled:
            return
        now = time.monotonic()
        if done == 0:
            self.eval_start = self.last_line = now
            return
        took = now - self.eval_start
        if done == 1:
            self.first_batch = took
        if not self.announced and done >= min(4, total):
            self.announced = True
            # Timed without the first batch where there are more (it pays for warm-up and allocation).
            per_batch = (took - self.first_batch) / (done - 1) if done > 1 else took
            if per_batch * total > LONG_EVAL_S:
                self.say(self.long_eval_message(per_batch, total))
        if self.use_bar and self.eval_bar is None and done < total:
            self.eval_bar = tqdm(total=total, initial=done, desc="evaluating", unit="batch", leave=False, delay=1.0)
        elif self.eval_bar is not None:
            self.eval_bar.update(1)
        elif not self.use_bar and now - self.last_line >= self.every and done < total:
            self.last_line = now
            left = duration(took / done * (total - done))
            self.log(f"evaluating at step {self.at_step}: {done}/{total} batches, ~{left} left")
        if done == total:
            self.eval_times.append(took)
            if self.eval_bar is not None:
                self.eval_bar.close()
                self.eval_bar = None

    def long_eval_message(self, per_batch: float, total: int) -> str:
        """What a long evaluation costs in this run, and what makes it cheaper."""
        cfg = self.cfg
        count = 1 + self.evals_left(self.at_step, cfg.max_iters)
        fewer = max(1, cfg.eval_iters // 5)
        # eval_iters counts batches per split; with eval_full only the train split's are random batches.
        fewer_total = total - cfg.eval_iters + fewer if cfg.eval_full else total * fewer / cfg.eval_iters
        message = (
            f"each evaluation scores {total} batches and takes about {duration(per_batch * total)} here "
            f"({count} in this run: ~{duration(count * per_batch * total)}); --eval-iters {fewer} (now "
            f"{cfg.eval_iters}) would take about {duration(per_batch * fewer_total)}"
        )
        if not cfg.eval_full:
            message += ", and --eval-full scores the whole val split once instead of its random batches"
        return message + f"; a larger --eval-interval (now {cfg.eval_interval}) evaluates less often"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def plot(self) -> None:
        if self.enabled:
            plot_loss(read_metrics(self.run_dir), self.run_dir / "loss.png")


def read_metrics(run_dir: str | Path, name: str = METRICS) -> list[dict[str, Any]]:
    """Every whole line of RUN/metrics.jsonl (or of another JSON-lines file of the run, e.g. SAMPLES)."""
    path = Path(run_dir) / name
    if not path.is_file():
        raise UserError(f"{run_dir} has no {name}; is it a bricklm run directory?")
    return [rec for _, rec in metric_lines(path)]


def metric_lines(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(line, record) for each whole line; a line torn by a crash mid-write is dropped, not fatal, but a
    whole line that is not a record (a step that is no integer, a loss that is no number) is a UserError
    naming the file and the line."""
    out = []
    if not path.is_file():
        return out
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict):
            raise UserError(f"{path} line {n} is not a JSON object; the file is damaged")
        for key, kind in METRIC_FIELDS.items():
            if (key in rec or key == "step") and not _is(rec.get(key), kind):
                raise UserError(f"{path} line {n}: {key} is {rec.get(key)!r}, not {kind}; the file is damaged")
        if rec.get("eval") and not ("train_loss" in rec and "val_loss" in rec):
            raise UserError(f"{path} line {n}: an evaluation without train_loss and val_loss; the file is damaged")
        out.append((line, rec))
    return out


def truncate_logs(run_dir: Path, step: int) -> None:
    """On resume: drop the metrics and samples logged after the checkpoint at `step`, so the logs match the weights."""
    for path in (Path(run_dir) / METRICS, Path(run_dir) / SAMPLES):
        keep = [line for line, rec in metric_lines(path) if rec.get("step", 0) <= step]
        atomic_write_bytes(path, ("\n".join(keep) + "\n" if keep else "").encode())


def eval_records(run_dir: str | Path) -> list[dict[str, Any]]:
    """The evaluation lines of a run's metrics, oldest first; a UserError if there are none yet."""
    evals = [m for m in read_metrics(run_dir) if m.get("eval")]
    if not evals:
        raise UserError(f"{run_dir} has no evaluations in {METRICS} yet")
    return evals


# --- snapshots at loss levels --------------------------------------------------------------------


def level_name(level: float) -> str:
    return f"loss-{level:.2f}"


def write_snapshot(path: Path, model: torch.nn.Module, info: dict[str, Any]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    # Bytes through Python's files, not safetensors' own (it refuses a path that isn't UTF-8).
    atomic_write_bytes(path / "model.safetensors", st_save(ckpt.model_tensors(model)))
    atomic_write_json(path / "snapshot.json", info)  # last: a snapshot without it is incomplete


def list_snapshots(run_dir: str | Path) -> list[dict[str, Any]]:
    """Complete snapshots of a run, highest level first, each with its 'path'; a damaged one is a UserError."""
    root = Path(run_dir) / SNAPSHOTS
    out = []
    for d in sorted(root.glob("loss-*")) if root.is_dir() else []:
        meta = d / "snapshot.json"
        if meta.is_file() and (d / "model.safetensors").is_file():
            try:
                info = json.loads(meta.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                info = None
            fields = {"level": "a number", "step": "an integer", "val_loss": "a number"}
            if not isinstance(info, dict) or not all(_is(info.get(k), kind) for k, kind in fields.items()):
                raise UserError(f"{meta} is damaged (not a snapshot record); delete {d} to go on without it")
            info["path"] = d
            out.append(info)
    return sorted(out, key=lambda i: -i["level"])


def load_snapshot_model(run_dir: str | Path, snapshot: dict[str, Any], device="cpu") -> GPT:
    """A GPT with a snapshot's weights, shaped by the run's config.json."""
    config = read_run_config(run_dir)
    model = GPT(build(ModelConfig, config.get("model", {}), "model"))
    path = Path(snapshot["path"]) / "model.safetensors"
    try:
        tensors = st_load(path.read_bytes())
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{path} is not a readable safetensors file ({exc})") from None
    ckpt.load_model_tensors(model, tensors, str(path))
    return model.to(device).eval()
