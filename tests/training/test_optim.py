"""The optimiser and the schedule: Muon beside AdamW, warmup-stable-decay, a schedule on the time budget,
and the moving average of the weights that is evaluated and saved instead of the last step's."""

import copy

import pytest
import torch

from bricklm.config import ModelConfig, TrainConfig
from bricklm.errors import UserError
from bricklm.model.gpt import GPT
from bricklm.storage.metrics import read_metrics
from bricklm.storage.runs import load_run
from bricklm.training.optim import Combined, WeightAverage, learning_rate, make_optimizer
from runhelp import train


def tiny_model() -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16))


def test_wsd_warms_up_holds_then_cools_down_linearly():
    cfg = TrainConfig(schedule="wsd", learning_rate=1.0, min_lr=0.1, warmup_iters=10, max_iters=110, cooldown_frac=0.2)
    assert learning_rate(0, cfg) == pytest.approx(0.1) and learning_rate(9, cfg) == pytest.approx(1.0)
    assert learning_rate(50, cfg) == learning_rate(89, cfg) == 1.0  # stable until the last 20% of the 100 steps
    assert learning_rate(100, cfg) == pytest.approx(1.0 - 0.9 * 0.5)  # half way through the cool-down
    assert learning_rate(110, cfg) == pytest.approx(0.1)


def test_a_schedule_can_follow_the_time_budget_instead_of_the_step_count():
    cfg = TrainConfig(
        schedule="cosine",
        learning_rate=1.0,
        min_lr=0.0,
        warmup_iters=0,
        max_iters=10**6,
        max_seconds=60.0,
        schedule_by_time=True,
    )
    assert learning_rate(5, cfg, wall=0.0) == pytest.approx(1.0)
    assert learning_rate(5, cfg, wall=30.0) == pytest.approx(0.5)  # half the budget spent: half way down
    assert learning_rate(5, cfg, wall=60.0) == pytest.approx(0.0)
    with pytest.raises(UserError, match="max_seconds"):
        TrainConfig(schedule_by_time=True).validate()


def test_muon_takes_the_blocks_matrices_and_adamw_the_rest():
    model = tiny_model()
    opt = make_optimizer(model, TrainConfig(optimizer="muon", learning_rate=0.01, muon_lr=0.02), "cpu")
    assert isinstance(opt, Combined)
    muon, adamw = opt.optimizers
    names = {id(p): n for n, p in model.named_parameters()}
    in_muon = {names[id(p)] for g in muon.param_groups for p in g["params"]}
    assert in_muon and all(n.startswith("blocks.") and n.endswith("weight") for n in in_muon)
    assert "tok_emb.weight" not in in_muon and "head.weight" not in in_muon
    assert len(in_muon) + sum(len(g["params"]) for g in adamw.param_groups) == len(list(model.parameters()))
    from bricklm.training.optim import set_learning_rate

    set_learning_rate(opt, 0.005)
    assert muon.param_groups[0]["lr"] == pytest.approx(0.01) and adamw.param_groups[0]["lr"] == 0.005


def test_combined_state_dict_round_trips_and_steps_the_same():
    model = tiny_model()
    opt = make_optimizer(model, TrainConfig(optimizer="muon"), "cpu")
    x = torch.randint(0, 11, (4, 8))
    model(x, x)[1].backward()
    opt.step()
    twin = tiny_model()
    twin.load_state_dict(model.state_dict())
    twin_opt = make_optimizer(twin, TrainConfig(optimizer="muon"), "cpu")
    twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # torch's load keeps the very tensors
    for m, o in ((model, opt), (twin, twin_opt)):
        o.zero_grad()
        m(x, x)[1].backward()
        o.step()
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)


def test_the_average_is_applied_only_for_the_duration():
    model = tiny_model()
    avg = WeightAverage(model, decay=0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    avg.update(model, step=100)  # past the warm-up: decay 0.5, so the average moves half way
    live = [p.detach().clone() for p in model.parameters()]
    with avg.applied(model):
        for p, q in zip(model.parameters(), live, strict=True):
            torch.testing.assert_close(p, q - 0.5)
        averaged, current = avg.parts(model)
        assert all(torch.equal(averaged[n], p) for n, p in model.named_parameters())
    for p, q in zip(model.parameters(), live, strict=True):
        assert torch.equal(p, q)


def test_a_run_with_ema_evaluates_and_saves_the_average(tiny_corpus, tmp_path):
    run = tmp_path / "ema"
    result = train(tiny_corpus, run, "--ema", "0.9", "--eval-iters", "2")
    assert result["steps"] == 6
    saved = load_run(run, "last")
    from bricklm.storage import checkpoint as ckpt

    c = ckpt.load_checkpoint(ckpt.latest_checkpoint(run))
    live = {k[len("live.") :]: v for k, v in c.state.items() if k.startswith("live.")}
    assert live and any(not torch.equal(live[n], p) for n, p in saved.model.named_parameters())
    # The evaluation's val loss is the saved (averaged) model's, on the same batches.
    from bricklm.training.datasets import TokenDataset

    last_eval = [m for m in read_metrics(run) if m.get("eval")][-1]
    again = TokenDataset(tiny_corpus).losses(saved.model, saved.train_cfg, saved.model_cfg.block_size, "cpu")
    assert again["val"] == pytest.approx(last_eval["val_loss"], rel=1e-5)
