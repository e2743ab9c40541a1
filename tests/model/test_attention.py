"""Attention: the weights the model shows are the ones it uses; the one mask and softmax."""

import pytest
import torch

from bricklm.config import ModelConfig
from bricklm.model.attention import causal_attention_plain, causal_weights, merge_heads
from bricklm.model.gpt import GPT


def tiny_gpt(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(**{"vocab_size": 20, "n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 8, **kw}))


@pytest.mark.parametrize(
    "switch",
    [
        {"attention": "sdpa"},
        {"attention": "manual"},
        {"attention": "torch_mha"},
        {"positional": "rope", "qk_norm": True},
    ],
    ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()),
)
def test_recomputed_attention_weights_reproduce_the_models_attention(switch):
    """The weights inspect and the studio show are the ones the fused kernel used: weights @ v, projected, = attn(x)."""
    model = tiny_gpt(**switch).eval()
    attn = model.blocks[0].attn
    x = torch.randn(2, 8, 16)
    w = attn.weights(x)
    assert w.shape == (2, 2, 8, 8)
    assert torch.allclose(w.sum(-1), torch.ones(2, 2, 8)) and (w.triu(1) == 0).all()  # causal rows
    if switch.get("attention") == "torch_mha":
        v = torch.nn.functional.linear(x, attn.mha.in_proj_weight, attn.mha.in_proj_bias).chunk(3, -1)[2]
        out_proj = attn.mha.out_proj
    else:
        v, out_proj = attn.c_attn(x).chunk(3, -1)[2], attn.c_proj
    v = v.view(2, 8, 2, 8).transpose(1, 2)
    with torch.no_grad():
        assert torch.allclose(out_proj(merge_heads(w @ v)), attn(x), atol=1e-5)


def test_the_queries_of_a_cached_step_see_every_key_before_them_and_none_after():
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4)
    w = causal_weights(q, k)  # the last 3 of 5 positions ask
    assert w.shape == (1, 2, 3, 5)
    assert (w[:, :, 0, 3:] == 0).all() and (w[:, :, 1, 4:] == 0).all() and (w[:, :, 2] > 0).all()
    full = causal_weights(torch.cat([torch.randn(1, 2, 2, 4), q], dim=2), k)
    torch.testing.assert_close(full[:, :, 2:], w)  # the same rows as in the full square
    torch.testing.assert_close(causal_attention_plain(q, k, v), w @ v)
