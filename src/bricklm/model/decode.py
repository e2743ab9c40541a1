"""One new token through the GPT with as few PyTorch calls as the maths needs: the fast decode step.

    caches = model.new_caches(1, device)
    logits, _ = model(prompt, caches=caches)       # the prompt through the ordinary forward (prefill)
    step = DecodeStep(model, caches)
    logits = step(next_token)                      # (B, vocab) for one new token (B, 1), caches advanced

Decoding one token does little arithmetic (a few matrix-vector products per layer) and many small
calls: through nn.Module, each linear layer, norm, dropout and reshape costs tens of microseconds of
Python before any maths, and a 52-layer model makes ~1,500 of them per token. This step reads the
same weights and the same KV caches and calls the maths directly (functional ops, or a module's own
forward as a plain function, skipping nn.Module.__call__): one linear for q, k and v,
one write of k and v into the cache, one fused attention over the cached positions, and so on, about
15 calls per layer. It computes what GPT.forward computes for that token (tests/model/test_generate.py
checks logits and sampled tokens against the module path), in eval mode only (no dropout).

Only the arithmetic is fused here; every decision a model switch makes is the model's own: the
embedding and positions (GPT.embed), the residual wiring (Block.combine), the norms and the activation
(the modules' own forward), the queries' and keys' norm and rotation (Attention.position_qk), the
projections of either attention kind (Attention.projections), the head (GPT.readout).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from bricklm.model.attention import Attention, KVCache
from bricklm.model.gpt import GPT, Block, FeedForward


def _norm(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """module(x) for the block's norms: the module's own forward (whichever norm the model chose), called
    directly, without the bookkeeping of nn.Module.__call__ (hooks, which a decode step never has)."""
    return module.forward(x)


class DecodeStep:
    """GPT.forward for one new token per sequence, given caches that hold everything before it."""

    def __init__(self, model: GPT, caches: list[KVCache]):
        self.model, self.caches, c = model, caches, model.config
        self.C, self.nh, self.hs = c.n_embd, c.n_head, c.head_size

    @torch.no_grad()
    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, 1) → logits (B, vocab); every cache gains the token's keys and values."""
        m, pos = self.model, self.caches[0].length
        if pos >= m.config.block_size:
            raise ValueError(f"the caches are full ({pos} of block_size {m.config.block_size} positions)")
        x = m.embed(idx, pos)  # (B, 1, C); once per token, so the module calls cost little here
        for block, cache in zip(m.blocks, self.caches, strict=True):
            x = self._block(block, cache, x, pos)
        for cache in self.caches:
            cache.length = pos + 1  # a block without attention keeps nothing, but counts the position too
        return m.readout(x)[:, -1]

    def _block(self, block: Block, cache: KVCache, x: torch.Tensor, pos: int) -> torch.Tensor:
        return block.combine(
            x, lambda h: self._attention(block.attn, cache, h, pos), lambda h: self._ffn(block.ffn, h), _norm
        )

    def _ffn(self, ffn: FeedForward, h: torch.Tensor) -> torch.Tensor:
        # FeedForward.forward without its dropout (eval only) and without a module call per layer
        return ffn.proj.forward(ffn.act.forward(ffn.fc.forward(h)))

    def _attention(self, attn: Attention, cache: KVCache, h: torch.Tensor, pos: int) -> torch.Tensor:
        B = h.size(0)
        w_in, b_in, w_out, b_out = attn.projections()
        q, k, v = F.linear(h, w_in, b_in).view(B, 3, self.nh, 1, self.hs).unbind(1)  # each (B, nh, 1, hs)
        q, k = attn.position_qk(q, k, pos)
        cache.k[:, :, pos : pos + 1] = k
        cache.v[:, :, pos : pos + 1] = v
        y = F.scaled_dot_product_attention(q, cache.k[:, :, : pos + 1], cache.v[:, :, : pos + 1])  # (B, nh, 1, hs)
        return F.linear(y.transpose(1, 2).reshape(B, 1, self.C), w_out, b_out)
