"""The GPT: parameter formula, causality, attention variants agreeing, positions, switches."""

import pytest
import torch

from bricklm.config import ModelConfig
from bricklm.model.gpt import GPT, count_activations, count_params

BLOG = dict(vocab_size=107, activation="relu", attention="torch_mha")


@pytest.mark.parametrize(
    "shape, expected",
    [
        (dict(n_layer=4, n_embd=8, n_head=4, block_size=32), 5_451),
        (dict(n_layer=8, n_embd=16, n_head=8, block_size=128), 31_339),
        (dict(n_layer=16, n_embd=32, n_head=16, block_size=128), 212_331),
        (dict(n_layer=32, n_embd=64, n_head=32, block_size=256), 1_621_611),
        (dict(n_layer=52, n_embd=128, n_head=4, block_size=128), 10_327_659),
    ],
)
def test_blog_parameter_counts(shape, expected):
    cfg = ModelConfig(**BLOG, **shape)
    assert count_params(cfg) == expected
    if expected < 2_000_000:  # building the 10M model is slow-ish; the formula is checked below
        assert GPT(cfg).n_params() == expected


SWITCHES = [
    {},
    {"attention": "manual"},
    {"attention": "torch_mha"},
    {"attention": "none"},
    {"positional": "sinusoidal"},
    {"positional": "none"},
    {"norm": "none"},
    {"residual": "off"},
    {"residual": "bug"},
    {"tie_weights": True},
    {"bias": True},
    {"bias": True, "attention": "torch_mha"},
    {"activation": "relu"},
    {"positional": "rope"},
    {"positional": "rope", "attention": "manual"},
    {"norm": "rmsnorm"},
    {"qk_norm": True},
    {"activation": "relu2"},
    {"activation": "swiglu", "ffn_bias": True},
    {"activation": "swiglu", "n_embd": 40, "n_head": 4},  # 8C/3 = 106.7 rounds to 107
    {"ffn_bias": False, "head_bias": False},
    {
        "positional": "rope",
        "norm": "rmsnorm",
        "qk_norm": True,
        "activation": "relu2",
        "zero_init": True,
        "ffn_bias": False,
        "head_bias": False,
        "tie_weights": True,
    },  # modded-nanogpt's set, all at once
]


def tiny(**kw) -> ModelConfig:
    base = dict(vocab_size=11, block_size=16, n_layer=2, n_head=4, n_embd=32)
    base.update(kw)
    return ModelConfig(**base)


@pytest.mark.parametrize("switch", SWITCHES, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "default")
def test_formula_matches_built_model(switch):
    cfg = tiny(**switch)
    assert GPT(cfg).n_params() == count_params(cfg)


def test_activations_kept_for_backward_follow_the_attention_kind_and_recompute():
    """The memory check asks the model what a step keeps: T x T weights only where the attention path keeps them."""

    def kept(recompute=False, kernel="sdpa", **kw):
        return count_activations(tiny(block_size=256, **kw), batch_size=4, recompute=recompute, kernel=kernel)

    assert kept(attention="manual", dropout=0.1) > kept(attention="manual") > kept(attention="sdpa")
    assert kept(attention="sdpa", dropout=0.1) > kept(attention="sdpa") >= kept(attention="none")  # fused: no T x T
    # auto keeps what the kernel the tuner picked keeps: the fused one's nothing, the math one's T x T weights
    assert kept(attention="auto", dropout=0.1) == kept(attention="sdpa", dropout=0.1)
    for kernel in ("math", "compiled"):
        assert kept(attention="auto", kernel=kernel) == kept(attention="manual")
        # with dropout every kernel keeps its weights compactly: far less than the lecture's per-head path
        assert kept(attention="auto", dropout=0.1, kernel=kernel) == kept(attention="sdpa", dropout=0.1)
        assert kept(attention="sdpa", dropout=0.1) < kept(attention="manual", dropout=0.1)
    assert kept(recompute=True, n_layer=8) < kept(n_layer=8)  # only each block's input, plus one block
    assert kept(attention="none") > 3 * 4 * 256 * 11  # the logits, three copies, come on top
    # recomputing attention's probabilities keeps no T x T matrix for SelfAttention's kernels, whichever was picked
    for kernel in ("sdpa", "math", "compiled"):
        again = count_activations(
            tiny(block_size=256, attention="auto", dropout=0.1), 4, kernel=kernel, recompute_attention=True
        )
        assert again == kept(attention="none", dropout=0.1) < kept(attention="sdpa", dropout=0.1)
    blog = tiny(block_size=256, attention="torch_mha", dropout=0.1)  # nn.MultiheadAttention keeps its own
    assert count_activations(blog, 4, recompute_attention=True) == kept(attention="torch_mha", dropout=0.1)


