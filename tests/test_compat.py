"""Runs, recipes and flags from before the one-way redesign keep working.

The old layout wrote `residual = true|false` and `residual_bug = true|false` (two switches, now one
setting with three values), had no `eval_samples` train setting and no samples.jsonl, and saved
tokenizer.json as one compact line. A run in that format is made here from a fresh run (its
configs rewritten the old way, every checkpoint's manifest re-hashed), then resumed and sampled.
A fine-tuned run's config.json keeps its finetune table as finetune() wrote it before FinetuneConfig
(the same keys, written out here), and resumes and samples too.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from bricklm.cli import build_parser, main
from bricklm.cli.flags import overrides_from_args
from bricklm.recipes import load_config
from bricklm.storage.metrics import read_metrics
from bricklm.storage.runs import load_run
from bricklm.text.tokenizer import SPECIALS
from conftest import FT_FLAGS, TINY_CHATS, TINY_FLAGS, write_jsonl

OLD_MODEL = {"on": (True, False), "off": (False, False), "bug": (True, True)}  # residual -> (residual, residual_bug)


def to_old_layout(run: Path) -> None:
    """Rewrite a run's configs and tokenizers the way bricklm wrote them before the redesign."""

    def old_config(cfg: dict) -> dict:
        cfg["model"]["residual"], cfg["model"]["residual_bug"] = OLD_MODEL[cfg["model"]["residual"]]
        cfg["train"].pop("eval_samples")
        return cfg

    def compact(path: Path) -> bytes:
        return (json.dumps(json.loads(path.read_text()), ensure_ascii=False) + "\n").encode()

    (run / "config.json").write_text(json.dumps(old_config(json.loads((run / "config.json").read_text())), indent=2))
    (run / "tokenizer.json").write_bytes(compact(run / "tokenizer.json"))
    (run / "samples.jsonl").unlink()
    for ckpt in (run / "checkpoints").glob("step-*"):
        config = json.dumps(old_config(json.loads((ckpt / "config.json").read_text())), indent=2) + "\n"
        rewrite(ckpt, "config.json", config.encode())
        rewrite(ckpt, "tokenizer.json", compact(ckpt / "tokenizer.json"))


def rewrite(ckpt: Path, name: str, data: bytes) -> None:
    """Replace a checkpoint's file and its manifest entry, so that the checkpoint still verifies."""
    (ckpt / name).write_bytes(data)
    manifest = json.loads((ckpt / "manifest.json").read_text())
    manifest["files"][name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (ckpt / "manifest.json").write_text(json.dumps(manifest, indent=2))


@pytest.mark.parametrize("residual", ["on", "bug"])
def test_a_run_in_the_old_layout_resumes_and_samples(tiny_corpus, tmp_path, capsys, residual):
    run = tmp_path / "old"
    assert main(["train", "--data", str(tiny_corpus), "--out", str(run), *TINY_FLAGS, "--residual", residual]) == 0
    to_old_layout(run)
    saved = json.loads((run / "checkpoints" / "step-000000006" / "config.json").read_text())
    assert saved["model"]["residual_bug"] is (residual == "bug") and "eval_samples" not in saved["train"]

    assert load_run(run).model_cfg.residual == residual
    assert main(["train", "--resume", str(run), "--max-iters", "9"]) == 0
    assert [m["step"] for m in read_metrics(run) if "loss" in m][-1] == 9
    assert load_run(run, "last").model_cfg.residual == residual
    capsys.readouterr()
    assert main(["sample", "--run", str(run), "--prompt", "The ", "--max-new-tokens", "20"]) == 0
    assert capsys.readouterr().out.startswith("The ")


def test_old_recipe_keys_and_flags_still_work_with_a_note(tiny_corpus, tmp_path, capsys):
    recipe = tmp_path / "old.toml"
    recipe.write_text("[model]\nresidual_bug = true\n")
    with pytest.warns(FutureWarning, match='residual_bug = true is the old spelling of residual = "bug"'):
        model, _ = load_config(recipe)
    assert model.residual == "bug"
    recipe.write_text("[model]\nresidual = false\n")
    with pytest.warns(FutureWarning, match='residual = false is the old spelling of residual = "off"'):
        assert load_config(recipe)[0].residual == "off"

    for flag, expected in (("--no-residual", "off"), ("--residual-bug", "bug")):
        with pytest.warns(FutureWarning):
            assert overrides_from_args(build_parser().parse_args(["train", flag]))["residual"] == expected
        # (`info` no longer takes --residual: it does not change the table info prints; `train` does)
        assert main([*train_zero_steps(tiny_corpus, tmp_path / flag), flag, "--n-layer", "2"]) == 0
        err = capsys.readouterr().err
        assert f"bricklm: note: --no-residual and --residual-bug are the old spellings of --residual {expected}" in err
    assert main([*train_zero_steps(tiny_corpus, tmp_path / "new"), "--residual", "bug"]) == 0
    assert capsys.readouterr().err == ""


def train_zero_steps(corpus: Path, run: Path) -> list[str]:
    """`bricklm train` of a tiny model that only evaluates once: a command that reads every model flag."""
    return ["train", "--data", str(corpus), "--out", str(run), *TINY_FLAGS, "--max-iters", "0"]


def test_a_finetuned_run_from_before_finetune_config_resumes_and_samples(tiny_run, tmp_path, capsys):
    run, chats = tmp_path / "chat", write_jsonl(tmp_path / "chats.jsonl", TINY_CHATS)
    argv = ["finetune", "--from", tiny_run, "--data", chats, "--out", run, "--lora-rank", "2", *FT_FLAGS]
    assert main([str(a) for a in argv]) == 0
    old = {  # finetune()'s settings dict, key for key, as it was written before FinetuneConfig
        "from": str(tiny_run),
        "from_checkpoint": json.loads((run / "config.json").read_text())["finetune"]["from_checkpoint"],
        "data": str(chats),
        "lora_rank": 2,
        "lora_alpha": 4.0,
        "unknown_chars": "add",
        "heldout_fraction": 0.1,
    }

    def with_old_table(path: Path) -> bytes:
        config = json.loads(path.read_text())
        config["finetune"] = old
        return (json.dumps(config, indent=2) + "\n").encode()

    (run / "config.json").write_bytes(with_old_table(run / "config.json"))
    for ckpt in (run / "checkpoints").glob("step-*"):
        rewrite(ckpt, "config.json", with_old_table(ckpt / "config.json"))

    assert main(["finetune", "--resume", str(run), "--max-iters", "6"]) == 0
    assert main(["train", "--resume", str(run), "--max-iters", "8"]) == 0
    assert [m["step"] for m in read_metrics(run) if "loss" in m][-1] == 8
    assert json.loads((run / "config.json").read_text())["finetune"] == old  # the same settings, kept
    added = len(SPECIALS) + 1  # and "?", which the tiny corpus lacks
    assert load_run(run, "last").model_cfg.vocab_size == load_run(tiny_run).model_cfg.vocab_size + added
    capsys.readouterr()
    assert main(["sample", "--run", str(run), "--prompt", "The ", "--max-new-tokens", "20"]) == 0
    assert capsys.readouterr().out.startswith("The ")
