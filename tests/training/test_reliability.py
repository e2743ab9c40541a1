"""Faults a real run meets: Ctrl-C, SIGTERM, kill -9 mid-save, a second training, NaNs, a model too big,
bad config files and odd prompts. Signal tests use a real `python -m bricklm train` subprocess."""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bricklm.cli import main
from bricklm.errors import UserError
from bricklm.files import LOCK_NAME, RunLock
from bricklm.storage import checkpoint as ckpt
from bricklm.training.callbacks import Callback
from conftest import TINY_FLAGS
from runhelp import losses, metrics, steps, tensors, train, wait_for

ROOT = Path(__file__).resolve().parents[2]
LONG = ["--max-iters", "100000", "--eval-interval", "100000"]  # runs until signalled; saves only at step 0


def start(corpus, run, *flags, pause=None, log=None):
    """A `bricklm train` process; log: a file its output goes to as it is printed, instead of a pipe."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **({"PYTHONUNBUFFERED": "1"} if log else {})}
    if pause:
        env[ckpt.PAUSE_ENV] = pause
    cmd = [sys.executable, "-m", "bricklm", "train", "--data", str(corpus), "--out", str(run), *TINY_FLAGS, *flags]
    if log is None:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    with open(log, "w") as out:  # the child has its own copy of the file
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, text=True, env=env)


def trained_to(run, step):
    """True once metrics.jsonl shows training has reached `step` (a torn last line is fine)."""

    def check():
        try:
            lines = (run / "metrics.jsonl").read_text().splitlines()
        except FileNotFoundError:
            return False
        return any(f'"step": {step}, "loss"' in line for line in lines)

    return check


def saving(run, step=None):
    """True while a checkpoint save is in progress (its hidden temp dir holds model.safetensors)."""
    pattern = f".{ckpt.step_dir_name(step)}.tmp-*" if step is not None else ".step-*.tmp-*"
    return lambda: any((d / "model.safetensors").exists() for d in (run / "checkpoints").glob(pattern))


def saved_step(stderr: str) -> int:
    m = re.search(r"stopped at step (\d+); checkpoint saved in (\S+);", stderr)
    assert m, stderr
    ckpt.verify(Path(m.group(2)))
    return int(m.group(1))


# --- signals --------------------------------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_saves_and_resume_continues(tiny_corpus, tmp_path, capsys):
    run = tmp_path / "run"
    proc = start(tiny_corpus, run, *LONG)
    wait_for(trained_to(run, 2), proc, "step 2")
    # A second training of the same run directory, while the first is live, is refused.
    assert main(["train", "--resume", str(run)]) == 1
    assert f"already being trained by process {proc.pid}" in capsys.readouterr().err

    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 130, err
    assert f"continue with: bricklm train --resume {run}" in err.splitlines()[-1]
    step = saved_step(err)
    assert step >= 2 and steps(run)[-1] == step  # saved at the step it stopped, not the last evaluation
    assert not (run / LOCK_NAME).exists()

    assert main(["train", "--resume", str(run), "--max-iters", str(step + 2)]) == 0
    assert f"train.max_iters changed from 100000 to {step + 2}" in capsys.readouterr().out
    assert [m["step"] for m in metrics(run) if "loss" in m] == list(range(1, step + 3))


@pytest.mark.slow
def test_sigterm_then_ctrl_c_during_the_save_leaves_it_whole(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    proc = start(tiny_corpus, run, *LONG, pause="1:0.6")  # every save after step 0 takes ~3.6 s
    wait_for(trained_to(run, 2), proc, "step 2")
    proc.send_signal(signal.SIGTERM)
    wait_for(saving(run), proc, "the save to start")
    proc.send_signal(signal.SIGINT)  # the impatient second Ctrl-C, mid-save
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 143, err
    assert "again: still stopping" in err
    step = saved_step(err)
    assert steps(run) == [0, step]
    assert not list((run / "checkpoints").glob(".*"))


@pytest.mark.slow
def test_ctrl_c_inside_the_first_evaluation_saves_step_0_and_resume_is_exact(tiny_corpus, tmp_path, capsys):
    """The step-0 evaluation made endless (a million batches per split): Ctrl-C stops it at a batch boundary,
    saves step 0 (there was no checkpoint yet) and records nothing of it. Since its result was never recorded,
    the resumed run may score the recipe's usual 2 batches, and it then equals a run never stopped."""
    run, log = tmp_path / "run", tmp_path / "stdout.txt"
    proc = start(tiny_corpus, run, "--dropout", "0.1", "--eval-iters", "1000000", log=log)
    # The long-evaluation notice comes after its 4th batch: then the process is inside it, for half an hour.
    inside = lambda: log.exists() and "each evaluation scores 2000000 batches" in log.read_text()  # noqa: E731
    wait_for(inside, proc, "the step-0 evaluation")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=90)  # a bound against a hang: the evaluation would run on for ~30 min
    assert proc.returncode == 130, err
    assert "SIGINT: stopping the evaluation at its next batch, then saving a checkpoint" in err
    last = err.splitlines()[-1]
    assert "stopped during the evaluation at step 0 (its result is not recorded: resuming runs it first)" in last
    assert f"continue with: bricklm train --resume {run}" in last
    assert steps(run) == [0] and metrics(run) == []
    ckpt.verify(run / "checkpoints" / "step-000000000")

    assert main(["train", "--resume", str(run), "--eval-iters", "2"]) == 0
    assert "train.eval_iters changed from 1000000 to 2" in capsys.readouterr().out
    train(tiny_corpus, tmp_path / "straight", "--dropout", "0.1")
    assert losses(run) == losses(tmp_path / "straight")
    a, b = (tensors(r / "checkpoints" / "step-000000006") for r in (tmp_path / "straight", run))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_kill_9_during_a_save_loses_only_that_save(tiny_corpus, tmp_path, capsys):
    run = tmp_path / "run"
    proc = start(tiny_corpus, run, pause="1:5")  # TINY_FLAGS: 6 steps, saves at 0, 3, 6; killed mid-pause
    wait_for(saving(run, 3), proc, "the step-3 save to be half written")
    proc.kill()
    proc.communicate(timeout=30)
    assert steps(run) == [0]
    ckpt.verify(run / "checkpoints" / "step-000000000")
    assert (run / LOCK_NAME).exists()  # left behind by the dead process...
    assert main(["train", "--resume", str(run)]) == 0  # ...and it doesn't block the resume
    out = capsys.readouterr().out
    assert "took over the lock left by process" in out and "removed .step-000000003.tmp-" in out
    assert steps(run)[-1] == 6
    ckpt.verify(run / "checkpoints" / "step-000000006")
    assert not list((run / "checkpoints").glob(".*"))


