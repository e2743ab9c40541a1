"""sweep, ablate, bench-devices, overfit, samples-by-loss, report, early stopping, the seed recipes."""

import json
from pathlib import Path

import pytest
import torch

from bricklm.cli import main
from bricklm.model.gpt import count_params
from bricklm.recipes import load_config
from conftest import TINY_FLAGS, tiny_flags

SEED = Path(__file__).resolve().parents[2] / "configs" / "seed"
PNG = b"\x89PNG\r\n\x1a\n"
BLOG_ROWS = [
    "Parameters",
    "Layers",
    "Embedding",
    "Heads",
    "Batch size",
    "Block size",
    "Learning rate",
    "Dropout",
    "Iterations",
    "Training time (s)",
    "Train loss",
    "Validation loss",
]

TINY_SPEC = """
[meta]
name = "tiny"
[model]
n_layer = 1
n_head = 2
block_size = 16
[train]
batch_size = 4
max_iters = 6
eval_interval = 3
eval_iters = 2
sample_chars = 10
device = "cpu"
[[runs]]
n_embd = 8
[[runs]]
n_embd = 16
[[runs]]
n_embd = 16
learning_rate = 1e-2
"""


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG


# --- recipes -------------------------------------------------------------------------------


def recipe_params(path: Path, **overrides) -> int:
    model, _ = load_config(path, overrides)
    model.vocab_size = 107  # the blog's vocabulary
    return count_params(model)


def test_seed_recipes_match_the_blogs_parameter_counts():
    assert recipe_params(SEED / "headline-10m.toml") == 10_327_659
    assert 790_000 < recipe_params(SEED / "overfit-800k.toml") < 830_000  # "~800k"
    assert recipe_params(SEED / "processors-800k.toml") == recipe_params(SEED / "overfit-800k.toml")
    assert 200_000 < recipe_params(SEED / "ablation-200k.toml") < 220_000  # "~200k"
    from bricklm.experiments.plan import plan_sweep, read_sweep_spec

    spec = read_sweep_spec(SEED / "sweep.toml")
    plan = plan_sweep(spec, {}, "sweep.toml")
    counts = []
    for run in plan:
        run.model.vocab_size = 107
        counts.append(count_params(run.model))
    assert counts == [5_451, 31_339, 212_331, 1_621_611]
    assert [r.train.max_iters for r in plan] == [1000] * 4


def test_seed_recipes_are_the_blogs_training_setup():
    for path in SEED.glob("*.toml"):
        if path.name == "sweep.toml":
            continue
        model, train = load_config(path)
        assert (model.attention, model.activation, model.positional) == ("torch_mha", "relu", "learned"), path
        assert (train.schedule, train.warmup_iters, train.grad_clip) == ("constant", 0, 0.0), path
        assert (train.weight_decay, train.beta1, train.beta2) == (0.01, 0.9, 0.999), path
        assert (train.eval_interval, train.eval_iters) == (100, 100), path
        from bricklm.recipes import read_toml

        assert "--split tail" in read_toml(path)["meta"]["corpus"]


# --- sweep ---------------------------------------------------------------------------------


