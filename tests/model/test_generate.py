"""Sampling: the KV cache gives the same tokens as recomputing, filters do what they say."""

import os
import shutil

import pytest
import torch

from bricklm.config import ModelConfig
from bricklm.model.generate import context_start, filter_logits, generate
from bricklm.model.gpt import GPT


def model_with(attention: str, positional: str = "learned") -> GPT:
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=13, block_size=16, n_layer=2, n_head=2, n_embd=16, attention=attention, positional=positional
    )
    return GPT(cfg).eval()


def tokens(model, use_cache: bool, n: int, prompt_len: int = 3, **kw) -> list[int]:
    g = torch.Generator().manual_seed(42)
    idx = torch.arange(prompt_len).view(1, -1) % 13
    return [int(t) for t in generate(model, idx, n, generator=g, use_cache=use_cache, **kw)]


@pytest.mark.parametrize(
    "attention, positional",
    [(a, p) for a in ("sdpa", "manual", "torch_mha") for p in ("learned", "sinusoidal")]
    + [("sdpa", "rope"), ("manual", "rope"), ("none", "learned")],
)
def test_cache_gives_the_same_tokens_as_recomputing(attention, positional):
    model = model_with(attention, positional)
    # 50 tokens with block_size 16: crosses the window several times, so the slide is covered too.
    plain = tokens(model, False, 50)
    assert tokens(model, True, 50) == plain  # the fused decode step
    assert tokens(model, True, 50, fast=False) == plain  # the modules' own forward with the cache
    sampled = tokens(model, False, 50, top_k=3, temperature=0.7)
    assert tokens(model, True, 50, top_k=3, temperature=0.7) == sampled
    assert tokens(model, True, 50, top_k=3, temperature=0.7, fast=False) == sampled


DECODE_SWITCHES = [
    {},
    {"attention": "torch_mha", "bias": True},
    {"attention": "manual"},
    {"positional": "rope", "qk_norm": True},
    {"positional": "sinusoidal", "norm": "rmsnorm"},
    {"positional": "none", "norm": "none"},
    {"residual": "bug"},
    {"residual": "off"},
    {"attention": "none"},
    {"activation": "relu2", "ffn_bias": False, "head_bias": False},
    {"activation": "swiglu", "qk_norm": True, "positional": "rope", "norm": "rmsnorm"},
    {"tie_weights": True},
]


@pytest.mark.parametrize(
    "switch", DECODE_SWITCHES, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "default"
)
def test_the_fused_decode_step_matches_the_forward_for_every_switch(switch):
    from bricklm.model.decode import DecodeStep

    torch.manual_seed(0)
    cfg = dict(vocab_size=13, block_size=16, n_layer=2, n_head=2, n_embd=16)
    model = GPT(ModelConfig(**{**cfg, **switch})).eval()
    idx = torch.randint(0, 13, (2, 12))
    full, _ = model(idx)
    caches = model.new_caches(2, "cpu")
    model(idx[:, :5], caches=caches)
    step = DecodeStep(model, caches)
    fused = torch.stack([step(idx[:, t : t + 1]) for t in range(5, 12)], dim=1)
    torch.testing.assert_close(fused, full[:, 5:], atol=1e-5, rtol=1e-5)
    assert caches[0].length == 12


CXX = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("clang++")  # what inductor compiles its kernels with

# One compile per switch set (a few seconds each): the switches whose maths the compiled step reaches differently
# (the products, the attention over the whole masked cache, rotary positions' dynamic position, no attention).
COMPILED_SWITCHES = [
    {},
    {"attention": "torch_mha", "bias": True, "residual": "bug"},
    {"activation": "swiglu", "qk_norm": True, "positional": "rope", "norm": "rmsnorm", "tie_weights": True},
    {"attention": "none", "activation": "relu2", "ffn_bias": False},
]


@pytest.mark.parametrize(
    "switch", COMPILED_SWITCHES, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "default"
)
def test_the_compiled_decode_step_matches_the_forward(switch, recwarn):
    from bricklm.model.decode import DecodeStep

    torch._dynamo.reset()  # each set compiles afresh, not past the recompile limit of the tests before it
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=13, block_size=16, n_layer=2, n_head=2, n_embd=16, **switch)).eval()
    idx = torch.randint(0, 13, (2, 12))
    full, _ = model(idx)
    caches = model.new_caches(2, "cpu")
    model(idx[:, :5], caches=caches)
    step = DecodeStep(model, caches, compiled=True)
    fused = torch.stack([step(idx[:, t : t + 1]) for t in range(5, 12)], dim=1)
    torch.testing.assert_close(fused, full[:, 5:], atol=1e-5, rtol=1e-5)
    assert caches[0].length == 12
    if CXX:  # it ran compiled, not the fallback (which a machine without a C++ compiler takes, and agrees too)
        assert step.compiled, [str(w.message) for w in recwarn]


def test_generation_with_the_compiled_step_gives_the_plain_tokens():
    model = model_with("sdpa")  # 40 tokens through a window of 16: one compiled function across new steps
    plain = tokens(model, False, 40, top_k=3, temperature=0.7)
    assert tokens(model, True, 40, top_k=3, temperature=0.7, compiled=True) == plain


