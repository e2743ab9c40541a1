"""Every speed switch agrees with its plain path (fastpaths.py, model.py, data.py, generate.py)."""

import contextlib
import math

import numpy as np
import pytest
import torch

from bricklm.config import ModelConfig, TrainConfig
from bricklm.model.fastpaths import compile_with_fallback
from bricklm.model.generate import generate
from bricklm.model.gpt import GPT
from bricklm.recipes import load_config
from bricklm.text.data import get_batch
from bricklm.training.callbacks import Budget
from bricklm.training.datasets import full_split_loss
from bricklm.training.optim import adamw_kwargs, make_optimizer
from bricklm.training.trainer import Trainer


def tiny(**kw) -> GPT:
    torch.manual_seed(0)
    cfg = dict(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16)
    return GPT(ModelConfig(**{**cfg, **kw}))


def test_fused_attention_matches_manual():
    torch.manual_seed(1)
    idx = torch.randint(0, 11, (3, 8))
    sdpa, manual = tiny(attention="sdpa"), tiny(attention="manual")
    manual.load_state_dict(sdpa.state_dict())
    torch.testing.assert_close(sdpa(idx)[0], manual(idx)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", ["fused", "foreach"])
def test_adamw_implementations_match_the_plain_loop(impl):
    x = torch.randint(0, 11, (4, 8))
    finals = {}
    for name in ("plain", impl):
        model = tiny()
        opt = make_optimizer(model, TrainConfig(adamw=name), torch.device("cpu"))
        for _ in range(3):
            opt.zero_grad()
            model(x, x)[1].backward()
            opt.step()
        finals[name] = torch.cat([p.detach().flatten() for p in model.parameters()])
    torch.testing.assert_close(finals[impl], finals["plain"], rtol=1e-5, atol=1e-6)


def test_adamw_auto_is_fused_only_on_cuda():
    assert adamw_kwargs("auto", torch.device("cpu")) == {}
    assert adamw_kwargs("auto", torch.device("cuda")) == {"fused": True}
    with pytest.raises(ValueError):
        adamw_kwargs("turbo", torch.device("cpu"))


def test_compile_falls_back_when_torch_compile_raises():
    model, notes = tiny(), []

    def broken(_):
        raise RuntimeError("no C compiler")

    wrapped = compile_with_fallback(model, notes.append, compiler=broken)
    idx = torch.randint(0, 11, (2, 8))
    assert not wrapped.compiled and "no C compiler" in notes[0]
    torch.testing.assert_close(wrapped(idx)[0], model(idx)[0])


def test_compile_falls_back_when_the_first_call_raises():
    """Inductor raises lazily: torch.compile() returns fine and the first forward fails."""
    model, notes = tiny(), []

    def lazy(m):
        def call(*a, **k):
            raise RuntimeError("InductorError: CppCompileError")

        return call

    wrapped = compile_with_fallback(model, notes.append, compiler=lazy)
    assert wrapped.compiled
    idx = torch.randint(0, 11, (2, 8))
    torch.testing.assert_close(wrapped(idx)[0], model(idx)[0])
    assert not wrapped.compiled and len(notes) == 1
    wrapped(idx)  # later calls go straight to the eager model, with no second note
    assert len(notes) == 1
    # The wrapper's parameters are the model's own (an optimizer built on either trains the same weights).
    assert [id(p) for p in wrapped.parameters()] == [id(p) for p in model.parameters()]


def test_bf16_autocast_loss_close_to_fp32():
    model = tiny()
    x = torch.randint(0, 11, (4, 8))
    with torch.no_grad():
        fp32 = model(x, x)[1]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = model(x, x)[1]
    assert bf16.dtype == torch.float32  # the loss is computed in fp32 either way
    assert abs(bf16.item() - fp32.item()) < 0.05


def test_get_batch_equals_a_python_loop():
    tokens = np.arange(1000, dtype=np.uint16) % 97
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    x, y = get_batch(tokens, 5, 16, g1)
    ix = torch.randint(len(tokens) - 16, (5,), generator=g2)
    data = torch.from_numpy(tokens.astype(np.int64))
    torch.testing.assert_close(x, torch.stack([data[i : i + 16] for i in ix]))
    torch.testing.assert_close(y, torch.stack([data[i + 1 : i + 17] for i in ix]))


@pytest.mark.parametrize("n", [8 * 5 + 1, 8 * 5 + 4, 9])
def test_full_split_loss_scores_every_target_once(n):
    # No attention and no positions: each prediction depends only on the current token, so the
    # full-split loss must equal the mean bigram loss over every consecutive pair, however windowed.
    model = tiny(attention="none", positional="none")
    tokens = (np.arange(n) * 7 % 11).astype(np.uint16)
    data = torch.from_numpy(tokens.astype(np.int64))
    logits, _ = model(data[:-1, None])  # each token on its own: (n-1, 1, V)
    expected = torch.nn.functional.cross_entropy(logits[:, 0], data[1:]).item()
    assert full_split_loss(model, tokens, 8, batch_size=2) == pytest.approx(expected, rel=1e-5)


def test_full_split_loss_matches_model_loss_on_whole_windows():
    model = tiny()
    tokens = (np.arange(8 * 3 + 1) * 5 % 11).astype(np.uint16)
    data = torch.from_numpy(tokens.astype(np.int64))
    x = torch.stack([data[i : i + 8] for i in (0, 8, 16)])
    y = torch.stack([data[i + 1 : i + 9] for i in (0, 8, 16)])
    assert full_split_loss(model, tokens, 8) == pytest.approx(model(x, y)[1].item(), rel=1e-5)


def test_kv_cache_generation_matches_recompute():
    model = tiny()
    idx = torch.zeros((1, 1), dtype=torch.long)
    runs = []
    for use_cache in (True, False):
        g = torch.Generator().manual_seed(0)
        runs.append([int(t) for t in generate(model, idx, 20, generator=g, use_cache=use_cache)])
    assert runs[0] == runs[1]


def fake_context():
    from types import SimpleNamespace

    from bricklm.training.callbacks import TrainState

    return SimpleNamespace(state=TrainState())


def test_budget_stops_on_target_and_on_time():
    b, t = Budget(max_seconds=10, target_val_loss=1.5), fake_context()
    t.state.wall = 0.0
    assert not b.on_eval(t, {"step": 0, "val_loss": 4.0})  # step 0: before the clock starts, never stops
    t.state.wall = 3.0
    assert not b.wants_eval(t)
    assert not b.on_eval(t, {"step": 1, "val_loss": 2.0})
    assert t.state.extra["wall_at_eval"] == [[1, 3.0, 2.0]]
    t.state.wall = 10.5
    assert b.wants_eval(t)  # over budget: the loop evaluates now
    reason = b.on_eval(t, {"step": 2, "val_loss": 1.9})
    assert reason and "time budget" in reason
    b2, t2 = Budget(target_val_loss=1.5), fake_context()
    reason = b2.on_eval(t2, {"step": 4, "val_loss": 1.5})
    assert reason and "target" in reason


def test_trainer_full_eval_and_target(tiny_corpus, tmp_path):
    model_cfg, train_cfg = load_config(
        None,
        dict(
            n_layer=1,
            n_head=2,
            n_embd=16,
            block_size=16,
            batch_size=4,
            max_iters=6,
            eval_interval=2,
            eval_iters=1,
            sample_chars=0,
            device="cpu",
            eval_full=True,
            target_val_loss=50.0,
            loss_levels="",
        ),
    )
    trainer = Trainer(model_cfg, train_cfg, tiny_corpus, tmp_path / "run", log=lambda *a: None, progress=False)
    result = trainer.run()
    assert result["steps"] == 2 and "target" in result["stop_reason"]  # the first evaluation after step 0
    expected = full_split_loss(trainer.model, trainer.data.val, 16, 4)
    assert result["val_loss"] == pytest.approx(expected, rel=1e-6)
    assert trainer.state.extra["wall_at_eval"][0][0] == 2


def test_train_recompute_attention_reaches_every_attention_layer(tiny_corpus, tmp_path):
    from bricklm.model.attention import SelfAttention

    settings = dict(n_layer=2, n_head=2, n_embd=16, block_size=16, batch_size=4, max_iters=2, eval_interval=2)
    settings |= dict(eval_iters=1, sample_chars=0, device="cpu", loss_levels="", dropout=0.1)
    for on in (False, True):
        model_cfg, train_cfg = load_config(None, {**settings, "recompute_attention": on})
        trainer = Trainer(model_cfg, train_cfg, tiny_corpus, tmp_path / f"run{on}", log=lambda *a: None, progress=False)
        assert math.isfinite(trainer.run()["val_loss"])
        layers = [m for m in trainer.model.modules() if isinstance(m, SelfAttention)]
        assert len(layers) == 2 and all(m.recompute is on for m in layers)


def test_trainer_max_seconds_evaluates_and_stops(tiny_corpus, tmp_path):
    model_cfg, train_cfg = load_config(
        None,
        dict(
            n_layer=1,
            n_head=2,
            n_embd=16,
            block_size=16,
            batch_size=4,
            max_iters=500,
            eval_interval=400,
            eval_iters=1,
            sample_chars=0,
            device="cpu",
            max_seconds=1e-9,
            loss_levels="",
        ),
    )
    result = Trainer(model_cfg, train_cfg, tiny_corpus, tmp_path / "run", log=lambda *a: None, progress=False).run()
    assert result["steps"] == 1 and "time budget" in result["stop_reason"]


def test_recomputed_activations_give_the_same_gradients():
    x = torch.randint(0, 11, (3, 8))
    grads = []
    for recompute in (False, True):
        model = tiny(dropout=0.1)
        model.set_recompute(recompute, False)
        torch.manual_seed(5)  # the same dropout masks: checkpoint replays the RNG state in backward
        model(x, x)[1].backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-6)


