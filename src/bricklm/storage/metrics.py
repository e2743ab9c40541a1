"""metrics.jsonl and samples.jsonl: one writer and one reader of their lines.

    append_record(run_dir, {"step": 10, "loss": 2.3})  # the trainer's line, one JSON object per line
    records = read_metrics("runs/blog")                # every whole line, each checked
    evals = eval_records("runs/blog")                  # the evaluation lines only
    tail = LogTail(lambda: run_dir / METRICS)          # a run that is still training: new lines as they come
    started_over, records = tail.read()

A line torn by a crash mid-write is dropped; a whole line that is not a record is a UserError naming the
file and the line (a LogTail skips it instead, so a page can go on following the run).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
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
READ_CHUNK = 4 << 20  # bytes a LogTail reads per call: a long run's log arrives over a few calls
MAX_LINE = 1 << 20  # a metrics line is ~100 bytes (a health record a few kB): a longer one is not ours


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
        rec = _record(path, n, line)
        if rec is not None:
            out.append((line, rec))
    return out


def _record(path: Path, n: int, line: str) -> dict[str, Any] | None:
    """The record on line n of a run's log; None if the line is torn (not JSON), a UserError if it is damaged."""
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    if not isinstance(rec, dict):
        raise UserError(f"{path} line {n} is not a JSON object; the file is damaged")
    for key, kind in METRIC_FIELDS.items():
        if (key in rec or key == "step") and not has_type(rec.get(key), kind):
            raise UserError(f"{path} line {n}: {key} is {rec.get(key)!r}, not {kind}; the file is damaged")
    if rec.get("eval") and not ("train_loss" in rec and "val_loss" in rec):
        raise UserError(f"{path} line {n}: an evaluation without train_loss and val_loss; the file is damaged")
    return rec


class LogTail:
    """The records appended to a run's metrics.jsonl or samples.jsonl since the last read, for a reader that
    follows a run while it trains (the studio's live pages); reads only new bytes, at most READ_CHUNK a call.

    path_of() names the file at each read, or None to treat it as missing (the studio's refuses a path that
    leaves its runs folder). Each whole line gets metric_lines' checks: a torn one is dropped, and a damaged
    one, which read_metrics would refuse, is skipped. The unfinished last line waits for its newline; a file
    replaced (`--resume` writes the logs anew and renames them into place), shrunk or gone starts over.
    """

    def __init__(self, path_of: Callable[[], Path | None]):
        self.path_of = path_of
        self.restart()

    def restart(self) -> None:
        """Forget what was read: the next read starts at the top of the file."""
        self.ident: tuple[int, int] | None = None  # the file read so far (device, inode)
        self.offset, self.lines, self.partial = 0, 0, b""

    def read(self) -> tuple[bool, list[dict[str, Any]]]:
        """(started over, new records): started over when the file was replaced, shrank or vanished."""
        path = self.path_of()
        try:
            st = os.stat(path) if path is not None else None
        except OSError:
            st = None
        started_over = self.ident is not None and (
            st is None or self.ident != (st.st_dev, st.st_ino) or st.st_size < self.offset
        )
        if started_over or st is None:
            self.restart()
        if st is None:
            return started_over, []
        self.ident = (st.st_dev, st.st_ino)
        if st.st_size == self.offset:
            return started_over, []
        try:
            with open(path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read(READ_CHUNK)
        except OSError:
            return started_over, []
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")  # the last piece has no newline yet
        if len(self.partial) > MAX_LINE:  # no record is this long: not a log of ours, don't hold it
            self.partial = b""
        records = []
        for line in lines:
            self.lines += 1
            try:
                rec = _record(path, self.lines, line.decode("utf-8", errors="replace"))
            except UserError:
                continue  # damaged: a page shows the rest of the run rather than fail
            if rec is not None:
                records.append(rec)
        return started_over, records


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
