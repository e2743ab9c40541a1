"""What a training run says while it runs: progress lines without a terminal, how far an evaluation is, the
warning before long evaluations, why training stopped early, and the samples it shows."""

import json

import pytest
import torch

from bricklm.cli import main
from bricklm.config import TrainConfig
from bricklm.training import console
from bricklm.training.console import Console
from conftest import TINY_FLAGS


class Clock:
    """A stand-in for time.monotonic that moves only when told to."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(console.time, "monotonic", c)
    return c


def run_log(tmp_path, **cfg) -> tuple[Console, list[str]]:
    lines: list[str] = []
    return Console(tmp_path, log=lines.append, every=30.0, cfg=TrainConfig(**cfg)), lines


def evaluate(log: Console, clock: Clock, batches: int, per_batch: float) -> None:
    log.eval_progress(0, batches)
    for done in range(1, batches + 1):
        clock.now += per_batch
        log.eval_progress(done, batches)


def test_a_line_every_30_seconds_with_step_loss_speed_and_time_left_evaluations_included(tmp_path, clock):
    log, lines = run_log(tmp_path, max_iters=100, eval_interval=10, eval_iters=2)
    log.start(100, 0)
    evaluate(log, clock, 4, 2.5)  # an evaluation of 10 s
    assert lines == []  # under 30 s: nothing to say yet
    for step in range(1, 51):
        clock.now += 1.0  # 1 s per step
        log.step(step, 100, 2.0, 512.0, 1.0)
    # Time left = steps left at 1 s each + evaluations left (one every 10 steps) at the 10 s the first one took.
    assert lines == [
        "step 20/100: loss 2.0000, 512 tokens/s, ~2.7 min left",  # 80 s of steps + 8 evaluations
        "step 50/100: loss 2.0000, 512 tokens/s, ~1.7 min left",  # 50 s of steps + 5 evaluations
    ]


def test_with_a_time_budget_the_time_left_is_what_remains_of_it(tmp_path, clock):
    log, lines = run_log(tmp_path, max_iters=100000, eval_interval=1000, max_seconds=60.0)
    log.start(100000, 0)
    for step in range(1, 31):
        clock.now += 1.0
        log.step(step, 100000, 2.0, 512.0, 1.0, wall=float(step))
    # 99,970 steps at 1 s would be ~28 h; the budget ends the run 30 s from now (no evaluation timed yet).
    assert lines == ["step 30/100000: loss 2.0000, 512 tokens/s, ~30 s left"]


def test_a_long_evaluation_is_announced_once_with_its_cost_and_the_ways_to_shorten_it(tmp_path, clock):
    log, lines = run_log(tmp_path, max_iters=1400, eval_interval=100, eval_iters=100)
    log.start(1400, 0)
    evaluate(log, clock, 200, 0.75)  # the blog's 100 batches per split at 0.75 s each: 2.5 min
    assert lines[0] == (
        "each evaluation scores 200 batches and takes about 2.5 min here (15 in this run: ~37.5 min); "
        "--eval-iters 20 (now 100) would take about 30 s, and --eval-full scores the whole val split once "
        "instead of its random batches; a larger --eval-interval (now 100) evaluates less often"
    )
    # While it runs, a line every 30 s says how far it is.
    assert lines[1:] == [
        f"evaluating at step 0: {n}/200 batches, ~{duration} left"
        for n, duration in ((40, "2.0 min"), (80, "1.5 min"), (120, "60 s"), (160, "30 s"))
    ]
    lines.clear()
    evaluate(log, clock, 200, 0.75)
    assert not any("each evaluation" in line for line in lines)  # said once


def test_a_short_evaluation_says_nothing(tmp_path, clock):
    log, lines = run_log(tmp_path, eval_iters=2)
    log.start(10, 0)
    evaluate(log, clock, 4, 0.01)
    assert lines == [] and log.eval_times == [pytest.approx(0.04)]


def test_a_slow_first_batch_does_not_make_an_evaluation_look_long(tmp_path, clock):
    log, lines = run_log(tmp_path, eval_iters=5)
    log.start(10, 0)
    log.eval_progress(0, 10)
    clock.now += 20.0  # the first batch pays for warm-up
    log.eval_progress(1, 10)
    for done in range(2, 11):
        clock.now += 0.1
        log.eval_progress(done, 10)
    assert not any("each evaluation" in line for line in lines)  # 10 x 0.1 s, not 10 x 20 s


def test_the_estimate_with_eval_full_counts_the_train_batches_only(tmp_path, clock):
    log, lines = run_log(tmp_path, max_iters=100, eval_interval=100, eval_iters=100, eval_full=True)
    log.start(100, 0)
    evaluate(log, clock, 109, 1.0)  # 100 random train batches + 9 batches over the whole val split
    assert lines[0].startswith("each evaluation scores 109 batches and takes about 1.8 min here (2 in this run")
    assert "--eval-iters 20 (now 100) would take about 29 s;" in lines[0] and "--eval-full" not in lines[0]


def test_evaluation_progress_counts_every_batch_and_eval_full_skips_the_random_val_batches(tiny_corpus):
    from bricklm.config import ModelConfig
    from bricklm.model.gpt import GPT
    from bricklm.training.datasets import TokenDataset, full_split_batches, full_split_loss

    data = TokenDataset(tiny_corpus)
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=data.tokenizer.vocab_size, n_layer=1, n_head=2, n_embd=16, block_size=16))
    for eval_full in (False, True):
        cfg = TrainConfig(eval_iters=3, batch_size=4, eval_full=eval_full)
        seen: list[tuple[int, int]] = []
        losses = data.losses(model, cfg, 16, "cpu", progress=lambda done, total, seen=seen: seen.append((done, total)))
        total = 3 + (full_split_batches(data.val, 16, 4) if eval_full else 3)
        assert seen == [(k, total) for k in range(total + 1)]
        if eval_full:
            assert losses["val"] == full_split_loss(model, data.val, 16, 4)


def test_training_without_a_terminal_shows_evaluation_progress_and_why_it_stopped(
    tiny_corpus, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(console, "LOG_EVERY_S", 0.0)
    monkeypatch.setattr(console, "LONG_EVAL_S", 0.0)  # every evaluation counts as long
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_corpus), "--out", str(run), *TINY_FLAGS, "--target-val-loss", "50"]) == 0
    out = capsys.readouterr().out
    assert out.count("each evaluation scores 4 batches") == 1
    assert out.index("evaluating at step 0: 3/4 batches") < out.index("each evaluation scores")
    assert out.index("each evaluation scores") < out.index("step      0: train loss")
    assert "step 1/6: loss " in out and "evaluating at step 3: 1/4 batches" in out
    # The target stops training at the first evaluation after step 0; the console says so, and the summary too.
    assert "val loss " in out and "<= target 50 after" in out
    assert "stopped early:   val loss " in out and json.loads((run / "summary.json").read_text())["steps"] == 3


# --- samples ----------------------------------------------------------------------------------------


def test_training_samples_start_after_a_newline_at_temperature_0_8(tiny_run):
    from bricklm.model.generate import generate_text, sample_text
    from bricklm.storage.runs import load_run

    run = load_run(tiny_run)
    expected = generate_text(
        run.model, run.tokenizer, "\n", 30, generator=torch.Generator().manual_seed(5), temperature=0.8
    )
    assert sample_text(run.model, run.tokenizer, 30, seed=5) == expected


def test_two_runs_with_the_same_seed_but_different_names_draw_different_samples(tiny_corpus, tmp_path):
    summaries, samples = [], []
    for name in ("a", "b"):
        run = tmp_path / name
        assert main(["train", "--data", str(tiny_corpus), "--out", str(run), *TINY_FLAGS]) == 0
        summaries.append(json.loads((run / "summary.json").read_text()))
        samples.append([json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()])
    a, b = summaries
    assert a["val_loss"] == b["val_loss"]  # the same seed trained the same model ...
    assert a["sample"] != b["sample"]  # ... but each run draws its own sample
    assert [s["step"] for s in samples[0]] == [0, 3, 6]  # a sample at every evaluation
    assert [s["text"] for s in samples[0]] != [s["text"] for s in samples[1]]
    assert samples[0][-1]["text"] == a["sample"]  # the last evaluation's sample is the one the summary shows