@contextlib.contextmanager
def saved_float_shapes():
    """The shapes of the float tensors autograd saves for backward inside the block, in a list."""
    shapes = []

    def note(t: torch.Tensor) -> torch.Tensor:
        if t.is_floating_point():
            shapes.append(t.shape)
        return t

    with torch.autograd.graph.saved_tensors_hooks(note, lambda t: t):
        yield shapes


def _grads_and_kept_weights(kernel: str, recompute: bool, dropout: float):
    """Gradients of one step, and how many float (B, nh, T, T) tensors the forward pass saved for backward."""
    model = tiny(dropout=dropout, attention="auto", n_embd=32)  # head size 16: only T x T matrices are (8, 8)
    for module in model.modules():
        if hasattr(module, "kernel"):
            module.kernel = kernel
    model.set_recompute(False, recompute)
    torch.manual_seed(5)  # the same dropout masks
    with saved_float_shapes() as shapes:
        loss = model(torch.arange(24).view(3, 8) % 11, torch.arange(24).view(3, 8) % 7)[1]
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    return grads, sum(1 for s in shapes if len(s) >= 3 and s[-2:] == (8, 8) and s.numel() >= 3 * 2 * 64)


@pytest.mark.parametrize("kernel", ["sdpa", "math"])
def test_recomputed_attention_gives_the_same_gradients_and_keeps_no_float_t_by_t_matrix(kernel):
    """Recomputing the weights in backward must give the numbers of the default path (with dropout: the written-out
    maths, kept compactly) bit for bit, keeping only the mask, as bytes; without dropout, the kernel's own."""
    plain, kept = _grads_and_kept_weights("math", recompute=False, dropout=0.1)
    grads, kept_now = _grads_and_kept_weights(kernel, recompute=True, dropout=0.1)
    assert torch.equal(grads, plain) and kept == 2 and kept_now == 0  # 2 layers: the softmax's output each
    plain, kept = _grads_and_kept_weights(kernel, recompute=False, dropout=0.0)
    grads, kept_now = _grads_and_kept_weights(kernel, recompute=True, dropout=0.0)
    assert torch.equal(grads, plain) and kept_now == 0 and kept == {"sdpa": 0, "math": 4}[kernel]