@pytest.mark.parametrize("switch", SWITCHES, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "default")
def test_every_variant_is_causal(switch):
    torch.manual_seed(0)
    model = GPT(tiny(**switch)).eval()
    idx = torch.randint(0, 11, (2, 16))
    changed = idx.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 11
    a, _ = model(idx)
    b, _ = model(changed)
    torch.testing.assert_close(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_attention_variants_agree_given_the_same_weights():
    torch.manual_seed(0)
    sdpa = GPT(tiny(attention="sdpa", bias=True)).eval()
    manual = GPT(tiny(attention="manual", bias=True)).eval()
    manual.load_state_dict(sdpa.state_dict())
    mha = GPT(tiny(attention="torch_mha", bias=True)).eval()
    mapped = {}
    for k, v in sdpa.state_dict().items():
        k = k.replace("attn.c_attn.weight", "attn.mha.in_proj_weight").replace(
            "attn.c_attn.bias", "attn.mha.in_proj_bias"
        )
        k = k.replace("attn.c_proj.", "attn.mha.out_proj.")
        mapped[k] = v
    mha.load_state_dict(mapped)
    idx = torch.randint(0, 11, (3, 16))
    ref, _ = sdpa(idx)
    torch.testing.assert_close(manual(idx)[0], ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mha(idx)[0], ref, atol=1e-5, rtol=1e-5)


def position_sensitivity(positional: str) -> float:
    """How much the logit at the last position changes when the same tokens sit at shifted positions."""
    torch.manual_seed(0)
    model = GPT(tiny(positional=positional, n_layer=1)).eval()
    idx = torch.full((1, 8), 3)  # identical tokens: only positions can tell them apart
    logits, _ = model(idx)
    return (logits[0, 0] - logits[0, -1]).abs().max().item()


def test_sinusoidal_positions_make_the_model_position_aware():
    # With identical tokens everywhere, a position-blind model (and the blog's broken sinusoidal
    # table) gives nearly the same output at every position after attention averages them.
    assert position_sensitivity("none") < 1e-5
    assert position_sensitivity("sinusoidal") > 1e-3
    assert position_sensitivity("learned") > 1e-3


def test_sinusoidal_table_is_indexed_by_position():
    from bricklm.model.gpt import sinusoidal_table

    t = sinusoidal_table(10, 8)
    assert t.shape == (10, 8)
    torch.testing.assert_close(t[0, 0::2], torch.zeros(4))  # sin(0) = 0
    torch.testing.assert_close(t[0, 1::2], torch.ones(4))  # cos(0) = 1
    assert abs(t[3, 0].item() - torch.sin(torch.tensor(3.0)).item()) < 1e-6


def test_residual_bug_changes_the_computation():
    torch.manual_seed(0)
    good = GPT(tiny()).eval()
    bug = GPT(tiny(residual="bug")).eval()
    bug.load_state_dict(good.state_dict())
    idx = torch.randint(0, 11, (1, 16))
    assert not torch.allclose(good(idx)[0], bug(idx)[0])


def test_loss_at_init_is_near_uniform():
    torch.manual_seed(0)
    model = GPT(tiny())
    idx = torch.randint(0, 11, (4, 16))
    _, loss = model(idx, idx)
    assert abs(loss.item() - torch.log(torch.tensor(11.0)).item()) < 0.3


def test_tied_weights_share_storage():
    model = GPT(tiny(tie_weights=True))
    assert model.head.weight.data_ptr() == model.tok_emb.weight.data_ptr()


def test_rope_and_qk_norm_attention_paths_agree():
    torch.manual_seed(0)
    sdpa = GPT(tiny(positional="rope", qk_norm=True)).eval()
    manual = GPT(tiny(positional="rope", qk_norm=True, attention="manual")).eval()
    manual.load_state_dict(sdpa.state_dict())
    idx = torch.randint(0, 11, (2, 16))
    torch.testing.assert_close(sdpa(idx)[0], manual(idx)[0], atol=1e-5, rtol=1e-5)


def test_rope_sees_relative_positions_only():
    """Shifting a whole sequence by a few positions rotates q and k alike: their dot products stay the same."""
    from bricklm.model.attention import apply_rope, rope_tables

    cos, sin = rope_tables(32, 8)
    q, k = torch.randn(1, 1, 4, 8), torch.randn(1, 1, 4, 8)
    at0 = apply_rope(q, cos[:4], sin[:4]) @ apply_rope(k, cos[:4], sin[:4]).transpose(-1, -2)
    at9 = apply_rope(q, cos[9:13], sin[9:13]) @ apply_rope(k, cos[9:13], sin[9:13]).transpose(-1, -2)
    torch.testing.assert_close(at0, at9, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(apply_rope(q, cos[:4], sin[:4]), q)  # but the vectors themselves did turn


def test_zero_init_makes_every_block_the_identity_at_the_start():
    torch.manual_seed(0)
    model = GPT(tiny(zero_init=True)).eval()
    x = torch.randn(2, 16, 32)
    for block in model.blocks:
        torch.testing.assert_close(block(x), x)


REFUSED = [
    {"positional": "rope", "attention": "torch_mha"},
    {"qk_norm": True, "attention": "none"},
    {"positional": "rope", "n_embd": 12, "n_head": 4},  # head size 3: rope rotates pairs
]


@pytest.mark.parametrize("bad", REFUSED)
def test_switches_that_cannot_combine_are_refused(bad):
    from bricklm.errors import UserError

    with pytest.raises(UserError):
        tiny(**bad).validate()


@pytest.mark.parametrize("switch", SWITCHES, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "default")
def test_trace_is_the_forward_pass_layer_by_layer(switch):
    """What inspect and the studio read off a model (GPT.trace) is what its modules compute."""
    torch.manual_seed(0)
    model = GPT(tiny(**switch)).eval()
    idx = torch.randint(0, 11, (2, 16))
    first = []  # what each block's first sub-layer receives, seen from the modules themselves
    hooks = [
        (b.attn if b.attn is not None else b.ffn).register_forward_pre_hook(lambda m, a: first.append(a[0]))
        for b in model.blocks
    ]
    hidden = []  # the feed-forward's activations, seen from its proj (precision.py's float16 check reads these)
    hooks += [b.ffn.proj.register_forward_pre_hook(lambda m, a: hidden.append(a[0])) for b in model.blocks]
    with torch.no_grad():
        logits, _ = model(idx)
        for h in hooks:
            h.remove()
        trace = model.trace(idx)
        assert len(trace.streams) == 3 and len(trace.weights) == len(trace.first_inputs) == 2
        torch.testing.assert_close(trace.streams[0], model.embed(idx))
        for block, x, y in zip(model.blocks, trace.streams[:-1], trace.streams[1:], strict=True):
            torch.testing.assert_close(y, block(x))
        torch.testing.assert_close(model.readout(trace.streams[-1]), logits)
        streams_only = model.trace(idx, weights=False)  # the same streams, without the attention weights
        assert streams_only.weights == [None, None]
        for a, b in zip(streams_only.streams + streams_only.ffn_hidden, trace.streams + trace.ffn_hidden, strict=True):
            torch.testing.assert_close(a, b)
    for seen, recorded in zip(first, trace.first_inputs, strict=True):
        torch.testing.assert_close(seen, recorded)
    for seen, recorded in zip(hidden, trace.ffn_hidden, strict=True):
        torch.testing.assert_close(seen, recorded)
    for w in trace.weights:
        if switch.get("attention") == "none":
            assert w is None
        else:
            assert w.shape == (2, 4, 16, 16) and torch.allclose(w.sum(-1), torch.ones(2, 4, 16))
