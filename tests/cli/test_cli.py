"""The command line as a user meets it: train, sample, info, --help, and one-line errors."""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from bricklm.cli import main
from conftest import TINY_FLAGS


def test_train_writes_a_complete_run_directory(tiny_run, capsys):
    for name in ("config.json", "tokenizer.json", "metrics.jsonl", "loss.png", "summary.json"):
        assert (tiny_run / name).is_file(), name
    metrics = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss" in m] == [1, 2, 3, 4, 5, 6]
    assert [m["step"] for m in metrics if m.get("eval")] == [0, 3, 6]
    assert (tiny_run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ckpts = sorted(p.name for p in (tiny_run / "checkpoints").glob("step-*"))
    assert ckpts[-1] == "step-000000006"
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert summary["steps"] == 6 and len(summary["sample"]) == 20


def test_sample_streams_text(tiny_run, capsys):
    assert main(["sample", "--run", str(tiny_run), "--prompt", "The ", "--max-new-tokens", "30", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("The ") and len(out.rstrip("\n")) == 34


def test_sample_same_seed_same_text(tiny_run, capsys):
    args = ["sample", "--run", str(tiny_run), "--max-new-tokens", "40", "--seed", "7"]
    main(args)
    first = capsys.readouterr().out
    main(args + ["--no-cache"])
    assert capsys.readouterr().out == first
    main(args + ["--compile"])  # the compiled decode step (or, without a C compiler, the eager one)
    assert capsys.readouterr().out == first


def test_sample_rejects_characters_outside_the_vocabulary(tiny_run, capsys):
    assert main(["sample", "--run", str(tiny_run), "--prompt", "héllo🙂"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "é" in err and "🙂" in err


def test_info_prints_the_gpt3_table(capsys):
    args = ["info", "--n-layer", "52", "--n-embd", "128", "--n-head", "4", "--block-size", "128"]
    assert main(args + ["--batch-size", "32", "--attention", "torch_mha"]) == 0
    out = capsys.readouterr().out
    assert "10,327,659" in out and "d_head" in out and "context window" in out


def test_a_librarys_deprecation_is_not_shown_but_bricklms_own_notes_are(monkeypatch, capsys):
    from bricklm.cli import train as train_cli

    def count_params(cfg):
        # as torch's compiler does on import, and as bricklm's own upgrade notes do
        warnings.warn("`torch.jit.script_method` is deprecated", DeprecationWarning, stacklevel=2)
        warnings.warn('residual = true is now residual = "on"', FutureWarning, stacklevel=2)
        return 1

    monkeypatch.setattr(train_cli, "count_params", count_params)
    assert main(["info", "--n-layer", "2"]) == 0
    err = capsys.readouterr().err
    assert "script_method" not in err and err.count("bricklm: note:") == 1 and "residual" in err


def test_info_on_a_run(tiny_run, capsys):
    assert main(["info", "--run", str(tiny_run)]) == 0
    assert "n_params" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--n-embd", "30", "--n-head", "4"], "divisible"),
        (["--n-layer", "0"], "n_layer"),
        (["--batch-size", "-3"], "batch_size"),
        (["--block-size", "100000"], "block_size"),
    ],
)
def test_bad_training_settings_are_one_line_errors(tiny_corpus, tmp_path, capsys, args, message):
    flags = list(TINY_FLAGS)
    code = main(["train", "--data", str(tiny_corpus), "--out", str(tmp_path / "r"), *flags, *args])
    err = capsys.readouterr().err
    assert code == 1 and message in err and err.count("\n") == 1


def test_unknown_device_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--device", "tpu"])
    assert exc.value.code == 2


def test_missing_run_directory(tmp_path, capsys):
    assert main(["sample", "--run", str(tmp_path / "nope")]) == 1
    assert "not found" in capsys.readouterr().err


def test_incomplete_run_directory(tmp_path, capsys):
    (tmp_path / "checkpoints" / "step-000000001").mkdir(parents=True)
    assert main(["sample", "--run", str(tmp_path)]) == 1
    assert "no complete checkpoint" in capsys.readouterr().err


def test_unknown_config_key_names_it(tmp_path, capsys):
    recipe = tmp_path / "r.toml"
    recipe.write_text("[model]\nn_layers = 3\n")
    assert main(["train", "--config", str(recipe), "--out", str(tmp_path / "r")]) == 1
    assert "n_layers" in capsys.readouterr().err


def test_flags_override_the_config_file(tmp_path):
    from bricklm.recipes import load_config

    recipe = tmp_path / "r.toml"
    recipe.write_text("[model]\nn_layer = 3\nn_embd = 32\n[train]\nlearning_rate = 1\n")
    model, train = load_config(recipe, {"n_layer": 5})
    assert (model.n_layer, model.n_embd, train.learning_rate) == (5, 32, 1.0)
    assert isinstance(train.learning_rate, float)


def test_training_into_an_existing_run_refuses(tiny_run, tiny_corpus, capsys):
    assert main(["train", "--data", str(tiny_corpus), "--out", str(tiny_run), *TINY_FLAGS]) == 1
    assert "--resume" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["prepare", "train", "sample", "info"])
def test_every_command_has_help(command):
    out = subprocess.run(
        [sys.executable, "-m", "bricklm", command, "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "usage: bricklm " + command in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--temperature", "-1"], "--temperature"),
        (["--top-p", "1.5"], "--top-p"),
        (["--max-new-tokens", "-2"], "--max-new-tokens"),
        (["--num-samples", "0"], "--num-samples"),
    ],
)
def test_bad_sampling_settings_are_one_line_errors(tiny_run, capsys, args, message):
    assert main(["sample", "--run", str(tiny_run), *args]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


# --- help that fits the command ----------------------------------------------------------------------


def help_text(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    assert exc.value.code == 0
    return capsys.readouterr().out


def test_info_help_lists_only_what_info_reads(capsys):
    from bricklm.cli.train import INFO_FIELDS

    text = help_text(capsys, "info", "--help")
    for flag in (
        "--n-layer",
        "--n-embd",
        "--n-head",
        "--block-size",
        "--vocab-size",
        "--attention",
        "--batch-size",
        "--learning-rate",
        "--tie-weights",
        "--activation",
    ):
        assert flag in text
    for flag in ("--max-iters", "--dropout", "--residual", "--device", "--eval-iters", "--seed"):
        assert flag not in text
    assert len(INFO_FIELDS) == 15


def test_no_setting_left_out_of_info_changes_what_it_prints():
    """Why INFO_FIELDS: every model setting outside it leaves info's table unchanged, every one inside changes it."""
    import dataclasses

    from bricklm.cli.train import INFO_FIELDS, format_info
    from bricklm.config import ModelConfig, TrainConfig
    from bricklm.model.gpt import count_params

    def table(model: ModelConfig) -> str:
        return format_info(model, TrainConfig(), count_params(model))

    base = ModelConfig(vocab_size=107)
    for f in dataclasses.fields(ModelConfig):
        if f.type == "bool":
            values = [not f.default]
        elif f.metadata.get("choices"):
            values = [c for c in f.metadata["choices"] if c != f.default]
        else:
            values = [f.default * 2 if f.default else {"int": 64, "float": 0.5}[f.type]]
        changed = [table(dataclasses.replace(base, **{f.name: v})) != table(base) for v in values]
        assert any(changed) == (f.name in INFO_FIELDS), f.name


def test_help_with_a_recipe_shows_the_recipes_values(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a short path: argparse's line wrapping breaks long words
    recipe = Path("recipe.toml")
    recipe.write_text("[model]\nn_layer = 52\nattention = 'torch_mha'\n[train]\nlearning_rate = 3e-4\n")
    text = " ".join(help_text(capsys, "train", "--config", str(recipe), "--help").split())
    assert f"transformer blocks (default: 52, from {recipe})" in text
    assert f"(default: torch_mha, from {recipe})" in text
    assert f"peak learning rate (default: 0.0003, from {recipe})" in text
    assert "attention heads per block (default: 4)" in text  # not in the recipe: the built-in default
    text = " ".join(help_text(capsys, "info", f"--config={recipe}", "-h").split())
    assert f"transformer blocks (default: 52, from {recipe})" in text
    text = " ".join(help_text(capsys, "train", "--help").split())
    assert "transformer blocks (default: 4)" in text


def test_help_with_a_recipe_shows_each_tables_values_for_its_own_flags(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = Path("r.toml")  # seed is a field of [train] and of [prepare]: each flag shows its own table's
    recipe.write_text("[finetune]\nlora_rank = 8\n[train]\nseed = 5\n[prepare]\nseed = 7\n")
    text = " ".join(help_text(capsys, "finetune", "--config", str(recipe), "--help").split())
    assert f"the learning rate then defaults to 0.001 (default: 8, from {recipe})" in text
    assert f"seed for weights, dropout and batch sampling (default: 5, from {recipe})" in text
    text = " ".join(help_text(capsys, "prepare", "--config", str(recipe), "--help").split())
    assert f"seed for picking held-out documents (default: 7, from {recipe})" in text
    recipe.write_text("[finetune]\nlora_rank = -1\n")
    assert main(["finetune", "--config", str(recipe), "--help"]) == 1
    assert capsys.readouterr().err == "bricklm: error: finetune.lora_rank must be >= 0, got -1\n"


def test_help_with_a_bad_recipe_is_one_line(tmp_path, capsys):
    recipe = tmp_path / "bad.toml"
    recipe.write_text("[model]\nn_layers = 52\n")
    assert main(["train", "--config", str(recipe), "--help"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bricklm: error: unknown key model.n_layers") and err.count("\n") == 1


def test_finetune_help_shows_finetunings_own_defaults(capsys):
    from bricklm.config import FINETUNE_TRAIN_DEFAULTS

    text = " ".join(help_text(capsys, "finetune", "--help").split())
    assert f"optimiser steps (default: {FINETUNE_TRAIN_DEFAULTS['max_iters']})" in text
    assert f"peak learning rate (default: {FINETUNE_TRAIN_DEFAULTS['learning_rate']})" in text
    assert "the learning rate then defaults to 0.001" in text


def test_prepare_help_lists_every_kind_of_source(capsys):
    out = " ".join(help_text(capsys, "prepare", "--help").split())
    kinds = ("Markdown, HTML or text files (.md,", "WordPress exports (.xml, .wxr)", "Ghost exports (.json)")
    for kind in (*kinds, "Jupyter notebooks (.ipynb)"):
        assert kind in out, kind
    assert "zips of any of these" in out and "docs/sources.md" in out
    for flag in (
        "--titles {drop,keep}",
        "--include-drafts",
        "--comments",
        "--archive-max-member-mb",
        "--archive-max-ratio",
    ):
        assert flag in out, flag


def test_losses_are_also_in_bits_per_byte(tiny_run, tiny_corpus, capsys):
    import math

    meta = json.loads((tiny_corpus / "meta.json").read_text())
    per_byte = {s: meta[f"{s}_tokens"] / meta[f"{s}_bytes"] for s in ("train", "val")}
    evals = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines() if '"eval"' in line]
    for m in evals:
        for s in ("train", "val"):
            assert m[f"{s}_bpb"] == pytest.approx(m[f"{s}_loss"] / math.log(2) * per_byte[s])
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert summary["val_bpb"] == pytest.approx(evals[-1]["val_bpb"])
    assert main(["info", "--run", str(tiny_run)]) == 0
    assert f"val bits per byte  {summary['val_bpb']:.4f}" in capsys.readouterr().out
