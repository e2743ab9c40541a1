"""The command line as a user meets it: train, sample, info, --help, and one-line errors."""

import json
import subprocess
import sys

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


def test_sample_rejects_characters_outside_the_vocabulary(tiny_run, capsys):
    assert main(["sample", "--run", str(tiny_run), "--prompt", "héllo🙂"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "é" in err and "🙂" in err


def test_info_prints_the_gpt3_table(capsys):
    args = ["info", "--n-layer", "52", "--n-embd", "128", "--n-head", "4", "--block-size", "128"]
    assert main(args + ["--batch-size", "32", "--activation", "relu", "--attention", "torch_mha"]) == 0
    out = capsys.readouterr().out
    assert "10,327,659" in out and "d_head" in out and "context window" in out


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
    from bricklm.config import load_config

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