# --- the lock -------------------------------------------------------------------------------


def test_a_second_training_of_a_run_directory_is_refused(tiny_corpus, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    with RunLock(run):
        assert main(["train", "--data", str(tiny_corpus), "--out", str(run), *TINY_FLAGS]) == 1
    err = capsys.readouterr().err
    assert f"already being trained by process {os.getpid()}" in err and err.count("\n") == 1
    assert not (run / "checkpoints").exists()


def test_a_stale_lock_file_is_taken_over(tmp_path):
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 999999, "host": "gone", "started": "yesterday"}))
    lock = RunLock(tmp_path)
    assert "process 999999 on gone" in lock.acquire()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists()


# --- non-finite loss or gradient ------------------------------------------------------------


class InfGrad(torch.autograd.Function):
    """Passes the loss through unchanged; its gradient comes back infinite."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


class PoisonStep(Callback):
    """Makes the step after `step` non-finite (loss or gradient), once; records the weights around it."""

    def __init__(self, step, kind):
        self.step, self.kind, self.weights = step, kind, {}

    def on_step(self, ctx, step, loss):
        self.weights[step] = [p.detach().clone() for p in ctx.model.parameters()]
        if step != self.step:
            return
        model = ctx.model

        def poisoned(x, y):
            del model.forward  # back to the class's forward after this one call
            logits, loss = type(model).forward(model, x, y)
            return logits, (loss * float("nan") if self.kind == "nan-loss" else InfGrad.apply(loss))

        model.forward = poisoned


@pytest.mark.parametrize("kind", ["nan-loss", "inf-grad"])
def test_a_non_finite_step_is_skipped_and_counted(tiny_corpus, tmp_path, kind):
    poison = PoisonStep(2, kind)
    result = train(tiny_corpus, tmp_path / "run", callbacks=[poison])
    assert result["steps"] == 6
    for before, after in zip(poison.weights[2], poison.weights[3], strict=True):
        assert torch.equal(before, after)  # step 3 made no update
    assert any(not torch.equal(a, b) for a, b in zip(poison.weights[3], poison.weights[4], strict=True))
    assert [m["step"] for m in metrics(tmp_path / "run") if m.get("skipped")] == [3]
    saved = ckpt.load_checkpoint(tmp_path / "run" / "checkpoints" / "step-000000006").trainer
    assert saved["train_state"]["skipped_steps"] == 1


class PoisonWeights(Callback):
    def on_step(self, ctx, step, loss):
        if step == 4:
            with torch.no_grad():
                ctx.model.head.weight[0, 0] = float("nan")  # every later loss is NaN


def test_k_non_finite_steps_in_a_row_stop_with_the_last_good_checkpoint_intact(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(UserError) as exc:
        train(tiny_corpus, run, "--max-iters", "9", "--max-nonfinite-steps", "3", callbacks=[PoisonWeights()])
    message = str(exc.value)
    assert "stopped at step 7" in message and "3 steps in a row" in message and "step-000000003" in message
    assert [m["step"] for m in metrics(run) if m.get("skipped")] == [5, 6, 7]
    assert steps(run) == [0, 3]  # the evaluation at step 6 refused to save non-finite weights
    c = ckpt.load_checkpoint(run / "checkpoints" / "step-000000003")
    assert all(bool(torch.isfinite(t).all()) for t in c.model.values())
    train(tiny_corpus, run, "--max-iters", "9", resume=True)  # lock released; goes on from the good checkpoint
    assert steps(run)[-1] == 9


# --- a model too big ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags",
    [
        ["--n-layer", "96", "--n-embd", "65536", "--n-head", "64"],  # ~3e12 parameters
        ["--batch-size", "1000000000"],  # tiny model, absurd activations
    ],
    ids=["huge-model", "huge-batch"],
)
def test_a_model_too_big_is_refused_before_allocating(tiny_corpus, tmp_path, capsys, monkeypatch, flags):
    import bricklm.training.trainer as train_module

    def no_allocation(*a, **k):
        raise AssertionError("the model was built")

    monkeypatch.setattr(train_module, "GPT", no_allocation)
    assert main(["train", "--data", str(tiny_corpus), "--out", str(tmp_path / "r"), *TINY_FLAGS, *flags]) == 1
    err = capsys.readouterr().err
    assert re.search(r"needs about [\d,.]+ GiB to train .* but only [\d.]+ GiB is free", err), err
    assert err.count("\n") == 1 and not (tmp_path / "r" / "checkpoints").exists()


def test_no_memory_check_lets_a_refused_model_try(tiny_corpus, tmp_path, capsys, monkeypatch):
    import bricklm.training.hardware as hardware

    monkeypatch.setattr(hardware, "available_memory_bytes", lambda: 1024)  # a machine with 1 KiB free
    args = ["train", "--data", str(tiny_corpus), *TINY_FLAGS]
    assert main([*args, "--out", str(tmp_path / "a")]) == 1
    assert "--no-memory-check" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "b"), "--no-memory-check"]) == 0


def test_the_estimate_counts_weights_gradients_and_adam(monkeypatch):
    from bricklm.config import ModelConfig, TrainConfig
    from bricklm.model.gpt import count_params
    from bricklm.training.hardware import estimate_memory_bytes

    m = ModelConfig(vocab_size=100, n_layer=2, n_embd=64, n_head=4, block_size=32)
    assert estimate_memory_bytes(m, TrainConfig(batch_size=1)) > 16 * count_params(m)
    assert estimate_memory_bytes(m, TrainConfig(batch_size=64)) > estimate_memory_bytes(m, TrainConfig(batch_size=1))
    t = TrainConfig(batch_size=32)

    def est(**kw):
        return estimate_memory_bytes(ModelConfig(vocab_size=100, block_size=256, **kw), t)

    # Paths that keep the T x T attention matrices cost more; fused sdpa without dropout keeps none.
    assert est(attention="manual", dropout=0.1) > est(attention="manual") > est(attention="sdpa")
    assert est(attention="sdpa", dropout=0.1) > est(attention="sdpa") >= est(attention="none")


def test_available_memory_is_known_here():
    from bricklm.training.hardware import available_memory_bytes

    have = available_memory_bytes()
    assert have is None or 0 < have <= os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


# --- bad config files -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, message",
    [
        ('[model]\nn_layer = "four"\n', "model.n_layer must be a int"),
        ("[model]\nn_layer = true\n", "model.n_layer must be a int"),
        ("[model]\nn_layer = 2.5\n", "model.n_layer must be a int"),
        ("[model]\nn_layers = 3\n", "unknown key model.n_layers"),
        ("[training]\nmax_iters = 3\n", "unknown table [training]"),
        ("model = 3\n", "must be a table"),
        ("[model]\nn_embd = -16\n", "model.n_embd must be a positive integer"),
        ("[train]\nbatch_size = 0\n", "train.batch_size must be a positive integer"),
        ("[train]\nmax_iters = -5\n", "train.max_iters must be >= 0"),
        ("[train]\nkeep_last = 0\n", "train.keep_last must be a positive integer"),
        ("[train]\nmax_nonfinite_steps = 0\n", "train.max_nonfinite_steps must be a positive integer"),
        ("[train]\nlearning_rate = nan\n", "train.learning_rate must be a finite number"),
        ("[train]\nmin_lr = inf\n", "train.min_lr must be a finite number"),
        ("[model]\ndropout = 1.5\n", "model.dropout must be in [0, 1)"),
        ('[model]\nattention = "flash"\n', "model.attention must be one of"),
        ("[train]\ndevice = 3\n", "train.device must be a str"),
        ("[model]\nn_layer = 3\nn_layer = 4\n", "invalid TOML"),
        ("not toml at all", "invalid TOML"),
        (b"[model]\n\xff\xfe = 1\n", "not UTF-8 text"),
        ("[model]\nn_layer = 9223372036854775807\n", "GiB to train"),
    ],
)
def test_bad_config_files_are_one_line_errors(tiny_corpus, tmp_path, capsys, text, message):
    recipe = tmp_path / "r.toml"
    recipe.write_bytes(text if isinstance(text, bytes) else text.encode())
    # No other flags: they would override the file. Every case fails before a model is built.
    code = main(["train", "--config", str(recipe), "--data", str(tiny_corpus), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 1 and message in err and err.count("\n") == 1, err


@pytest.mark.parametrize("where, message", [("missing.toml", "not found"), (".", "cannot read config")])
def test_config_path_problems(tmp_path, capsys, where, message):
    assert main(["train", "--config", str(tmp_path / where), "--out", str(tmp_path / "r")]) == 1
    assert message in capsys.readouterr().err


def test_non_finite_flag_values_are_refused(tmp_path, capsys):
    assert main(["train", "--learning-rate", "nan", "--out", str(tmp_path / "r")]) == 1
    assert "finite" in capsys.readouterr().err


# --- prompts of odd Unicode -----------------------------------------------------------------


@pytest.mark.parametrize(
    "prompt",
    ["", "The ", "The " * 40, "e\u0301", "\u200d", "\u202eThe", "🙂", "\udcff", "\x00", "\r\n", "ﬁ", "Ⅻ", "\ufeff"],
    ids=lambda p: repr(p)[:12],
)
def test_odd_prompts_sample_or_fail_in_one_line(tiny_run, capsys, prompt):
    code = main(["sample", "--run", str(tiny_run), "--prompt", prompt, "--max-new-tokens", "5"])
    out, err = capsys.readouterr()
    if code == 0:  # stderr holds only the copying meter's one line for the sample
        assert out.startswith(prompt) and len(err.splitlines()) == 1 and err.startswith("copied: longest ")
    else:
        assert code == 1 and err.startswith("bricklm: error: prompt has characters not in the vocabulary")
        assert err.count("\n") == 1


def test_a_decomposed_prompt_matches_the_composed_vocabulary():
    from bricklm.model.generate import encode_prompt
    from bricklm.text.tokenizer import CharTokenizer

    tok = CharTokenizer(["a", "é"])
    assert encode_prompt(tok, "ae\u0301").tolist() == [[0, 1]]  # NFD input, NFC corpus


def test_disk_full_outside_a_checkpoint_is_one_line_too(tiny_corpus, tmp_path, capsys, monkeypatch):
    import errno

    from bricklm.training.console import Console

    def full(self, record):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.run_dir / "metrics.jsonl"))

    monkeypatch.setattr(Console, "append", full)
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_corpus), "--out", str(run), *TINY_FLAGS]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bricklm: error: disk full: No space left on device") and err.count("\n") == 1
    assert not (run / LOCK_NAME).exists()  # released on the way out


def test_recomputing_activations_brings_the_blogs_sweep_row_4_into_a_laptops_memory():
    from bricklm.recipes import read_toml, resolve
    from bricklm.training.hardware import estimate_memory_bytes

    spec = read_toml(ROOT / "configs" / "seed" / "sweep.toml", extra_tables=("runs",))
    row4 = {**spec["runs"][3], "vocab_size": 107}
    model, train = resolve(spec, None, row4)
    assert train.recompute_activations
    assert estimate_memory_bytes(model, train) < 8 * 2**30  # ~4 GiB; measured peak in docs/results.md
    model, without = resolve(spec, None, {**row4, "recompute_activations": False})
    assert estimate_memory_bytes(model, without) > 50 * 2**30  # every layer's T x T weights, kept: ~119 GiB
