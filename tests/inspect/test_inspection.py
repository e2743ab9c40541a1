"""`bricklm inspect`: shape tables, plots, health over a short training (probe.py), `train --log-health` from
the command line, and the diagnosis."""

import json

import pytest
import torch

from bricklm.cli import main
from bricklm.inspect.diagnosis import diagnose, format_findings
from bricklm.inspect.inspection import layers_to_show, write_plots
from bricklm.inspect.probe import probe_training
from bricklm.model.gpt import GPT, count_params
from bricklm.recipes import load_config
from bricklm.text.data import load_corpus
from conftest import TINY_FLAGS

PNG = b"\x89PNG\r\n\x1a\n"


def tiny_gpt(**kw):
    cfg, _ = load_config(None, {"vocab_size": 20, "n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 8, **kw})
    torch.manual_seed(0)
    return GPT(cfg)


# --- shapes ---------------------------------------------------------------------------------


def test_inspect_prints_weight_shapes_and_the_forward_pass_shapes(capsys):
    args = ["inspect", "--n-layer", "3", "--n-embd", "16", "--n-head", "2", "--block-size", "8"]
    assert main(args + ["--batch-size", "3", "--vocab-size", "50"]) == 0
    out = capsys.readouterr().out
    cfg, _ = load_config(None, {"n_layer": 3, "n_embd": 16, "n_head": 2, "block_size": 8, "vocab_size": 50})
    assert f"{count_params(cfg):,}" in out and "100.0%" in out
    assert "blocks.0.attn.c_attn" in out and "(48, 16)" in out  # q, k, v packed: 3C × C
    assert "blocks.1 … blocks.2" in out and "blocks.2.attn" not in out  # later blocks folded
    assert "B=3 (batch) T=8 (block) C=16 (n_embd) nh=2 (heads) hs=8 (head size)" in out
    assert "(3, 2, 8, 8)" in out  # q, k, v per head and the scores, both (B, nh, T, hs|T)
    assert "(3, 8, 50)" in out  # logits (B, T, V)


def test_inspect_all_blocks_lists_every_block(capsys):
    assert main(["inspect", "--n-layer", "2", "--n-embd", "16", "--n-head", "2", "--all-blocks"]) == 0
    out = capsys.readouterr().out
    assert "blocks.1.ffn.fc" in out and "vocabulary, 107" in out


# --- the figures ----------------------------------------------------------------------------


def test_attention_plot_shows_every_block_or_an_even_spread():
    assert layers_to_show(4, 8) == [0, 1, 2, 3]
    assert layers_to_show(1, 8) == [0]
    assert layers_to_show(52, 8) == [0, 7, 15, 22, 29, 36, 44, 51]


def test_plots_are_written(tiny_corpus, tmp_path):
    train, _, tok, _ = load_corpus(tiny_corpus)
    model_cfg, train_cfg = load_config(
        None, {"vocab_size": tok.vocab_size, "n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 16, "batch_size": 4}
    )
    model = GPT(model_cfg)
    records = probe_training(model, train_cfg, train, steps=4, every=2)
    assert [r["step"] for r in records] == [0, 2, 4] and "update_ratio" not in records[0]
    idx = torch.tensor([tok.encode("The quick")])
    paths = write_plots(records, tmp_path, model, idx, list("The quick"))
    assert sorted(p.name for p in paths) == ["act_std.png", "attention.png", "grad_norm.png", "update_ratio.png"]
    assert all(p.read_bytes()[:8] == PNG for p in paths)


# --- train --log-health and inspect --run -----------------------------------------------------


def test_log_health_records_every_eval_without_changing_training(tiny_corpus, tiny_run, tmp_path, capsys):
    run = tmp_path / "healthy"
    assert main(["train", "--data", str(tiny_corpus), "--out", str(run), *TINY_FLAGS, "--log-health"]) == 0
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    health = [m for m in metrics if "health" in m]
    assert [m["step"] for m in health] == [0, 3, 6]
    assert "update_ratio" not in health[0]["health"] and set(health[1]["health"]["update_ratio"]) == {
        "embed",
        "block0",
        "head",
    }
    assert health[2]["health"]["grad_norm"]["block0"] > 0 and len(health[2]["health"]["attn_entropy"]) == 1
    # the health probe draws no random numbers from training: the same losses as without it
    plain = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert [m["loss"] for m in metrics if "loss" in m] == [m["loss"] for m in plain if "loss" in m]

    capsys.readouterr()
    assert main(["inspect", "--run", str(run), "--diagnose", "--prompt", "The fox"]) == 0
    out = capsys.readouterr().out
    assert "from the run's --log-health records" in out and "health at step 6" in out and "diagnosis:" in out
    for name in ("grad_norm.png", "act_std.png", "update_ratio.png", "attention.png"):
        assert (run / "inspect" / name).read_bytes()[:8] == PNG
    grad_plot_lines = len(health)  # one line per evaluation
    assert grad_plot_lines == 3


def test_inspect_steps_on_a_run_writes_json_and_plots(tiny_run, tmp_path, capsys):
    out_json = tmp_path / "h.json"
    args = ["inspect", "--run", str(tiny_run), "--steps", "2", "--plots", str(tmp_path / "p"), "--json", str(out_json)]
    assert main(args) == 0
    assert "2 steps of training on a copy" in capsys.readouterr().out
    records = json.loads(out_json.read_text())
    assert [r["step"] for r in records] == [6, 7, 8]
    assert (tmp_path / "p" / "attention.png").is_file()


def test_inspect_run_without_health_records_measures_one_batch(tiny_run, tmp_path, capsys):
    assert main(["inspect", "--run", str(tiny_run), "--plots", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "from one batch, no training" in out and "health at step 6" in out
    assert not (tmp_path / "update_ratio.png").exists() and (tmp_path / "grad_norm.png").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--run", "no/such/run"], "run directory not found"),
        (["--n-layer", "2", "--steps", "3"], "--steps needs a corpus"),
        (["--n-layer", "2", "--prompt", "hi", "--plots", "p"], "--prompt needs a tokenizer"),
        (["--n-layer", "2", "--prompt", "hi"], "give --plots DIR too"),
        (["--data", "no/such/corpus"], "is not a corpus directory"),
        (["--steps", "-1"], "--steps must be >= 0"),
    ],
)
def test_inspect_user_errors_are_one_line(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["inspect", *args]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_inspect_run_refuses_to_change_the_models_shape(tiny_run, capsys):
    assert main(["inspect", "--run", str(tiny_run), "--n-layer", "3"]) == 1
    assert "cannot change a trained run's model" in capsys.readouterr().err


# --- diagnosis ------------------------------------------------------------------------------

# Deep enough for the bug to matter, small enough to train 40 steps in a couple of seconds.
DEEP = {"n_layer": 5, "n_head": 4, "n_embd": 32, "block_size": 32, "batch_size": 8}


@pytest.fixture(scope="module")
def diagnoses(tiny_corpus):
    train, _, tok, _ = load_corpus(tiny_corpus)
    out = {}
    variants = {
        "default": {},
        "residual_bug": {"residual": "bug"},
        "residual_off": {"residual": "off"},
        "norm_none": {"norm": "none"},
        "lr_low": {"learning_rate": 1e-5, "min_lr": 1e-6},  # min_lr <= learning_rate
    }
    for name, settings in variants.items():
        model_cfg, train_cfg = load_config(None, {**DEEP, **settings, "vocab_size": tok.vocab_size})
        torch.manual_seed(train_cfg.seed)
        out[name] = diagnose(probe_training(GPT(model_cfg), train_cfg, train, steps=40))
    return out


def warnings(findings):
    return {f.topic: f.text for f in findings if f.level == "warning"}


def test_diagnosis_says_nothing_alarming_about_the_default_model(diagnoses):
    assert warnings(diagnoses["default"]) == {}
    text = format_findings(diagnoses["default"])
    assert "no warnings" in text and "every block passes its input through" in text


def test_diagnosis_flags_the_blogs_residual_bug(diagnoses):
    w = warnings(diagnoses["residual_bug"])
    assert set(w) == {"residual stream"}
    assert "overwritten" in w["residual stream"] and "residual = 'bug'" in w["residual stream"]


def test_diagnosis_flags_no_residual(diagnoses):
    w = warnings(diagnoses["residual_off"])
    assert "no residual connection" in w["residual stream"] and "residual = 'bug'" not in w["residual stream"]
    assert "vanishing gradients" in w["gradients"]


def test_diagnosis_flags_missing_layernorm_and_a_tiny_learning_rate(diagnoses):
    assert set(warnings(diagnoses["norm_none"])) == {"normalisation"}
    assert "far too low" in warnings(diagnoses["lr_low"])["learning rate"]


def test_inspect_diagnose_command_flags_the_bug(tiny_corpus, capsys):
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in DEEP.items()]
    argv = ["inspect", "--data", str(tiny_corpus), *flags, "--residual", "bug", "--steps", "20", "--diagnose"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "WARNING" in out and "the blog's `x = ln1(x)` bug" in out and "1 warning" in out
