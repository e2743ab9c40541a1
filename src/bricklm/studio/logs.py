"""What training has logged, read as it grows: metrics.jsonl and samples.jsonl, a run's progress and summary.

    logs = RunLogs(runs)                      # one per server: a RunLog per run, shared by every page
    log = logs.get(run)                       # refreshed at most every REFRESH_S, reading only new bytes
    cursor, delta = log.since(cursor)         # what a live page has not seen yet ({"reset": True, ...} at first)
    describe(runs, run, log)                  # the runs table's row: config, parameters, best val loss, status

A trainer appends whole lines, but a reader can catch one half-written, and `--resume` rewrites both
files from scratch (a new file, renamed into place). JsonlTail keeps the unfinished tail of the file
until its newline arrives, skips lines that aren't JSON objects, and starts over when the file is
replaced or shrinks; a RunLog then begins a new epoch so pages redraw instead of appending.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from bricklm.config import ModelConfig
from bricklm.errors import UserError
from bricklm.model.gpt import count_params
from bricklm.recipes import build, upgrade_model_table
from bricklm.storage.metrics import METRICS, SAMPLES
from bricklm.studio.runsdir import Run, RunsDir

READ_CHUNK = 4 << 20  # bytes read per refresh: a long run's log arrives over a few refreshes
MAX_LINE = 1 << 20  # a metrics line is ~100 bytes (a health record a few kB)
MAX_STEP_POINTS = 4000  # per-step losses kept per run; beyond it every other one is dropped
RATE_WINDOW = 50  # recent steps the tokens/s and ETA are measured over
REFRESH_S = 0.5  # one read of a run's files serves every page that asks within this


class JsonlTail:
    """Reads the records appended to a JSON-lines file since the last call."""

    def __init__(self, path_of):
        self.path_of = path_of  # () -> resolved path inside the runs folder, or None
        self.ident: tuple[int, int] | None = None
        self.offset = 0
        self.partial = b""

    def read(self) -> tuple[bool, list[dict[str, Any]]]:
        """(started over, new records): started over when the file was replaced, shrank or vanished."""
        path = self.path_of()
        try:
            st = os.stat(path) if path is not None else None
        except OSError:
            st = None
        if st is None:
            reset = self.ident is not None
            self.ident, self.offset, self.partial = None, 0, b""
            return reset, []
        reset = False
        if self.ident != (st.st_dev, st.st_ino) or st.st_size < self.offset:
            reset = self.ident is not None
            self.ident, self.offset, self.partial = (st.st_dev, st.st_ino), 0, b""
        if st.st_size == self.offset:
            return reset, []
        try:
            with open(path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read(READ_CHUNK)
        except OSError:
            return reset, []
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")  # the last piece has no newline yet
        if len(self.partial) > MAX_LINE:  # no record is this long: not a log of ours, don't hold it
            self.partial = b""
        records = []
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                records.append(rec)
        return reset, records


@dataclass
class Cursor:
    """How much of a RunLog a page has seen."""

    epoch: int = -1
    evals: int = 0
    steps: int = 0
    samples: int = 0


class RunLog:
    """One run's evaluations, per-step losses (thinned past MAX_STEP_POINTS) and samples, kept current."""

    def __init__(self, runs: RunsDir, run: Run):
        self.run = run
        self.metrics = JsonlTail(lambda: runs.file(run, METRICS))
        self.sample_file = JsonlTail(lambda: runs.file(run, SAMPLES))
        self.lock = threading.Lock()
        self.read_at = float("-inf")
        self._clear()

    def _clear(self) -> None:
        self.epoch = getattr(self, "epoch", -1) + 1
        self.evals: list[dict[str, float]] = []
        self.steps: list[tuple[int, float]] = []
        self.stride, self.seen_steps = 1, 0
        self.samples: list[dict[str, Any]] = []
        self.recent: deque[tuple[int, float]] = deque(maxlen=RATE_WINDOW)  # (step, training seconds)
        self.last_step = 0

    def refresh(self) -> None:
        """Read what was appended since the last refresh (at most once per REFRESH_S)."""
        with self.lock:
            if time.monotonic() - self.read_at < REFRESH_S:
                return
            self.read_at = time.monotonic()
            reset, records = self.metrics.read()
            reset_s, samples = self.sample_file.read()
            if reset or reset_s:  # `--resume` rewrote the logs: read both again from their start
                self._clear()
                self.metrics, self.sample_file = JsonlTail(self.metrics.path_of), JsonlTail(self.sample_file.path_of)
                _, records = self.metrics.read()
                _, samples = self.sample_file.read()
            for rec in records:
                self._add_metric(rec)
            self.samples += [_sample(s) for s in samples if _number(s.get("step")) is not None]

    def _add_metric(self, rec: dict[str, Any]) -> None:
        step = _number(rec.get("step"))
        if step is None:
            return
        self.last_step = max(self.last_step, int(step))
        if rec.get("eval"):
            train, val = _number(rec.get("train_loss")), _number(rec.get("val_loss"))
            self.evals.append({"step": int(step), "train_loss": train, "val_loss": val})
            return
        loss, seconds = _number(rec.get("loss")), _number(rec.get("time"))
        if loss is None:
            return  # a health line or another kind of record
        if seconds is not None:
            self.recent.append((int(step), seconds))
        if self.seen_steps % self.stride == 0:
            self.steps.append((int(step), loss))
        self.seen_steps += 1
        if len(self.steps) > MAX_STEP_POINTS:  # thin out; pages start over from the thinned list
            self.steps, self.stride, self.epoch = self.steps[::2], self.stride * 2, self.epoch + 1

    def since(self, cursor: Cursor) -> tuple[Cursor, dict[str, Any] | None]:
        """What a page with this cursor hasn't seen: everything (reset) after a new epoch, else the new tail."""
        with self.lock:
            now = Cursor(self.epoch, len(self.evals), len(self.steps), len(self.samples))
            if cursor.epoch != self.epoch:
                return now, {"reset": True, "evals": self.evals[:], "steps": self.steps[:], "samples": self.samples[:]}
            if (cursor.evals, cursor.steps, cursor.samples) == (now.evals, now.steps, now.samples):
                return now, None
            return now, {
                "reset": False,
                "evals": self.evals[cursor.evals :],
                "steps": self.steps[cursor.steps :],
                "samples": self.samples[cursor.samples :],
            }

    def best(self) -> tuple[float | None, int | None]:
        """(best val loss, its step) among the evaluations so far."""
        scored = [e for e in self.evals if e["val_loss"] is not None]
        if not scored:
            return None, None
        b = min(scored, key=lambda e: e["val_loss"])
        return b["val_loss"], b["step"]

    def tokens_per_s(self, tokens_per_step: int) -> float | None:
        """Training throughput over the last RATE_WINDOW steps (training time only, as `time` in the log)."""
        with self.lock:
            if len(self.recent) < 2:
                return None
            (s0, t0), (s1, t1) = self.recent[0], self.recent[-1]
        return (s1 - s0) * tokens_per_step / (t1 - t0) if t1 > t0 and s1 > s0 else None


