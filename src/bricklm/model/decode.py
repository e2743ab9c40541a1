"""One new token through the GPT with as few PyTorch calls as the maths needs: the fast decode step.

    caches = model.new_caches(1, device)
    logits, _ = model(prompt, caches=caches)       # the prompt through the ordinary forward (prefill)
    step = DecodeStep(model, caches)
    logits = step(next_token)                      # (B, vocab) for one new token (B, 1), caches advanced

Decoding one token does little arithmetic (a few matrix-vector products per layer) and many small
calls: through nn.Module, each linear layer, norm, dropout and reshape costs tens of microseconds of
Python before any maths, and a 52-layer model makes ~1,500 of them per token. This step reads the
same weights and the same KV caches and calls the maths directly on rows (B, C) rather than (B, 1, C):
one product for q, k and v, a write of k and v into the cache, one fused attention of the query over the
cached positions (no mask: every cached position is in its past), one product per projection,
about 15 calls per layer. The products use copies of the weights stored transposed
(in, out), made when the step is made: a row times a transposed matrix streams it in memory order,
which on CPU is ~1.4x faster than F.linear's row times weightᵀ, and at 52 × 128 the per-token time is
mostly these products streaming 41 MB of weights (docs/performance.md, Generation). It computes what
GPT.forward computes for that token, to float rounding (tests/model/test_generate.py checks logits and
sampled tokens against the module path, fast=False, for every switch), in eval mode only (no dropout).

torch.compile was tried for this step (benchmarks under load, recorded in docs/performance.md): one
static-shape layer compiled once and looped over was no faster than these eager calls, and the whole
52-layer step took minutes to compile and ran slower, so the step stays eager and needs no C compiler.

Only the arithmetic is fused here; every decision a model switch makes is the model's own: the
embedding and positions (GPT.embed), the residual wiring (Block.combine), the norms and the activation
(the modules' own forward), the queries' and keys' norm and rotation (Attention.position_qk), the
projections of either attention kind (Attention.projections), the head (GPT.readout).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from bricklm.model.attention import KVCache
from bricklm.model.gpt import GPT, Block


def _norm(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """module(x) for the block's norms: the module's own forward (whichever norm the model chose), called
    directly, without the bookkeeping of nn.Module.__call__ (hooks, which a decode step never has)."""
    return module.forward(x)


def _transposed(weight: torch.Tensor) -> torch.Tensor:
    """weight (out, in) as a contiguous (in, out) copy: one row times it streams the matrix row by row, which on CPU
    made the single-token products ~1.4x faster than F.linear's x @ weightᵀ (benchmarks in docs/performance.md)."""
    return weight.detach().t().contiguous()


def _product(x: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x (B, in) @ weight_t (in, out) + bias: F.linear's maths with the weight stored transposed, in one call."""
    return torch.mm(x, weight_t) if bias is None else torch.addmm(bias, x, weight_t)


class _Layer:
    """What the step reads of one block, gathered once per DecodeStep: the block, its cache, its weights transposed."""

    def __init__(self, block: Block, cache: KVCache):
        self.block, self.cache, self.attn, ffn = block, cache, block.attn, block.ffn
        if self.attn is not None:
            w_in, self.b_in, w_out, self.b_out = self.attn.projections()
            self.w_in, self.w_out = _transposed(w_in), _transposed(w_out)
        self.fc, self.b_fc, self.act = _transposed(ffn.fc.weight), ffn.fc.bias, ffn.act.forward
        self.proj, self.b_proj = _transposed(ffn.proj.weight), ffn.proj.bias


class DecodeStep:
    """GPT.forward for one new token per sequence, given caches that hold everything before it.

    The weights are copied, transposed, when the step is made (generate makes one per window of block_size//2
    tokens): a step sees the weights as they were then. Extra memory: one more copy of the blocks' weights.
    """

    def __init__(self, model: GPT, caches: list[KVCache]):
        self.model, self.caches, c = model, caches, model.config
        self.C, self.nh, self.hs = c.n_embd, c.n_head, c.head_size
        with torch.no_grad():
            self.layers = [_Layer(block, cache) for block, cache in zip(model.blocks, caches, strict=True)]

    @torch.no_grad()
    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, 1) → logits (B, vocab); every cache gains the token's keys and values."""
        m, pos = self.model, self.caches[0].length
        if pos >= m.config.block_size:
            raise ValueError(f"the caches are full ({pos} of block_size {m.config.block_size} positions)")
        x = m.embed(idx, pos)[:, 0]  # (B, C): one position, so the step works on rows, not (B, 1, C)
        for layer in self.layers:
            x = layer.block.combine(
                x, lambda h, a=layer: self._attention(a, h, pos), lambda h, f=layer: self._ffn(f, h), _norm
            )
        for cache in self.caches:
            cache.length = pos + 1  # a block without attention keeps nothing, but counts the position too
        return m.readout(x)

    @staticmethod
    def _ffn(layer: _Layer, h: torch.Tensor) -> torch.Tensor:
        # FeedForward.forward without its dropout (eval only)
        return _product(layer.act(_product(h, layer.fc, layer.b_fc)), layer.proj, layer.b_proj)

    def _attention(self, layer: _Layer, h: torch.Tensor, pos: int) -> torch.Tensor:
        B, nh, hs, cache = h.size(0), self.nh, self.hs, layer.cache
        qkv = _product(h, layer.w_in, layer.b_in).view(B, 3, nh, 1, hs)
        q, k = layer.attn.position_qk(qkv[:, 0], qkv[:, 1], pos)  # each (B, nh, 1, hs)
        cache.k[:, :, pos] = k[:, :, 0]
        cache.v[:, :, pos] = qkv[:, 2, :, 0]
        # One query against every cached key (all in its past: no mask). sdpa measured faster here than the same
        # maths as two bmm and a softmax (12.7 against 20 µs a call, 4 heads of 32, one thread).
        y = F.scaled_dot_product_attention(q, cache.k[:, :, : pos + 1], cache.v[:, :, : pos + 1])  # (B, nh, 1, hs)
        return _product(y.reshape(B, nh * hs), layer.w_out, layer.b_out)  # one position: heads side by side are (B, C)
