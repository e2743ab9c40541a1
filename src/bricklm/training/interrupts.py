"""Stopping a run cleanly on Ctrl-C (SIGINT) or SIGTERM: finish the step, save, exit 130 or 143.

    with StopSignals() as stop:
        while not stop.requested:
            train_one_step()
    if stop.requested:
        save_checkpoint()
        raise Interrupted(stop.signum, "checkpoint saved ...")   # the CLI exits with exc.exit_code

The first signal only sets a flag that the loop reads between steps, so a step (and the
optimiser update inside it) is never cut in half. Later signals are acknowledged and
ignored until the handlers are restored, so a second Ctrl-C can't tear the checkpoint being
written. (kill -9 can; the atomic write in checkpoint.py is what keeps that safe.)

A run also stops, with one clear line, when its loss or gradient norm stays non-finite for
max_nonfinite_steps steps in a row (NonFiniteSteps): each such step is skipped, not applied.
"""

from __future__ import annotations

import os
import signal
import threading
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


class StopSignals:
    """Turns SIGINT/SIGTERM into a flag while active (main thread only; elsewhere it does nothing)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    @property
    def exit_code(self) -> int:
        """The shell's convention for death by a signal: 128 + its number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum if self.signum is not None else 0

    def _handle(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum
            _say(f"\nbricklm: {signal.Signals(signum).name}: finishing this step, then saving a checkpoint\n")
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
