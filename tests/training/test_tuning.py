"""Tuning (attention/dtype/threads = auto): measured with the machine's load, re-measured when a busy measurement
meets a quiet machine, recorded in the run and reused on resume (bit-exact), shown and redone by `bricklm tune`.

conftest.py turns measuring off for the rest of the suite (BRICKLM_TUNE=off); these tests turn it back on, each
with its own cache folder, and measure only the thread count of tiny shapes (no kernel to compile) or stand in
for the measurement where what is under test is what happens to its result.
"""

import json
from pathlib import Path

import pytest
import tomllib
import torch

from bricklm.cli import main
from bricklm.recipes import load_config
from bricklm.storage.runs import load_run
from bricklm.training import tuning
from bricklm.training.interrupts import Interrupted
from runhelp import SignalAt, losses, tensors, train

ROOT = Path(__file__).resolve().parents[2]
TINY_SHAPE = dict(vocab_size=11, n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4)


@pytest.fixture
def tuning_on(tmp_path, monkeypatch):
    """Measuring on, into a cache folder of the test's own; returns the cache file."""
    monkeypatch.delenv(tuning.TUNE_ENV, raising=False)
    monkeypatch.setenv(tuning.CACHE_ENV, str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    yield tmp_path / "cache" / "tuning.json"
    torch.set_num_threads(threads)  # tune() sets the process's thread count to its choice


@pytest.fixture
def measured(monkeypatch):
    """Counts the real measurements tune() makes."""
    calls = []
    real = tuning._measure

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(tuning, "_measure", counting)
    return calls


def threads_only(**changes):
    return load_config(None, {**TINY_SHAPE, "attention": "sdpa", "dtype": "float32", "threads": -1, **changes})


def test_measuring_off_means_the_plain_settings_and_no_cache(tmp_path, monkeypatch, measured):
    monkeypatch.setenv(tuning.CACHE_ENV, str(tmp_path))  # conftest set BRICKLM_TUNE=off
    model_cfg, train_cfg = load_config(None, {**TINY_SHAPE, "attention": "auto", "dtype": "auto", "threads": -1})
    t = tuning.tune(model_cfg, train_cfg, torch.device("cpu"), lambda *a: None)
    assert (t.kernel, t.dtype, t.threads) == ("sdpa", "float32", 0) and not measured
    assert not (tmp_path / "tuning.json").exists()


def test_the_defaults_are_auto_and_the_blogs_recipes_keep_float32():
    model_cfg, train_cfg = load_config(None, {})
    assert (model_cfg.attention, train_cfg.threads, train_cfg.dtype) == ("auto", -1, "auto")
    for recipe in ("ablation-200k", "headline-10m", "overfit-800k", "processors-800k", "sweep"):  # the blog's maths
        assert tomllib.loads((ROOT / "configs" / "seed" / f"{recipe}.toml").read_text())["train"]["dtype"] == "float32"


def test_a_busy_measurement_is_kept_while_busy_and_measured_again_when_quiet(tuning_on, measured, monkeypatch):
    model_cfg, train_cfg = threads_only()
    said = []
    monkeypatch.setattr(tuning, "_load", lambda since=None: 1000.0)  # far past any machine's core count
    first = tuning.tune(model_cfg, train_cfg, torch.device("cpu"), said.append)
    entry = next(iter(json.loads(tuning_on.read_text()).values()))
    assert len(measured) == 1 and entry["loaded"] and entry["load"][0] > 9 and entry["measured_at"]
    assert "the machine was busy" in said[-1] and first.threads >= 1 and len(entry["timings"]) >= 1

    tuning.tune(model_cfg, train_cfg, torch.device("cpu"), said.append)  # still busy: the busy choice stands
    assert len(measured) == 1 and "and it still is" in said[-1]

    monkeypatch.setattr(tuning, "_load", lambda since=None: 0.0)  # quiet now: measured again, and marked quiet
    tuning.tune(model_cfg, train_cfg, torch.device("cpu"), said.append)
    entry = next(iter(json.loads(tuning_on.read_text()).values()))
    assert len(measured) == 2 and not entry["loaded"] and entry["load"] == [0.0, 0.0]
    assert "measured now" in said[-1] and "the machine was busy" not in said[-1]

    tuning.tune(model_cfg, train_cfg, torch.device("cpu"), said.append)  # a quiet measurement is kept for good
    assert len(measured) == 2 and "measured earlier" in said[-1]


def test_an_entry_from_before_the_load_was_recorded_counts_as_busy(tuning_on, measured, monkeypatch):
    model_cfg, train_cfg = threads_only()
    key = tuning.cache_key(model_cfg, train_cfg, torch.device("cpu"), ["threads"])
    tuning_on.parent.mkdir()
    tuning_on.write_text(json.dumps({key: {"kernel": "sdpa", "dtype": "float32", "threads": 1, "timings": {}}}))
    monkeypatch.setattr(tuning, "_load", lambda since=None: 0.0)
    tuning.tune(model_cfg, train_cfg, torch.device("cpu"), lambda *a: None)
    assert len(measured) == 1 and json.loads(tuning_on.read_text())[key]["load"] == [0.0, 0.0]


def test_an_explicit_setting_is_part_of_the_shape_measured(tuning_on, measured):
    """Threads timed in float32 say nothing of bf16: each explicit dtype gets its own measurement, and keeps it."""
    for dtype in ("float32", "bfloat16", "bfloat16"):
        t = tuning.tune(*threads_only(dtype=dtype), torch.device("cpu"), lambda *a: None)
        assert t.dtype == dtype
    assert len(measured) == 2 and len(json.loads(tuning_on.read_text())) == 2


def test_the_fastest_round_counts_not_the_median(tuning_on, monkeypatch):
    """A burst of load in one round must not decide: the minimum of the rounds does."""
    model_cfg, train_cfg = threads_only()
    # 1 thread, then 2, per round: a warm-up, then three rounds. The medians (0.2 vs 5.0) would pick 1 thread;
    # the fastest rounds (0.2 vs 0.1) pick 2.
    durations = iter([1.0, 1.0, 5.0, 0.1, 0.2, 5.0, 0.2, 5.0])
    monkeypatch.setattr(tuning, "_step_seconds", lambda *args: next(durations))
    monkeypatch.setattr(tuning.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(tuning, "_load", lambda since=None: 0.0)
    t = tuning.tune(model_cfg, train_cfg, torch.device("cpu"), lambda *a: None)
    assert t.threads == 2 and t.timings == {"sdpa/float32/1 threads": 0.2, "sdpa/float32/2 threads": 0.1}


def test_kernel_and_dtype_are_measured_together(tuning_on, monkeypatch):
    """Measured on a Zen 4: sdpa is fastest in float32 and slowest in bf16, where the math kernel wins overall;
    picking the kernel in float32 first would never try math in bf16."""
    seconds = {
        ("sdpa", "float32"): 0.147,
        ("math", "float32"): 0.288,
        ("compiled", "float32"): 0.181,
        ("sdpa", "bfloat16"): 0.190,
        ("math", "bfloat16"): 0.096,
        ("compiled", "bfloat16"): 0.118,
    }
    monkeypatch.setattr(
        tuning, "_step_seconds", lambda model, x, device, kernel, dtype, threads: seconds[kernel, dtype]
    )
    monkeypatch.setattr(tuning, "_load", lambda since=None: 0.0)
    model_cfg, train_cfg = load_config(None, {**TINY_SHAPE, "attention": "auto", "dtype": "auto", "threads": 1})
    t = tuning.tune(model_cfg, train_cfg, torch.device("cpu"), lambda *a: None)
    assert (t.kernel, t.dtype) == ("math", "bfloat16") and len(t.timings) == 6


def test_a_resumed_run_reuses_the_choice_it_trained_with_bit_for_bit(tiny_corpus, tmp_path, tuning_on, monkeypatch):
    """Straight 8 steps == 4 steps, stop, the cache changed to another kernel, resume: the run's own choice wins."""

    def measure_math(model_cfg, train_cfg, device, t, wanted):  # stands in for a measurement that chose math
        return tuning.Tuning(kernel="math", dtype=t.dtype, threads=1, timings={}, load=[0.0, 0.0])

    monkeypatch.setattr(tuning, "_measure", measure_math)
    flags = ["--dropout", "0.1", "--max-iters", "8", "--eval-interval", "3", "--attention", "auto", "--threads", "auto"]
    train(tiny_corpus, tmp_path / "straight", *flags)
    with pytest.raises(Interrupted):
        train(tiny_corpus, tmp_path / "split", *flags, callbacks=[SignalAt(4)])
    assert json.loads((tmp_path / "split" / tuning.RUN_FILE).read_text())["kernel"] == "math"

    cache = json.loads(tuning_on.read_text())
    edited = {k: {**v, "kernel": "sdpa", "dtype": "bfloat16", "threads": 2} for k, v in cache.items()}
    tuning_on.write_text(json.dumps(edited))
    monkeypatch.setattr(tuning, "_measure", lambda *a: pytest.fail("a resumed run measured again"))
    said = []
    log = lambda *a, **k: said.append(" ".join(map(str, a)))  # noqa: E731
    train(tiny_corpus, tmp_path / "split", *flags, resume=True, log=log)
    assert any("kernel math, dtype float32, 1 thread (the choice this run trained with" in s for s in said)
    assert losses(tmp_path / "split") == losses(tmp_path / "straight")
    a = tensors(tmp_path / "straight" / "checkpoints" / "step-000000008")
    b = tensors(tmp_path / "split" / "checkpoints" / "step-000000008")
    for key in a:
        assert torch.equal(a[key], b[key]), key
    m1, m2 = load_run(tmp_path / "straight", "last").model, load_run(tmp_path / "split", "last").model
    for (name, p1), (_, p2) in zip(m1.state_dict().items(), m2.state_dict().items(), strict=True):
        assert torch.equal(p1, p2), name


SHAPE_FLAGS = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4"]


def test_tune_command_lists_measures_once_and_retunes(tuning_on, measured, monkeypatch, capsys):
    monkeypatch.setattr(tuning, "_load", lambda since=None: 0.0)
    assert main(["tune"]) == 0
    assert "0 measured choices" in capsys.readouterr().out and not measured

    flags = [*SHAPE_FLAGS, "--attention", "sdpa", "--dtype", "float32", "--threads", "auto"]
    assert main(["tune", *flags]) == 0
    out = capsys.readouterr().out
    assert "measured now" in out and "1 measured choice in" in out and len(measured) == 1
    assert "n_embd=16 n_head=2 block_size=16" in out and "batch_size=4 dtype=float32 threads=auto" in out
    assert (
        "chose 1 thread (" in out or "chose 2 threads (" in out
    ) and "used 0.0 cores before, 0.0 while measuring: quiet" in out
    assert "fastest probe step: sdpa/float32/1 threads" in out

    assert main(["tune", *flags]) == 0
    assert "measured earlier" in capsys.readouterr().out and len(measured) == 1
    assert main(["tune", *flags, "--retune"]) == 0
    assert "measured now" in capsys.readouterr().out and len(measured) == 2
    assert main(["tune"]) == 0
    assert "1 measured choice" in capsys.readouterr().out and len(measured) == 2


def test_tune_command_refuses_what_it_cannot_measure(tuning_on, measured, monkeypatch, capsys):
    assert main(["tune", *SHAPE_FLAGS, "--attention", "sdpa", "--threads", "2", "--dtype", "float32"]) == 1
    assert "nothing to tune" in capsys.readouterr().err
    monkeypatch.setenv(tuning.TUNE_ENV, "off")
    assert main(["tune", "--retune"]) == 1
    assert "BRICKLM_TUNE=off" in capsys.readouterr().err and not measured and not tuning_on.exists()


def test_without_a_compiler_the_compiled_kernel_drops_out_of_the_probe(tuning_on, monkeypatch, capsys):
    from bricklm.model.fastpaths import ATTENTION_KERNELS

    def no_compiler(fn, **kwargs):
        raise RuntimeError("no C compiler here")

    compiled = ATTENTION_KERNELS["compiled"]
    monkeypatch.setattr(compiled, "compiled", None)  # a fresh kernel, put back as it was afterwards
    monkeypatch.setattr(compiled, "failed", False)
    monkeypatch.setattr(torch, "compile", no_compiler)
    model_cfg, train_cfg = load_config(None, {**TINY_SHAPE, "attention": "auto", "dtype": "float32", "threads": 1})
    t = tuning.tune(model_cfg, train_cfg, torch.device("cpu"), print)
    assert t.kernel in ("sdpa", "math") and set(t.timings) == {"sdpa/float32/1 threads", "math/float32/1 threads"}
    out = capsys.readouterr().out
    assert "running it eagerly" in out and "tuned: attention kernel" in out


def test_the_load_is_other_processes_cpu_not_this_ones(monkeypatch):
    """What a probe competes with: all CPU time used since the reading, less this process's own (the 1-minute load
    average would count both, and a run that has just ended too)."""
    before = tuning.CpuReading(wall=100.0, busy=500.0, own=20.0)
    monkeypatch.setattr(tuning, "_cpu_reading", lambda: tuning.CpuReading(wall=102.0, busy=504.0, own=23.0))
    assert tuning._load(before) == pytest.approx(0.5)  # 4 CPU-seconds in 2 s, 3 of them this process's: half a core
    monkeypatch.setattr(tuning, "_cpu_reading", lambda: tuning.CpuReading(wall=102.0, busy=None, own=23.0))
    monkeypatch.setattr(tuning.os, "getloadavg", lambda: (2.0, 2.0, 2.0))  # no /proc/stat: the load average less own
    assert tuning._load(tuning.CpuReading(wall=100.0, busy=None, own=20.0)) == pytest.approx(0.5)


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="other processes' CPU time is read from /proc/stat")
def test_a_process_spinning_beside_counts_as_load():
    import subprocess
    import sys
    import time

    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # started and spinning
        assert tuning._load() > 0.5
    finally:
        spinner.kill()
        spinner.wait()
