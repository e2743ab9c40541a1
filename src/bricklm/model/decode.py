"""One new token through the GPT with as few PyTorch calls as the maths needs: the fast decode step.

    caches = model.new_caches(1, device)
    logits, _ = model(prompt, caches=caches)       # the prompt through the ordinary forward (prefill)
    step = DecodeStep(model, caches)
    logits = step(next_token)                      # (B, vocab) for one new token (B, 1), caches advanced

Decoding one token does little arithmetic (a few matrix-vector products per layer) and many small
calls: through nn.Module, each linear layer, norm, dropout and reshape costs tens of microseconds of
Python before any maths, and a 52-layer model makes ~1,500 of them per token. This step reads the
same weights and the same KV caches and calls the functional ops directly: one linear for q, k and v,
one write of k and v into the cache, one fused attention over the cached positions, and so on, about
15 calls per layer. It computes what GPT.forward computes for that token (tests/model/test_generate.py
checks logits and sampled tokens against the module path), in eval mode only (no dropout).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from bricklm.model.gpt import GPT, KVCache, SelfAttention, TorchMultiheadAttention, apply_rope


def _norm(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if isinstance(module, nn.LayerNorm):
        return F.layer_norm(x, module.normalized_shape, module.weight, module.bias, module.eps)
    if isinstance(module, nn.RMSNorm):
        return F.rms_norm(x, module.normalized_shape, module.weight, module.eps)
    return x  # no norm (nn.Identity)


class DecodeStep:
    """GPT.forward for one new token per sequence, given caches that hold everything before it."""

    def __init__(self, model: GPT, caches: list[KVCache]):
        self.model, self.caches, c = model, caches, model.config
        self.C, self.nh, self.hs = c.n_embd, c.n_head, c.head_size
        self.act = {"gelu": F.gelu, "relu": F.relu, "relu2": lambda t: F.relu(t).square()}[c.activation]

    @torch.no_grad()
    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, 1) → logits (B, vocab); every cache gains the token's keys and values."""
        m, pos = self.model, self.caches[0].length
        if pos >= m.config.block_size:
            raise ValueError(f"the caches are full ({pos} of block_size {m.config.block_size} positions)")
        x = F.embedding(idx, m.tok_emb.weight)  # (B, 1, C)
        if m.config.positional == "learned":
            x = x + m.pos_emb.weight[pos]
        elif m.config.positional == "sinusoidal":
            x = x + m.pos_table[pos]
        for block, cache in zip(m.blocks, self.caches, strict=True):
            x = self._block(block, cache, x, pos)
        return F.linear(_norm(m.ln_f, x), m.head.weight, m.head.bias)[:, -1]

    def _block(self, block, cache: KVCache, x: torch.Tensor, pos: int) -> torch.Tensor:
        if block.attn is None:
            cache.length = pos + 1  # as Block.forward: the position is counted though nothing is kept
        else:
            if block.residual == "bug":
                x = _norm(block.ln1, x)  # the blog's bug, as Block.forward has it
                x = x + self._attention(block.attn, cache, x, pos)
            elif block.residual == "on":
                x = x + self._attention(block.attn, cache, _norm(block.ln1, x), pos)
            else:
                x = self._attention(block.attn, cache, _norm(block.ln1, x), pos)
        ffn = block.ffn
        h = F.linear(
            self.act(F.linear(_norm(block.ln2, x), ffn.fc.weight, ffn.fc.bias)), ffn.proj.weight, ffn.proj.bias
        )
        return h if block.residual == "off" else x + h

    def _attention(self, attn, cache: KVCache, h: torch.Tensor, pos: int) -> torch.Tensor:
        B = h.size(0)
        if isinstance(attn, TorchMultiheadAttention):
            w_in, b_in, w_out, b_out = (
                attn.mha.in_proj_weight,
                attn.mha.in_proj_bias,
                attn.mha.out_proj.weight,
                attn.mha.out_proj.bias,
            )
        else:
            assert isinstance(attn, SelfAttention)
            w_in, b_in, w_out, b_out = attn.c_attn.weight, attn.c_attn.bias, attn.c_proj.weight, attn.c_proj.bias
        q, k, v = F.linear(h, w_in, b_in).view(B, 3, self.nh, 1, self.hs).unbind(1)  # each (B, nh, 1, hs)
        if getattr(attn, "qk_norm", False):
            q, k = F.rms_norm(q, (self.hs,)), F.rms_norm(k, (self.hs,))
        if getattr(attn, "rope", False):
            cos, sin = attn.rope_cos[pos : pos + 1], attn.rope_sin[pos : pos + 1]
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        cache.k[:, :, pos : pos + 1] = k
        cache.v[:, :, pos : pos + 1] = v
        cache.length = pos + 1
        y = F.scaled_dot_product_attention(q, cache.k[:, :, : pos + 1], cache.v[:, :, : pos + 1])  # (B, nh, 1, hs)
        return F.linear(y.transpose(1, 2).reshape(B, 1, self.C), w_out, b_out)
