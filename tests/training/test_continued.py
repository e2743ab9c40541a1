"""train --init-from: a trained model continued on new writing (training/continued.py, model/vocab.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from bricklm.cli import main
from bricklm.config import PrepareConfig
from bricklm.storage import checkpoint as ckpt
from bricklm.storage.runs import load_run
from bricklm.text.data import load_corpus
from bricklm.text.prepare import prepare
from bricklm.training.continued import continued
from conftest import TINY_FLAGS, tiny_flags

# New writing in the tiny corpus's characters only: the same tokenizer, so the same weights score it the same.
NEW_POSTS = [
    "A lazy dog learns the shape of a fox. The brown block jumps over a tiny laptop.\n" * 6,
    "Training every word of the transformer is a fine way to train what the model does.\n" * 6,
    "The quick model learns a small shape. Training is fine on a laptop.\n" * 6,
    "what does every block learn? The lazy fox knows.\n" * 6,  # "?" is new to the tiny corpus
]


def _corpus(tmp_path, name, run, posts, unknown="add"):
    src = tmp_path / f"{name}-posts"
    src.mkdir()
    for i, text in enumerate(posts):
        (src / f"post{i}.txt").write_text(text, encoding="utf-8")
    cfg = PrepareConfig(tokenizer_from=str(run), unknown_chars=unknown, split="tail", val_fraction=0.25)
    prepare([src], tmp_path / name, cfg, log=lambda *a, **k: None)
    return tmp_path / name


def parent_loss(model, tokens, block_size: int) -> float:
    """The mean cross-entropy of every target of tokens, each scored once, computed here by hand: windows of
    block_size from 0, T, 2T, ..., the last one ending at the end and scoring only what the others missed."""
    data = torch.as_tensor(np.asarray(tokens, dtype=np.int64))
    n_targets, total, scored = len(data) - 1, 0.0, 0
    model.eval()
    with torch.no_grad():
        while scored < n_targets:
            start = min(scored, n_targets - block_size)
            logits, _ = model(data[start : start + block_size][None])
            losses = F.cross_entropy(logits[0], data[start + 1 : start + block_size + 1], reduction="none")
            total += losses[scored - start :].double().sum().item()
            scored = start + block_size
    return total / n_targets


def evals(run) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [m for m in map(json.loads, lines) if m.get("eval")]


def test_a_continued_run_starts_at_the_parents_loss_on_the_new_val_split_then_falls(tiny_run, tmp_path):
    corpus = _corpus(tmp_path, "corpus2", tiny_run, NEW_POSTS[:3])
    _, val, tokenizer, _ = load_corpus(corpus)
    assert tokenizer == load_run(tiny_run).tokenizer  # nothing new: the very same tokenizer
    parent = load_run(tiny_run)
    expected = parent_loss(parent.model, val, parent.model_cfg.block_size)
    run = tmp_path / "new"
    flags = tiny_flags(max_iters=30, eval_interval=15, learning_rate=0.01, min_lr=0.001, warmup_iters=0)
    assert (
        main(["train", "--init-from", str(tiny_run), "--data", str(corpus), "--out", str(run), "--eval-full", *flags])
        == 0
    )
    first, *later = evals(run)
    assert first["step"] == 0 and first["val_loss"] == pytest.approx(expected, rel=1e-5)
    assert later and later[-1]["val_loss"] < first["val_loss"] - 0.05


def test_growing_the_vocabulary_keeps_every_existing_row_exactly(tiny_run, tmp_path):
    corpus = _corpus(tmp_path, "corpus3", tiny_run, NEW_POSTS)
    parent = load_run(tiny_run)
    old = parent.model_cfg.vocab_size
    start = continued(tiny_run, corpus, overrides={"max_iters": 0, "dropout": 0.1})
    assert start.model_cfg.vocab_size == old + 1 and start.model_cfg.dropout == 0.1
    assert start.config["init_from"]["added_tokens"] == 1
    grown, before = start.build_model().state_dict(), parent.model.state_dict()
    assert set(grown) == set(before)
    for key, t in before.items():
        if key in ("tok_emb.weight", "head.weight", "head.bias"):
            assert torch.equal(grown[key][:old], t), key
            assert torch.equal(grown[key][old:], t.mean(dim=0, keepdim=True)), key
        else:
            assert torch.equal(grown[key], t), key
    # Through the command: the step-0 checkpoint holds exactly those weights.
    run = tmp_path / "grown"
    argv = ["train", "--init-from", str(tiny_run), "--data", str(corpus), "--out", str(run), *TINY_FLAGS]
    assert main([*argv, "--max-iters", "0"]) == 0
    saved = load_file(ckpt.latest_checkpoint(run) / "model.safetensors")
    assert set(saved) == set(before) and all(torch.equal(saved[key][: len(t)], t) for key, t in before.items())


def test_the_lineage_is_in_config_json_and_info_and_survives_resume(tiny_run, tmp_path, capsys):
    corpus = _corpus(tmp_path, "corpus4", tiny_run, NEW_POSTS)
    run = tmp_path / "new"
    argv = ["train", "--init-from", str(tiny_run), "--data", str(corpus), "--out", str(run)]
    assert main([*argv, *tiny_flags(max_iters=3, eval_interval=3)]) == 0
    parent_step = json.loads((ckpt.best_checkpoint(tiny_run) / "trainer.json").read_text())["step"]
    origin = json.loads((run / "config.json").read_text())["init_from"]
    assert origin == {
        "run": str(tiny_run),
        "checkpoint": str(ckpt.best_checkpoint(tiny_run)),
        "step": parent_step,
        "vocab_size": load_run(tiny_run).model_cfg.vocab_size,
        "added_tokens": 1,
    }
    capsys.readouterr()
    assert main(["info", "--run", str(run)]) == 0
    assert (
        f"continued from {tiny_run} (step {parent_step}, {origin['checkpoint']}; 1 tokens added)"
        in capsys.readouterr().out
    )
    assert main(["train", "--resume", str(run), "--max-iters", "6"]) == 0
    assert json.loads((run / "config.json").read_text())["init_from"] == origin
