"""A stop signal inside an evaluation: it stops at the next batch boundary, nothing of it is recorded, the step's
checkpoint is saved, and resuming runs that evaluation first, so the run ends exactly as one never stopped.

In-process with real signals (the trainer's own handler catches them), sent from the evaluation's progress
report so that each lands after a chosen batch. A real `bricklm train` process signalled from outside is in
test_reliability.py; two torchrun processes, one of them signalled, in test_distributed.py.
"""

import json
import os
import signal

import pytest
import torch

from bricklm.storage import checkpoint as ckpt
from bricklm.training.callbacks import Callback
from bricklm.training.interrupts import EvaluationStopped, Interrupted, StopSignals
from runhelp import losses, metrics, steps, tensors, train, trainer

EVALS = (0, 3, 6)  # TINY_FLAGS: 6 steps, an evaluation every 3


class Evaluations(Callback):
    """The step of every evaluation a callback is shown."""

    def __init__(self):
        self.steps = []

    def on_eval(self, ctx, record):
        self.steps.append(record["step"])


def signal_inside_evaluation(t, step: int, after: int, signum=signal.SIGINT) -> list[tuple[int, int, int]]:
    """Make trainer t send itself `signum` once the evaluation at `step` has scored `after` batches (negative:
    that many before its last). Returns (step, batches done, batches in all) for every report of every evaluation."""
    seen = []
    report = t.out.eval_progress

    def progress(done, total):
        report(done, total)
        seen.append((t.state.step, done, total))
        if t.state.step == step and done == after % total:
            os.kill(os.getpid(), signum)

    t.out.eval_progress = progress
    return seen


def trainer_state(run, step: int) -> dict:
    return ckpt.load_checkpoint(run / ckpt.CHECKPOINTS / ckpt.step_dir_name(step)).trainer["train_state"]


# --- the check at each batch boundary ---------------------------------------------------------


def test_an_evaluation_stops_at_the_first_batch_boundary_after_the_signal():
    stop, reported = StopSignals(), []
    with stop.evaluation(lambda done, total: reported.append(done)) as progress:
        progress(0, 5)
        progress(1, 5)
        stop.signum = signal.SIGINT  # what the handler does when the signal comes
        with pytest.raises(EvaluationStopped):
            progress(2, 5)
        assert stop.evaluating
    assert reported == [0, 1, 2] and stop.stopping and not stop.evaluating


def test_the_last_batch_completes_the_evaluation():
    stop = StopSignals()
    with stop.evaluation(lambda done, total: None) as progress:
        stop.signum = signal.SIGTERM
        progress(5, 5)  # every batch is scored: the result is kept, the loop stops after it
    assert stop.stop_now()


def test_every_process_stops_at_the_same_batch():
    """Under torchrun: a process the signal never reached stops at the batch where another one's signal is seen,
    and with that signal; once agreed, nobody asks again (the others stopped asking too)."""
    asked = []

    def largest(mine: int) -> int:  # Dist.largest, with another process that got SIGTERM before boundary 3
        asked.append(mine)
        return max(mine, signal.SIGTERM if len(asked) == 4 else 0)

    stop = StopSignals()
    with stop.evaluation(lambda done, total: None, largest) as progress:
        for done in range(3):
            progress(done, 10)
        with pytest.raises(EvaluationStopped):
            progress(3, 10)
    assert asked == [0, 0, 0, 0] and stop.signum == signal.SIGTERM
    assert stop.stop_now(largest) and len(asked) == 4


def test_the_handler_says_the_evaluation_stops_at_its_next_batch(capfd):
    with StopSignals() as stop, stop.evaluation(lambda done, total: None) as progress:
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(EvaluationStopped):
            progress(1, 4)
    assert "SIGINT: stopping the evaluation at its next batch, then saving a checkpoint" in capfd.readouterr().err


# --- a training run -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra, step, after, signum",
    [
        ([], 0, 0, signal.SIGINT),  # before the first batch of the first evaluation: no checkpoint exists yet
        ([], 3, -2, signal.SIGINT),
        (["--ema", "0.9"], 3, 1, signal.SIGINT),  # the averaged weights being scored go back
        (["--eval-full"], 3, -2, signal.SIGINT),  # inside the whole-split pass over val
        ([], 6, -2, signal.SIGTERM),  # the last evaluation: the run is not finished until it is recorded
    ],
    ids=["step-0", "mid-run", "ema", "eval-full", "last-step"],
)
def test_a_signal_inside_an_evaluation_stops_it_and_resume_is_exact(tiny_corpus, tmp_path, extra, step, after, signum):
    flags = ["--dropout", "0.1", "--eval-iters", "3", *extra]
    train(tiny_corpus, tmp_path / "straight", *flags)
    run, shown = tmp_path / "split", Evaluations()
    t = trainer(tiny_corpus, run, *flags, callbacks=[shown])
    seen = signal_inside_evaluation(t, step, after, signum)
    with pytest.raises(Interrupted) as exc:
        t.run()

    last_step, done, total = seen[-1]
    assert (last_step, done) == (step, after % total)  # not one batch scored after the signal
    assert exc.value.exit_code == 128 + signum
    message = str(exc.value)
    assert f"stopped during the evaluation at step {step} (its result is not recorded" in message
    assert f"checkpoint saved in {run / 'checkpoints' / ckpt.step_dir_name(step)}" in message
    assert message.endswith(f"continue with: bricklm train --resume {run}")
    # The unfinished evaluation left no trace: no metrics line, no best mark, no callback saw it.
    before = [s for s in EVALS if s < step]
    assert [m["step"] for m in metrics(run) if m.get("eval")] == shown.steps == before
    assert [m["step"] for m in metrics(run) if "loss" in m] == list(range(1, step + 1))
    assert steps(run)[-1] == step and trainer_state(run, step)["eval_pending"] is True
    best = run / "checkpoints" / ckpt.BEST
    assert json.loads(best.read_text())["step"] in before if before else not best.exists()

    resumed = Evaluations()
    train(tiny_corpus, run, *flags, resume=True, callbacks=[resumed])
    assert resumed.steps == [s for s in EVALS if s >= step]  # the cut-short evaluation first
    assert losses(run) == losses(tmp_path / "straight")
    assert trainer_state(run, 6)["eval_pending"] is False
    assert (run / "checkpoints" / ckpt.BEST).read_text() == (
        tmp_path / "straight" / "checkpoints" / ckpt.BEST
    ).read_text()
    a = tensors(tmp_path / "straight" / "checkpoints" / "step-000000006")
    b = tensors(run / "checkpoints" / "step-000000006")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


class SignalOnEval(Callback):
    """Sends this process SIGINT when shown the evaluation at `step`: after it is recorded, before it is saved."""

    def __init__(self, step):
        self.step = step

    def on_eval(self, ctx, record):
        if record["step"] == self.step:
            os.kill(os.getpid(), signal.SIGINT)


def test_resuming_a_finished_first_evaluation_does_not_run_it_again(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(Interrupted) as exc:
        train(tiny_corpus, run, callbacks=[SignalOnEval(0)])
    assert "stopped at step 0; checkpoint saved in" in str(exc.value)
    assert steps(run) == [0] and trainer_state(run, 0)["eval_pending"] is False
    resumed = Evaluations()
    train(tiny_corpus, run, resume=True, callbacks=[resumed])
    assert resumed.steps == [3, 6]
    assert [m["step"] for m in metrics(run) if m.get("eval")] == list(EVALS)  # step 0's once, not twice