def test_sweep_table_plot_and_resume(tiny_corpus, tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text(TINY_SPEC)
    out = tmp_path / "sweep"
    assert main(["sweep", str(spec), "--data", str(tiny_corpus), "--out", str(out)]) == 0
    md = (out / "results.md").read_text()
    for row in BLOG_ROWS:
        assert f"| {row} |" in md
    assert "| | #1 | #2 | #3 |" in md  # transposed like the blog: one column per run
    assert is_png(out / "val_loss.png")
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["model"]["n_embd"] for r in results] == [8, 16, 16]
    assert results[2]["train"]["learning_rate"] == 1e-2

    # Interrupt: run-03 never started, run-02 died after its step-3 checkpoint.
    import shutil

    run1_metrics = (out / "run-01" / "metrics.jsonl").read_bytes()
    (out / "run-02" / "summary.json").unlink()
    shutil.rmtree(out / "run-02" / "checkpoints" / "step-000000006")
    assert main(["report", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "2 of 3 runs finished" in report and "| | #1 | #2 | #3 |" in report  # columns keep the run's number
    # ... and the unfinished run keeps its column, saying why it has no numbers
    assert "| Iterations | 6 | *unfinished at step 3 of 6 (last checkpoint)* | 6 |" in report
    assert "- `run-02`: no result: unfinished at step 3 of 6 (last checkpoint); the same command resumes it" in report
    shutil.rmtree(out / "run-03")
    capsys.readouterr()
    assert main(["sweep", str(spec), "--data", str(tiny_corpus), "--out", str(out)]) == 0
    log = capsys.readouterr().out
    assert "run-01: finished earlier, skipped" in log
    assert "run-02: resuming" in log and "resumed from" in log
    assert "run-03: training" in log
    assert (out / "run-01" / "metrics.jsonl").read_bytes() == run1_metrics  # not retrained
    assert json.loads((out / "run-02" / "summary.json").read_text())["steps"] == 6
    assert len((out / "results.jsonl").read_text().splitlines()) == 3

    # The spec changed under a finished run: refuse rather than mix results.
    spec.write_text(TINY_SPEC.replace("n_embd = 8", "n_embd = 4"))
    assert main(["sweep", str(spec), "--data", str(tiny_corpus), "--out", str(out)]) == 1
    assert "other settings" in capsys.readouterr().err


def test_sweep_grid_is_every_combination():
    from bricklm.experiments.plan import plan_sweep

    plan = plan_sweep({"grid": {"n_layer": [1, 2], "learning_rate": [1e-3, 1e-2, 1e-1]}}, {}, "spec")
    assert len(plan) == 6
    assert {(r.model.n_layer, r.train.learning_rate) for r in plan} == {
        (n, lr) for n in (1, 2) for lr in (1e-3, 1e-2, 1e-1)
    }
    assert len({r.name for r in plan}) == 6


def test_sweep_spec_errors_are_one_line(tmp_path, capsys):
    spec = tmp_path / "bad.toml"
    spec.write_text("[grid]\nn_layers = [1, 2]\n")
    assert main(["sweep", str(spec), "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "unknown setting 'n_layers'" in capsys.readouterr().err
    spec.write_text("[model]\nn_layer = 1\n")
    assert main(["sweep", str(spec), "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "[grid]" in capsys.readouterr().err


# --- ablation ------------------------------------------------------------------------------


def test_ablation_variants_skip_the_one_equal_to_the_base():
    from bricklm.config import ModelConfig, TrainConfig
    from bricklm.experiments.plan import plan_ablation

    names = [r.name for r in plan_ablation(ModelConfig(attention="torch_mha"), TrainConfig())]
    assert names[0] == "original" and "attn-torch-mha" not in names
    assert {"no-norm", "no-pos", "no-attention", "no-residual", "residual-bug", "sinusoidal"} <= set(names)
    assert {"attn-manual", "attn-sdpa"} <= set(names)
    plan = {r.name: r for r in plan_ablation(ModelConfig(attention="torch_mha"), TrainConfig())}
    assert plan["no-residual"].model.residual == "off" and plan["residual-bug"].model.residual == "bug"
    assert len({r.train.seed for r in plan.values()}) == 1  # same seed for every variant


def test_ablate_table_and_bar_plot(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "ablation"
    argv = ["ablate", "--data", str(tiny_corpus), "--out", str(out), "--variants", "no-attention,attn-manual"]
    assert main(argv + TINY_FLAGS) == 0
    md = (out / "results.md").read_text()
    assert "| Variant | Parameters | Val loss | Δ vs original |" in md
    assert "no attention" in md and "hand-written attention" in md
    assert is_png(out / "ablation.png")
    results = {r["name"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert set(results) == {"original", "no-attention", "attn-manual"}
    assert results["no-attention"]["parameters"] < results["original"]["parameters"]
    # sdpa (the tiny base) and manual attention compute the same thing from the same seed
    assert results["attn-manual"]["val_loss"] == pytest.approx(results["original"]["val_loss"], abs=1e-4)
    capsys.readouterr()
    assert main(argv + TINY_FLAGS) == 0  # resumable: nothing retrained
    assert capsys.readouterr().out.count("finished earlier, skipped") == 3

    assert main(["report", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert report.startswith("# Ablation") and "Δ vs original" in report and "ablation.png" in report


# --- early stop, loss levels, overfit ------------------------------------------------------


def test_early_stop_stops_and_keeps_the_best(tiny_corpus, tmp_path):
    from bricklm.storage import checkpoint as ckpt

    run = tmp_path / "es"
    # A learning rate this high makes val loss bounce: patience 1 stops at the first non-improvement.
    argv = ["train", "--data", str(tiny_corpus), "--out", str(run)]
    argv += tiny_flags(max_iters=60, eval_interval=2, learning_rate=0.5, warmup_iters=0, early_stop=1)
    assert main(argv) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] < 60 and summary["stop_reason"].startswith("early stop")
    evals = [m for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if m.get("eval")]
    assert evals[-1]["val_loss"] >= min(e["val_loss"] for e in evals[:-1])
    best = ckpt.best_checkpoint(run)
    assert best.name == ckpt.step_dir_name(summary["best_step"])


def test_early_stop_counts_evaluations_without_improvement():
    from types import SimpleNamespace

    from bricklm.training.callbacks import EarlyStopping, TrainState

    ctx = SimpleNamespace(state=TrainState())
    cb = EarlyStopping(patience=2)
    reasons = []
    for step, val in [(0, 3.0), (1, 2.0), (2, 2.5), (3, 1.5), (4, 1.6), (5, 1.7)]:
        if val < ctx.state.best_val:
            ctx.state.best_val, ctx.state.best_step = val, step
        reasons.append(cb.on_eval(ctx, {"step": step, "val_loss": val}))
    assert [bool(r) for r in reasons] == [False, False, False, False, False, True]
    assert "best 1.5000 at step 3" in reasons[-1]


def test_loss_level_snapshots_and_samples_by_loss(tiny_corpus, tmp_path, capsys):
    run = tmp_path / "levels"
    argv = ["train", "--data", str(tiny_corpus), "--out", str(run)]
    argv += tiny_flags(max_iters=30, eval_interval=5, learning_rate=1e-2, loss_levels="9,3.0,0.01")
    assert main(argv) == 0
    reached = {p.name for p in (run / "snapshots").iterdir()}
    assert reached == {"loss-9.00", "loss-3.00"}
    info9 = json.loads((run / "snapshots" / "loss-9.00" / "snapshot.json").read_text())
    info3 = json.loads((run / "snapshots" / "loss-3.00" / "snapshot.json").read_text())
    assert info9["step"] == 0 and info9["below_at_start"] is True
    assert info3["step"] > 0 and info3["val_loss"] < 3.0 and not info3["below_at_start"]
    capsys.readouterr()
    assert main(["samples-by-loss", str(run), "--chars", "30"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("val loss < 9: step 0") and "already below this level at step 0" in out[0]
    assert out[2].startswith(f"val loss < 3: step {info3['step']}") and len(out[3].strip()) == 30
    assert out[4].startswith("val loss < 0.01: not reached")


def test_overfit_table_and_plot(tiny_run, capsys):
    capsys.readouterr()
    assert main(["overfit", str(tiny_run), "--at", "3,5"]) == 0
    out = capsys.readouterr().out
    assert "| Iterations | Train loss | Validation loss |" in out
    assert "| 3 |" in out and "nearest eval to 5" in out
    assert "Validation loss was lowest at step" in out
    assert is_png(tiny_run / "overfit.png")
    assert main(["overfit", str(tiny_run), "--at", "x"]) == 1


def test_report_for_a_run(tiny_run):
    assert main(["report", str(tiny_run), "--out", str(tiny_run / "r.md")]) == 0
    text = (tiny_run / "r.md").read_text()
    assert "| Parameters |" in text and "| Validation loss |" in text and "![loss](loss.png)" in text
    assert is_png(tiny_run / "loss.png")


def test_report_rejects_a_plain_directory(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 1
    assert "neither a run" in capsys.readouterr().err


# --- processors --------------------------------------------------------------------------------


def test_bench_devices_times_cpu_and_lists_absent_devices(tiny_corpus, tmp_path, capsys):
    argv = ["bench-devices", "--data", str(tiny_corpus), "--iters", "3", "--out", str(tmp_path)]
    argv += [f for f in TINY_FLAGS if f not in ("--device", "cpu")]
    capsys.readouterr()
    assert main(argv) == 0
    out = capsys.readouterr().out
    rows = {r["device"]: r for r in json.loads((tmp_path / "bench_devices.json").read_text())["rows"]}
    assert rows["cpu"]["status"] == "ok" and rows["cpu"]["speedup_vs_cpu"] == pytest.approx(1.0)
    assert rows["cpu"]["tokens_per_s"] > 0 and "| cpu |" in out
    if not torch.cuda.is_available():
        assert rows["cuda"]["status"].startswith("unavailable") and "training_time_s" not in rows["cuda"]


@pytest.mark.parametrize("command", ["sweep", "ablate", "bench-devices", "overfit", "samples-by-loss", "report"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: bricklm" in capsys.readouterr().out


def test_overfit_finds_the_divergence(tmp_path, capsys):
    # The blog's numbers: train keeps falling, val turns back up after 1,500 iterations.
    points = [(0, 4.6, 4.6), (500, 2.0993, 2.1271), (1500, 1.2805, 1.6006), (3000, 0.9815, 1.7457)]
    lines = [json.dumps({"step": s, "eval": True, "train_loss": t, "val_loss": v, "time": 0}) for s, t, v in points]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["overfit", str(tmp_path)]) == 0  # default --at: the blog's 500,1500,3000
    out = capsys.readouterr().out
    assert "| 1,500 | 1.2805 | 1.6006 | +0.3201 |" in out and "| 3,000 |" in out
    assert "lowest at step 1,500" in out and "the model is overfitting" in out
    assert is_png(tmp_path / "overfit.png")


def test_sweep_records_a_run_that_cannot_train_and_goes_on(tiny_corpus, tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    head = TINY_SPEC.split("[[runs]]")[0]
    spec.write_text(head + "[[runs]]\nblock_size = 1000000\n[[runs]]\nn_embd = 8\n")
    out = tmp_path / "sweep"
    # The other run trains and the tables are written; the exit code says that one run failed (issue 17).
    assert main(["sweep", str(spec), "--data", str(tiny_corpus), "--out", str(out)]) == 1
    assert "1 of 2 runs were not trained: run-01" in capsys.readouterr().err
    md = (out / "results.md").read_text()
    # The refused run keeps its column and says why, in the table and under it.
    assert "- `run-01`: refused: " in md and "| | #1 | #2 |" in md
    assert "| Iterations | *refused* | 6 |" in md and "| Validation loss | – |" in md
    failures = json.loads((out / "failures.json").read_text())
    assert set(failures) == {"run-01"} and failures["run-01"]["status"] == "refused"


# --- seeds, spread, runs too short to rank, runs that fail -----------------------------------------


def test_seeds_plan_a_run_per_seed_reusing_the_single_seed_directories():
    from bricklm.config import ModelConfig, TrainConfig
    from bricklm.experiments.plan import plan_ablation, with_seeds

    base = plan_ablation(ModelConfig(attention="torch_mha"), TrainConfig(seed=7), ["no-pos"])
    plan = with_seeds(base, 3)
    assert [r.name for r in plan] == ["original", "no-pos", "original-s2", "no-pos-s2", "original-s3", "no-pos-s3"]
    assert [r.train.seed for r in plan] == [7, 7, 8, 8, 9, 9]
    assert [r.group for r in plan] == ["original", "no-pos"] * 3 and [r.replica for r in plan] == [1, 1, 2, 2, 3, 3]
    assert plan[3].model.positional == "none" and plan[3].label == plan[1].label
    assert with_seeds(base, 1) == base
    with pytest.raises(Exception, match="--seeds must be at least 1"):
        with_seeds(base, 0)


def group(name, losses, index=1):
    """A group of finished runs as results.jsonl holds them, one per val loss."""
    return [
        {
            "name": name if k == 1 else f"{name}-s{k}",
            "group": name,
            "replica": k,
            "index": index,
            "val_loss": v,
            "train_loss": v,
            "best_val_loss": v,
            "training_time_s": 1.0,
            "tokens_per_s": 1.0,
            "best_step": 10,
            "run_dir": name,
            "label": name,
            "parameters": 1,
            "steps": 2000,
        }
        for k, v in enumerate(losses, 1)
    ]


def test_groups_pool_seeds_and_the_spread_rule():
    from bricklm.experiments.stats import format_delta, group_results, inside_spread

    a, b, c, one = group_results(
        group("a", [2.0, 2.1, 1.9], 1)
        + group("b", [2.25, 2.35, 2.15], 2)
        + group("c", [2.15, 2.2, 2.1], 3)
        + group("one", [2.0], 4)
    )
    assert (a["val_loss"], a["seeds"]) == (pytest.approx(2.0), 3)
    assert a["val_std"] == pytest.approx(0.1)  # sample std (n - 1)
    assert one["val_std"] is None and one["seeds"] == 1
    assert inside_spread(a, c) is True  # |Δ| 0.15 <= 2 x 0.1
    assert inside_spread(a, b) is False  # |Δ| 0.25 > 2 x 0.1
    assert inside_spread(a, one) is None  # one seed: the spread is unknown, nothing is marked
    assert format_delta(c, a) == "+0.150 (inside spread)" and format_delta(one, a) == "+0.000"
    far = group_results(group("far", [2.5, 2.52, 2.48]))[0]
    assert inside_spread(a, far) is False and format_delta(far, a) == "+0.500"


def test_ablate_with_seeds_resumes_a_single_seed_run_and_reports_the_spread(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "ablation"
    argv = ["ablate", "--data", str(tiny_corpus), "--out", str(out), "--variants", "no-attention", *TINY_FLAGS]
    assert main(argv) == 0
    log = capsys.readouterr().out
    # Said once, before training, and repeated under the table.
    assert log.count("warning: runs of 6 steps are too short to rank") == 1
    assert log.index("too short to rank") < log.index("[1/2] original: training")
    first = (out / "original" / "metrics.jsonl").read_bytes()
    assert "One seed per run" in (out / "results.md").read_text()

    assert main([*argv, "--seeds", "2"]) == 0
    log = capsys.readouterr().out
    assert "[1/4] original: finished earlier, skipped" in log and "[4/4] no-attention-s2: training" in log
    assert (out / "original" / "metrics.jsonl").read_bytes() == first  # the one-seed run is seed 1, not retrained
    assert json.loads((out / "original-s2" / "config.json").read_text())["train"]["seed"] == 1338
    md = (out / "results.md").read_text()
    assert "| Variant | Parameters | Val loss (mean ± std) | Δ vs original | Per seed | Best val (steps) |" in md
    results = {r["name"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    o1, o2 = results["original"]["val_loss"], results["original-s2"]["val_loss"]
    assert o1 != o2  # a different seed trains a different model
    assert f"| {(o1 + o2) / 2:.3f} ± " in md and f"| {o1:.3f}, {o2:.3f} |" in md
    assert "mean ± sample standard deviation over 2 seeds" in md
    assert "**Warning:** runs of 6 steps are too short to rank" in md
    assert is_png(out / "ablation.png") and is_png(out / "val_loss.png")

    assert main(["report", str(out)]) == 0
    assert "4 of 4 runs finished" in (out / "report.md").read_text()


def test_old_experiment_records_read_as_one_seed(tiny_corpus, tmp_path):
    out = tmp_path / "ablation"
    argv = ["ablate", "--data", str(tiny_corpus), "--out", str(out), "--variants", "no-attention", *TINY_FLAGS]
    assert main(argv) == 0
    exp = json.loads((out / "experiment.json").read_text())
    for run in exp["runs"]:  # as bricklm wrote it before --seeds
        del run["group"], run["replica"]
    (out / "experiment.json").write_text(json.dumps(exp))
    assert main(["report", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "| Variant | Parameters | Val loss | Δ vs original |" in report and "2 of 2 runs finished" in report


def test_a_run_that_crashes_is_recorded_and_the_others_still_train(tiny_corpus, tmp_path, monkeypatch, capsys):
    from bricklm.experiments import plan as plan_module

    real = plan_module.Trainer

    def trainer(model_cfg, train_cfg, data, run_dir, **kwargs):
        if Path(run_dir).name == "no-attention":
            raise RuntimeError("simulated crash")
        return real(model_cfg, train_cfg, data, run_dir, **kwargs)

    monkeypatch.setattr(plan_module, "Trainer", trainer)
    out = tmp_path / "ablation"
    argv = ["ablate", "--data", str(tiny_corpus), "--out", str(out), "--variants", "no-attention,no-pos"]
    assert main(argv + TINY_FLAGS) == 1
    captured = capsys.readouterr()
    assert "no-attention: failed: RuntimeError: simulated crash" in captured.out
    assert captured.err.strip().splitlines() == [
        f"bricklm: error: 1 of 3 runs were not trained: no-attention (why: above, and in {out}/results.md; the "
        f"tracebacks of no-attention are in {out}/RUN/error.log); fix that and rerun the same command to train just "
        "those"
    ]
    assert "simulated crash" in (out / "no-attention" / "error.log").read_text()
    assert (out / "no-pos" / "summary.json").is_file()  # trained after the crash
    md = (out / "results.md").read_text()
    assert "| no attention | – | *failed* | – | – |" in md
    assert "- `no-attention`: failed: RuntimeError: simulated crash (see error.log)" in md


def test_a_sweep_with_seeds_shows_them_and_marks_runs_tied_with_the_best():
    from bricklm.experiments.tables import sweep_table

    shape = {
        "model": {"n_layer": 1, "n_embd": 8, "n_head": 2, "block_size": 16, "dropout": 0.0},
        "train": {"batch_size": 4, "learning_rate": 1e-3},
    }
    results = [{**r, **shape} for r in group("run-01", [2.0, 2.1, 1.9], 1) + group("run-02", [2.05, 2.1, 2.0], 2)]
    results += [{**r, **shape} for r in group("run-03", [2.5, 2.52, 2.48], 3)]
    table = sweep_table(results)
    assert "| | #1 | #2 | #3 |" in table and "| Seeds | 3 | 3 | 3 |" in table
    assert "| Validation loss | 2.000 ± 0.100 | 2.050 ± 0.050 | 2.500 ± 0.020 |" in table
    assert "| Δ vs best | best | +0.050 (inside spread) | +0.500 |" in table
    one_seed = sweep_table([{**r, **shape} for r in group("run-01", [2.0], 1)])
    assert "Seeds" not in one_seed and "Δ vs best" not in one_seed  # the blog's layout when there is one seed