def test_a_failed_compile_falls_back_to_the_eager_step_once(monkeypatch):
    from bricklm.model import decode
    from bricklm.model.fastpaths import CompiledFunction

    def broken(*args, **kwargs):
        raise RuntimeError("no C compiler\nmore detail")

    blocks = CompiledFunction(decode.DecodeStep._blocks, "the decode step", dynamic=None, say=decode._warn)
    monkeypatch.setattr(decode, "COMPILED_BLOCKS", blocks)
    monkeypatch.setattr(torch, "compile", broken)
    model = model_with("sdpa")
    plain = tokens(model, False, 40)
    with pytest.warns(UserWarning, match=r"unavailable for the decode step \(RuntimeError: no C compiler\)"):
        assert tokens(model, True, 40, compiled=True) == plain
    assert blocks.failed  # later steps don't try again
    assert not decode.DecodeStep(model, model.new_caches(1, "cpu"), compiled=True).compiled


def test_cached_logits_match_full_forward():
    model = model_with("sdpa")
    idx = torch.randint(0, 13, (2, 10))
    full, _ = model(idx)
    caches = model.new_caches(2, "cpu")
    first, _ = model(idx[:, :6], caches=caches)
    rest = [model(idx[:, t : t + 1], caches=caches)[0] for t in range(6, 10)]
    torch.testing.assert_close(torch.cat([first] + rest, dim=1), full, atol=1e-5, rtol=1e-5)


def test_a_prompt_longer_than_the_window_slides():
    model = model_with("sdpa")
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 13, (1, 40))  # longer than block_size 16
    out = list(generate(model, idx, 5, generator=g))
    assert len(out) == 5


def test_top_k_keeps_only_k():
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0]])
    kept = torch.isfinite(filter_logits(logits, 1.0, 2, None))
    assert kept.tolist() == [[False, True, False, True]]


def test_top_p_keeps_the_smallest_nucleus():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = torch.isfinite(filter_logits(probs.log(), 1.0, None, 0.7))
    assert kept.tolist() == [[True, True, False, False]]
    kept = torch.isfinite(filter_logits(probs.log(), 1.0, None, 0.1))
    assert kept.tolist() == [[True, False, False, False]]  # the top token always stays


def test_temperature_zero_is_greedy():
    model = model_with("sdpa")
    a = tokens(model, True, 10, temperature=0)
    b = tokens(model, True, 10, temperature=0)
    assert a == b
    idx = torch.arange(3).view(1, -1)
    logits, _ = model(idx)
    assert a[0] == int(logits[0, -1].argmax())


def test_seed_controls_sampling():
    model = model_with("sdpa")
    assert tokens(model, True, 30) == tokens(model, True, 30)


@pytest.mark.parametrize("prompt_len", [1, 5, 16, 40])
def test_context_start_replays_the_window_generate_reads(prompt_len):
    """context_start (what the studio looks back with) names the first token of every context generate() read."""
    model = model_with("sdpa")
    block = model.config.block_size
    seen = []
    real_forward = model.forward
    model.forward = lambda idx, *a, **k: (seen.append(idx.size(1)), real_forward(idx, *a, **k))[1]
    prompt = torch.randint(0, 13, (1, prompt_len))
    list(generate(model, prompt, 3 * block, use_cache=False))
    assert len(seen) == 3 * block
    for position, context_len in enumerate(seen, start=prompt_len):
        assert position - context_start(prompt_len, position, block) == context_len
    assert context_start(prompt_len, 3, block) == max(0, 3 - block)  # a prompt token: as far as the window reaches


@pytest.mark.parametrize("top_p", [1e-46, 1e-300, 5e-324, 1e-8])
@pytest.mark.parametrize("temperature", [1.0, 1e-300, 2.0])
@pytest.mark.parametrize("top_k", [None, 1, 3])
def test_the_likeliest_token_always_stays(top_p, temperature, top_k):
    # A top_p that float32 rounds to 0 once dropped every token: softmax of all -inf is NaN, and
    # sampling failed with "probability tensor contains either inf, nan or element < 0".
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0], [2.0, 0.5, 2.5, -1.0]])
    filtered = filter_logits(logits, temperature, top_k, top_p)
    assert torch.isfinite(filtered).sum(dim=-1).tolist() == [1, 1]
    assert filtered.argmax(dim=-1).tolist() == [1, 2]
    probs = torch.softmax(filtered, dim=-1)
    g = torch.Generator().manual_seed(0)
    assert torch.multinomial(probs, 1, generator=g).flatten().tolist() == [1, 2]


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_a_veto_steers_away_from_refused_tokens_or_ends_generation(temperature):
    model = model_with("sdpa")
    plain = tokens(model, True, 30, temperature=temperature)
    banned = {plain[0], plain[5]}
    asked = []

    def veto(t):
        asked.append(t)
        return t in banned

    steered = tokens(model, True, 30, temperature=temperature, veto=veto)
    assert len(steered) == 30 and not banned & set(steered) and banned <= set(asked)
    if temperature == 0:  # greedy: the first token is the likeliest one not refused
        assert steered[0] != plain[0]
    # Every pick refused: nothing is yielded, after the first pick and `tries` more.
    asked.clear()
    assert tokens(model, True, 30, temperature=temperature, veto=lambda t: asked.append(t) or True, tries=2) == []
    assert len(asked) == 3 and len(set(asked)) == 3  # never the same refused token twice