class RunLogs:
    """The RunLog of every run a page has asked about, by id."""

    def __init__(self, runs: RunsDir):
        self.runs = runs
        self.logs: dict[str, RunLog] = {}
        self.lock = threading.Lock()

    def get(self, run: Run) -> RunLog:
        """This run's log, refreshed if it is older than REFRESH_S (reads files: call it off the event loop)."""
        with self.lock:
            log = self.logs.get(run.id)
            if log is None or log.run.path != run.path:
                log = self.logs[run.id] = RunLog(self.runs, run)
        log.refresh()
        return log


def _number(x) -> float | None:
    """A finite float from a log field, or None: NaN and inf (a skipped step, no evaluation yet) are not
    drawable and not JSON, and anything else is a torn or foreign record."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def _sample(rec: dict[str, Any]) -> dict[str, Any]:
    text = rec.get("text")
    return {
        "step": int(rec["step"]),
        "val_loss": _number(rec.get("val_loss")),
        "train_loss": _number(rec.get("train_loss")),
        "text": text if isinstance(text, str) else "",
    }


# --- the runs table's row ------------------------------------------------------------------------


def run_config(runs: RunsDir, run: Run) -> dict[str, Any]:
    """config.json as a dict ({} if unreadable), with model and train tables (maybe empty) in today's terms."""
    config = runs.read_json(run, "config.json")
    if not isinstance(config, dict):
        return {}
    for table in ("model", "train"):
        if not isinstance(config.get(table, {}), dict):
            config[table] = {}  # damaged: show the run without these settings rather than fail the page
    try:
        config["model"] = upgrade_model_table(config.get("model", {}), quiet=True)
    except UserError:
        pass
    return config


def tokens_per_step(config: dict[str, Any]) -> int:
    """Tokens one optimiser step learns from on one process (0 if the config doesn't say)."""
    train, model = config.get("train", {}), config.get("model", {})
    try:
        return int(train.get("batch_size", 0)) * int(train.get("grad_accum", 1)) * int(model.get("block_size", 0))
    except (TypeError, ValueError):
        return 0


def parameters(config: dict[str, Any]) -> int | None:
    """The model's parameter count from its config.json, or None if that doesn't describe a model."""
    try:
        model = build(ModelConfig, config.get("model", {}), "model")
    except (UserError, TypeError, ValueError):
        return None
    return count_params(model) if model.vocab_size > 0 else None  # no vocabulary: not a run's config


def mtime(path) -> float:
    """When a file was last written; 0 if it vanished since it was found (a run deleted under us)."""
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def describe(runs: RunsDir, run: Run, log: RunLog) -> dict[str, Any]:
    """A run as the runs table and /api/runs show it."""
    config = run_config(runs, run)
    summary = runs.read_json(run, "summary.json")
    summary = summary if isinstance(summary, dict) else {}
    status = runs.status(run)
    best_val, best_step = log.best()
    if status == "finished" and _number(summary.get("best_val_loss")) is not None:
        best_val, best_step = _number(summary["best_val_loss"]), summary.get("best_step")
    max_iters = config.get("train", {}).get("max_iters")
    speed = log.tokens_per_s(tokens_per_step(config)) if status == "running" else _number(summary.get("tokens_per_s"))
    rate = speed / tokens_per_step(config) if speed and tokens_per_step(config) else None
    eta = (max_iters - log.last_step) / rate if status == "running" and rate and isinstance(max_iters, int) else None
    mtimes = [mtime(p) for p in (runs.file(run, METRICS), runs.file(run, "config.json")) if p]
    return {
        "id": run.id,
        "name": run.name,
        "group": run.group,
        "group_kind": run.group_kind,
        "status": status,
        "chat": "finetune" in config,
        "config": {k: config[k] for k in ("model", "train", "finetune") if isinstance(config.get(k), dict)},
        "parameters": summary.get("parameters") if isinstance(summary.get("parameters"), int) else parameters(config),
        "best_val_loss": best_val,
        "best_step": best_step if isinstance(best_step, int) else None,
        "step": log.last_step,
        "max_iters": max_iters,
        "tokens_per_s": speed,
        "eta_s": max(0.0, eta) if eta is not None else None,
        "updated": max(mtimes, default=0.0),
        "checkpoints": runs.checkpoints(run),
        "snapshots": runs.snapshots(run),
    }
