"""The console of a training run: progress, time left, advice on long evaluations; and its metrics lines.

console = Console(run_dir, cfg=train_cfg, bar=sys.stderr.isatty())
console.start(total=600, initial=0)
console.step(step, 600, loss, tokens_per_s, seconds_per_step)
console.append(record)                   # a line of metrics.jsonl (storage/metrics.py)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bricklm.config import TrainConfig
from bricklm.storage.metrics import append_record, read_metrics
from bricklm.storage.plots import plot_loss

LOG_EVERY_S = 30.0  # without a terminal: a progress line at most this often, in training and in evaluations
LONG_EVAL_S = 30.0  # an evaluation projected to take longer than this is announced, with how to shorten it


def duration(seconds: float) -> str:
    """45 s, 2.4 min, 1.3 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


class Console:
    """Where a training run's lines go: metrics.jsonl, loss.png and the console.

    On a terminal the console has a progress bar (messages print above it), and a second one while a
    long evaluation runs; without one (a log file, a notebook, CI) a line every LOG_EVERY_S seconds
    says the step, loss, tokens/s and time left (evaluations included), or how far an evaluation is,
    so a long run is never silent. The first evaluation that will take over LONG_EVAL_S is announced
    with its cost and how to shorten it. `enabled` is False on every process but rank 0.
    """

    def __init__(
        self,
        run_dir: Path,
        enabled: bool = True,
        log=print,
        bar: bool = False,
        every: float | None = None,
        cfg: TrainConfig | None = None,
    ):
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
            append_record(self.run_dir, record)

    def start(self, total: int, initial: int) -> None:
        self.last_line, self.at_step = time.monotonic(), initial
        if self.use_bar:
            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)

    def evals_left(self, step: int, total: int) -> int:
        """Evaluations after `step`: one every eval_interval steps, and one at the end."""
        interval = self.cfg.eval_interval
        return total // interval - step // interval + (total % interval != 0 and step < total)

    def step(
        self, step: int, total: int, loss: float, tokens_per_s: float, seconds_per_step: float, wall: float = 0.0
    ) -> None:
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
        """Close the progress bars (also an evaluation's that a stop signal cut short)."""
        for bar in (self.eval_bar, self.bar):
            if bar is not None:
                bar.close()
        self.bar = self.eval_bar = None

    def plot(self) -> None:
        if self.enabled:
            plot_loss(read_metrics(self.run_dir), self.run_dir / "loss.png")
