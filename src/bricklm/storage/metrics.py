"""metrics.jsonl and samples.jsonl: one writer and one reader of their lines.

    append_record(run_dir, {"step": 10, "loss": 2.3})  # the trainer's line, one JSON object per line
    records = read_metrics("runs/blog")                # every whole line, each checked
    evals = eval_records("runs/blog")                  # the evaluation lines only

A line torn by a crash mid-write is dropped; a whole line that is not a record is a UserError naming the
file and the line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bricklm.errors import UserError
from bricklm.files import atomic_write_bytes

METRICS = "metrics.jsonl"
SAMPLES = "samples.jsonl"  # a sample at every evaluation (callbacks.EvalSamples)
# What a metrics.jsonl line may hold, and its type; "step" is in every line of metrics.jsonl and samples.jsonl.
METRIC_FIELDS = {
    "step": "an integer",
    "loss": "a number",
    "lr": "a number",
    "time": "a number",
    "train_loss": "a number",
    "val_loss": "a number",
    "train_bpb": "a number",  # the losses in bits per byte of text (text/data.py: bits_per_byte)
    "val_bpb": "a number",
    "skipped": "a boolean",
    "eval": "a boolean",
}


def has_type(value: Any, kind: str) -> bool:
    """value has the JSON type kind: "an integer", "a number", "a string", "a boolean" (bools are not numbers)."""
    if kind == "a boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    return isinstance(value, {"an integer": int, "a number": (int, float), "a string": str}[kind])


def append_record(run_dir: Path, record: dict[str, Any], name: str = METRICS) -> None:
    """One line at the end of RUN/metrics.jsonl (or another JSON-lines file of the run)."""
    with open(Path(run_dir) / name, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


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
            if (key in rec or key == "step") and not has_type(rec.get(key), kind):
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