def _kept_t_by_t(fn, q, k, v, bf16: bool):
    """fn(q, k, v)'s output, the gradients of q, k, v, and the float (..., T, T) tensors kept for backward."""
    torch.manual_seed(3)
    with saved_float_shapes() as shapes:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = fn(q, k, v)
    grads = torch.autograd.grad(y.float().square().sum(), (q, k, v))
    T = q.size(2)
    return y, grads, sum(1 for s in shapes if s[-2:] == (T, T) and s.numel() >= q.size(0) * q.size(1) * T * T)


@pytest.mark.parametrize("bf16", [False, True])
def test_attention_with_dropout_kept_compactly_is_the_plain_path_bit_for_bit(bf16):
    from bricklm.model.attention import attention_dropping_compactly, causal_attention_plain

    q, k, v = (torch.randn(4, 2, 16, 8, requires_grad=True) for _ in range(3))
    y, grads, kept = _kept_t_by_t(lambda *qkv: causal_attention_plain(*qkv, 0.1, True), q, k, v, bf16)
    y2, grads2, kept2 = _kept_t_by_t(lambda *qkv: attention_dropping_compactly(*qkv, 0.1), q, k, v, bf16)
    assert torch.equal(y, y2) and all(torch.equal(a, b) for a, b in zip(grads, grads2, strict=True))
    assert kept == 3 and kept2 == 1  # softmax output, scaled mask, dropped weights -> the softmax output alone


