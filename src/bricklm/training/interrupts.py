"""Stopping a run cleanly on Ctrl-C (SIGINT) or SIGTERM: finish the step or evaluation batch, save, exit 130 or 143.

    with StopSignals() as stop:
        while not stop.stop_now(dist.largest):        # dist.largest: every torchrun process agrees
            train_one_step()
            try:
                with stop.evaluation(show_progress, dist.largest) as progress:
                    evaluate(progress)                # progress(done, total) after every batch
            except EvaluationStopped:                 # a signal came: abandoned at a batch boundary
                break
    if stop.stop_now(dist.largest):
        path = save_checkpoint()
        raise stop.interrupted(step, path, run_dir, evaluating=..., main=...)   # the CLI exits with exc.exit_code

The first signal only sets a flag that the loop reads between steps, so a step (and the
optimiser update inside it) is never cut in half. Later signals are acknowledged and
ignored until the handlers are restored, so a second Ctrl-C can't tear the checkpoint being
written. (kill -9 can; the atomic write in checkpoint.py is what keeps that safe.)

An evaluation reads the flag between its batches (`StopSignals.evaluation`) and is abandoned
at the next one, since it can take minutes: it changes no weights, so the checkpoint of the
step it was scoring loses nothing, and its unfinished result is never recorded (the checkpoint
says so, and resuming runs that evaluation first). Under torchrun, `stop_now(dist.largest)`
asks every process at the same points, so all of them stop at the same step or evaluation
batch even when the signal reached only some.

A run also stops, with one clear line, when its loss or gradient norm stays non-finite for
max_nonfinite_steps steps in a row (NonFiniteSteps): each such step is skipped, not applied.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path

from bricklm.errors import UserError
from bricklm.storage import checkpoint as ckpt

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Raised after a clean stop: a KeyboardInterrupt, so loops over runs (sweeps) stop too, as Ctrl-C always did."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class EvaluationStopped(Exception):
    """An evaluation abandoned at a batch boundary for a stop signal (StopSignals.evaluation): it has no result."""


class StopSignals:
    """Turns SIGINT/SIGTERM into a flag while active (main thread only; elsewhere it does nothing)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.stopping = False  # stop_now said so: on every process at the same point, and for good
        self.evaluating = False  # inside evaluation(): what the handler says it will do
        self._previous: dict[int, object] = {}

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    @property
    def exit_code(self) -> int:
        """The shell's convention for death by a signal: 128 + its number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum if self.signum is not None else 0

    def stop_now(self, largest: Callable[[int], int] | None = None) -> bool:
        """Whether to stop here. largest (Dist.largest) asks every process, so all of them answer the same; a
        process that got no signal takes the number of one that did. Once True it stays True without asking."""
        if not self.stopping:
            agreed = largest(self.signum or 0) if largest else self.signum or 0
            if agreed and self.signum is None:
                self.signum = agreed  # the signal another process got
            self.stopping = bool(agreed)
        return self.stopping

    @contextlib.contextmanager
    def evaluation(self, progress: Callable[[int, int], None], largest: Callable[[int], int] | None = None):
        """Yields the progress(done, total) an evaluation reports to (done = 0 before its first batch): it tells
        `progress`, then, unless the evaluation is complete, asks stop_now(largest) and raises EvaluationStopped
        if it is time to stop. Every process asks at the same batches, so all of them stop at the same one (under
        torchrun, one all-reduce of one number per batch; alone, nothing)."""

        def check(done: int, total: int) -> None:
            progress(done, total)
            if done < total and self.stop_now(largest):
                raise EvaluationStopped(f"stopped after {done} of {total} evaluation batches")

        self.evaluating = True
        try:
            yield check
        finally:
            self.evaluating = False

    def interrupted(self, step: int, path: Path | None, run_dir: Path, *, evaluating: bool, main: bool) -> Interrupted:
        """What to raise once stopped: where (at `step`, or during its evaluation), what was saved (path, None if
        nothing: on every process but rank 0, or for weights that are not finite), and how to go on."""
        if path:
            where = f"checkpoint saved in {path}"
        else:
            where = "the weights are not finite, so nothing was saved" if main else "rank 0 saves"
        at = stopped_at(step, evaluating)
        return Interrupted(
            self.signum, f"{self.name}: stopped {at}; {where}; continue with: bricklm train --resume {run_dir}"
        )

    def _handle(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum
            doing = "stopping the evaluation at its next batch" if self.evaluating else "finishing this step"
            _say(f"\nbricklm: {signal.Signals(signum).name}: {doing}, then saving a checkpoint\n")
        else:
            _say(f"\nbricklm: {signal.Signals(signum).name} again: still stopping, the checkpoint is being saved\n")

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous)
        self._previous.clear()


def stopped_at(step: int, evaluating: bool) -> str:
    """Where a run stopped, in words: "at step 40", or "during the evaluation at step 40 (...)"."""
    if evaluating:
        return f"during the evaluation at step {step} (its result is not recorded: resuming runs it first)"
    return f"at step {step}"


def _say(text: str) -> None:
    # os.write, not print: a handler that prints while the loop is printing raises "reentrant call".
    try:
        os.write(2, text.encode("utf-8", "replace"))
    except OSError:
        pass


class NonFiniteSteps:
    """Counts steps skipped for a non-finite loss or gradient norm; too many in a row stop the run with a UserError."""

    def __init__(self, limit: int, run_dir: Path, say=print):
        self.limit, self.run_dir, self.say, self.streak = limit, run_dir, say, 0

    def count(self, step: int, skipped: bool) -> int:
        """1 if this step was skipped (said on the console), else 0."""
        self.streak = self.streak + 1 if skipped else 0
        if not skipped:
            return 0
        self.say(f"step {step}: loss or gradient norm not finite; step skipped (no update)")
        if self.streak >= self.limit:
            last = ckpt.latest_checkpoint(self.run_dir, required=False)
            raise UserError(
                f"training stopped at step {step}: the loss or gradient norm was not finite for "
                f"{self.streak} steps in a row (each skipped); the last good checkpoint is {last}; "
                f"lower --learning-rate or set --grad-clip, then `bricklm train --resume {self.run_dir}`"
            )
        return 1
