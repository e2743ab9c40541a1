"""Training health (training/health.py): the numbers per layer, and `log_health`, which means the same from Python
as from the command line (the Trainer adds the health probe itself)."""

from __future__ import annotations

import json

import pytest
import torch

from bricklm.config import ModelConfig, TrainConfig
from bricklm.model.gpt import GPT
from bricklm.recipes import load_config
from bricklm.training.health import attention_entropy, grad_norms, measure, snapshot, update_ratios
from bricklm.training.trainer import Trainer


def test_a_trainer_built_in_python_honours_log_health(tiny_corpus, tmp_path):
    model_cfg = ModelConfig(n_layer=1, n_embd=16, n_head=2, block_size=16)
    cfg = dict(max_iters=4, eval_interval=2, eval_iters=2, batch_size=4, sample_chars=0, device="cpu")
    Trainer(model_cfg, TrainConfig(**cfg, log_health=True), tiny_corpus, tmp_path / "on", progress=False).run()
    Trainer(model_cfg, TrainConfig(**cfg), tiny_corpus, tmp_path / "off", progress=False).run()

    def health_steps(run):
        lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [m["step"] for m in lines if "health" in m]

    assert health_steps(tmp_path / "on") == [0, 2, 4] and health_steps(tmp_path / "off") == []


def tiny_gpt(**kw):
    cfg, _ = load_config(None, {"vocab_size": 20, "n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 8, **kw})
    torch.manual_seed(0)
    return GPT(cfg)


def test_attention_entropy_is_one_for_uniform_and_zero_for_one_position():
    T = 6
    uniform = torch.tril(torch.ones(T, T)) / torch.arange(1, T + 1)[:, None]
    onehot = torch.eye(T)
    w = torch.stack([uniform, onehot])[None]  # (1, 2 heads, T, T)
    ent = attention_entropy(w)
    assert ent[0] == pytest.approx(1.0) and ent[1] == pytest.approx(0.0, abs=1e-6)


def test_grad_norms_and_update_ratios_per_layer():
    model = tiny_gpt()
    x = torch.randint(0, 20, (2, 8))
    _, loss = model(x, x)
    loss.backward()
    g = grad_norms(model)
    assert list(g) == ["embed", "block0", "block1", "head"] and all(v > 0 for v in g.values())
    before = snapshot(model)
    with torch.no_grad():
        model.blocks[1].ffn.fc.weight.mul_(1.5)  # only block1 moves: ratio = 0.5 × its share of the norm
    r = update_ratios(before, model)
    assert r["block0"] == 0 and r["embed"] == 0 and r["block1"] > 0
    fc = before["blocks.1.ffn.fc.weight"].norm()
    mats = torch.cat([t.flatten() for n, t in before.items() if n.startswith("blocks.1.")])
    assert r["block1"] == pytest.approx(float(0.5 * fc / mats.norm()), rel=1e-4)


def test_measure_reports_every_figure_and_the_residual_probe_tells_the_variants_apart():
    x = torch.randint(0, 20, (4, 8))
    default = measure(tiny_gpt(), x, x)
    for key in ("grad_norm", "act_mean", "act_std", "embed_cos", "passthrough", "input_sensitivity", "attn_entropy"):
        assert key in default
    assert len(default["act_std"]) == 3 and len(default["attn_entropy"]) == 2 and len(default["attn_entropy"][0]) == 2
    assert all(p == pytest.approx(1, abs=0.1) for p in default["passthrough"])
    assert max(default["input_sensitivity"]) < 0.05  # LayerNorm in front of attention
    assert max(measure(tiny_gpt(residual="bug"), x, x)["passthrough"]) < 0.2
    assert max(measure(tiny_gpt(residual="off"), x, x)["passthrough"]) < 0.2
    assert min(measure(tiny_gpt(norm="none"), x, x)["input_sensitivity"]) > 0.9