def test_the_kept_dropout_mask_is_the_one_f_dropout_draws():
    from bricklm.model.attention import attention_keeping, causal_attention_plain, dropout_keep

    q, k, v = torch.randn(3, 3, 2, 8, 16)
    for bf16 in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            torch.manual_seed(1)
            plain = causal_attention_plain(q, k, v, 0.1, True)
            torch.manual_seed(1)
            assert torch.equal(attention_keeping(q, k, v, dropout_keep(q, k, 0.1), 0.1), plain)


# --- attention kernels and the measured choice of them ------------------------------------------


@pytest.mark.parametrize("kernel", ["math", pytest.param("compiled", marks=pytest.mark.slow)])
def test_every_attention_kernel_matches_sdpa_forward_and_backward(kernel):
    from bricklm.model.attention import ATTENTION_KERNELS

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 16, 8, requires_grad=True) for _ in range(3))
    outs = []
    for name in ("sdpa", kernel):
        y = ATTENTION_KERNELS[name](q, k, v, 0.0, True)
        grads = torch.autograd.grad(y.square().sum(), (q, k, v))
        outs.append((y.detach(), grads))
    torch.testing.assert_close(outs[0][0], outs[1][0], atol=1e-5, rtol=1e-5)
    for a, b in zip(outs[0][1], outs[1][1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_a_compiled_kernel_that_cannot_compile_falls_back(monkeypatch, capsys):
    from bricklm.model.attention import causal_attention_plain
    from bricklm.model.fastpaths import CompiledFunction

    def broken(fn, **kwargs):
        raise RuntimeError("no C compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    kernel = CompiledFunction(causal_attention_plain, "the attention kernel")
    q = torch.randn(1, 2, 4, 8)
    torch.testing.assert_close(kernel(q, q, q, 0.0, False), causal_attention_plain(q, q, q))
    assert kernel.failed and "running it eagerly" in capsys.readouterr().out


@pytest.mark.slow
def test_auto_settings_are_measured_once_and_remembered(tmp_path, monkeypatch):
    from bricklm.training import tuning as tuner

    monkeypatch.delenv(tuner.TUNE_ENV, raising=False)  # conftest turns measuring off for the other tests
    monkeypatch.setenv(tuner.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(
        tuner, "_load", lambda since=None: 0.0
    )  # a quiet machine: a busy one measures again (test_tuning.py)
    model_cfg, train_cfg = load_config(
        None,
        dict(
            vocab_size=11,
            n_layer=3,
            n_head=2,
            n_embd=16,
            block_size=16,
            batch_size=4,
            attention="auto",
            dtype="auto",
            threads=-1,
        ),
    )
    said = []
    tuning = tuner.tune(model_cfg, train_cfg, torch.device("cpu"), said.append)
    assert tuning.kernel in ("sdpa", "math", "compiled") and tuning.dtype in ("float32", "bfloat16")
    assert tuning.threads >= 1 and "measured now" in said[-1] and len(tuning.timings) >= 4
    assert (tmp_path / "tuning.json").is_file()

    def no_measuring(*a, **k):
        raise AssertionError("measured again")

    monkeypatch.setattr(tuner, "_measure", no_measuring)
    again = tuner.tune(model_cfg, train_cfg, torch.device("cpu"), said.append)
    assert (again.kernel, again.dtype, again.threads) == (tuning.kernel, tuning.dtype, tuning.threads)
    assert "measured earlier" in said[-1]
    model = GPT(model_cfg)
    tuner.apply_kernel(model, again)
    assert {b.attn.kernel for b in model.blocks} == {tuning.kernel}


def test_threads_auto_is_a_flag_and_a_recipe_value(tmp_path):
    from bricklm.cli import build_parser
    from bricklm.cli.flags import overrides_from_args

    assert overrides_from_args(build_parser().parse_args(["train", "--threads", "auto"]))["threads"] == -1
    recipe = tmp_path / "r.toml"
    recipe.write_text('[train]\nthreads = "auto"\ndtype = "auto"\n[model]\nattention = "auto"\n')
    model, train = load_config(recipe)
    assert (train.threads, train.dtype, model.attention) == (-1, "auto", "auto")
