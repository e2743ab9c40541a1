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

`DecodeStep(model, caches, compiled=True)` runs the blocks four at a time through one torch.compile'd
function instead (the same function for every group, so it compiles once per model shape and process, in
seconds, and its guards are checked once per four blocks rather than once per block): static
shapes (the whole cache, with the positions not yet written masked out; the position to write as a tensor),
and each product written as a multiply and a sum over the input width, which inductor turns into one loop
over the weight in memory order, where a matmul would call the same BLAS routine as eager. Compiling the
whole 52-layer step took minutes; one compiled block with matmuls was no faster than eager
(docs/performance.md, Generation). Without a working C compiler the first call falls back to the eager
step, once per process, with a warning (fastpaths.CompiledFunction).

Only the arithmetic is fused here; every decision a model switch makes is the model's own: the
embedding and positions (GPT.embed), the residual wiring (Block.combine), the norms and the activation
(the modules' own forward), the queries' and keys' norm and rotation (Attention.position_qk), the
projections of either attention kind (Attention.projections), the head (GPT.readout).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from bricklm.model.attention import KVCache
from bricklm.model.fastpaths import CompiledFunction
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


def _product_reduced(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x (B, in) @ weight (out, in)ᵀ + bias written as a multiply and a sum over `in`: F.linear's maths in the
    form inductor fuses into one pass over the weight. Meant to be compiled: run eagerly (past torch.compile's
    recompile limit) it is right but slow, as it materialises (B, out, in)."""
    y = (x[:, None, :] * weight).sum(-1)
    return y if bias is None else y + bias


class _Layer:
    """What the step reads of one block, gathered once per DecodeStep: the block, its cache, its weights (transposed
    copies for the eager step)."""

    def __init__(self, block: Block, cache: KVCache, transposed: bool):
        # transposed for the eager products (_product); as they are, read in place, for the compiled ones
        arrange = _transposed if transposed else torch.Tensor.detach
        self.block, self.cache, self.attn, ffn = block, cache, block.attn, block.ffn
        if self.attn is not None:
            w_in, self.b_in, w_out, self.b_out = self.attn.projections()
            self.w_in, self.w_out = arrange(w_in), arrange(w_out)
        self.fc, self.b_fc, self.act = arrange(ffn.fc.weight), ffn.fc.bias, ffn.act.forward
        self.proj, self.b_proj = arrange(ffn.proj.weight), ffn.proj.bias


# Blocks per compiled call. Each call costs ~55 µs of guards and wrappers; more blocks per call share it but
# compile longer (one graph holds GROUP blocks). 52 × 128, 2 threads, AMD EPYC (ms per token, compile s):
# 1 block 6.9-7.8 (7), 2 blocks 4.8-6.8 (8), 4 blocks 4.1-4.7 (10), 13 blocks 5.9-6.4 (25); eager 10.2-11.1.
GROUP = 4


class DecodeStep:
    """GPT.forward for one new token per sequence, given caches that hold everything before it.

    The weights are copied, transposed, when the step is made (generate makes one per window of block_size//2
    tokens): a step sees the weights as they were then. Extra memory: one more copy of the blocks' weights.
    compiled=True reads the weights in place instead and runs the blocks compiled (module docstring).
    """

    def __init__(self, model: GPT, caches: list[KVCache], compiled: bool = False):
        self.model, self.caches, c = model, caches, model.config
        self.C, self.nh, self.hs = c.n_embd, c.n_head, c.head_size
        self.compiled = compiled and not COMPILED_BLOCKS.failed
        with torch.no_grad():
            self.layers = [
                _Layer(block, cache, transposed=not self.compiled)
                for block, cache in zip(model.blocks, caches, strict=True)
            ]

    @torch.no_grad()
    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, 1) → logits (B, vocab); every cache gains the token's keys and values."""
        m, pos = self.model, self.caches[0].length
        if pos >= m.config.block_size:
            raise ValueError(f"the caches are full ({pos} of block_size {m.config.block_size} positions)")
        x = m.embed(idx, pos)[:, 0]  # (B, C): one position, so the step works on rows, not (B, 1, C)
        x = self._compiled_blocks(x, pos) if self.compiled else self._blocks(self.layers, x, pos)
        for cache in self.caches:
            cache.length = pos + 1  # a block without attention keeps nothing, but counts the position too
        return m.readout(x)

    def _compiled_blocks(self, x: torch.Tensor, pos: int) -> torch.Tensor:
        # Static shapes: where to write as a tensor, and which cached positions a query may see as a mask over
        # the whole cache, so one compiled graph serves every position (pos itself is read only by rotary
        # positions' tables, which torch.compile then treats as a dynamic size after its first recompile).
        at = torch.tensor([pos], device=x.device)
        visible = (torch.arange(self.model.config.block_size, device=x.device) <= pos)[None]  # (1, T)
        for i in range(0, len(self.layers), GROUP):
            x = COMPILED_BLOCKS(self, self.layers[i : i + GROUP], x, pos, at, visible)
        if COMPILED_BLOCKS.failed:  # it could not compile and ran these blocks uncompiled: later tokens run eagerly
            self.compiled = False
            self.layers = [_Layer(la.block, la.cache, transposed=True) for la in self.layers]
        return x

    def _blocks(self, layers: list[_Layer], x: torch.Tensor, pos: int, at=None, visible=None) -> torch.Tensor:
        """Consecutive blocks, the unit the step compiles (GROUP of them per call)."""
        for layer in layers:
            x = self._block(layer, x, pos, at, visible)
        return x

    def _block(self, layer: _Layer, x: torch.Tensor, pos: int, at=None, visible=None) -> torch.Tensor:
        """One block for one token (B, C): the block's own wiring around the fused sub-layers."""
        return layer.block.combine(
            x, lambda h: self._attention(layer, h, pos, at, visible), lambda h: self._ffn(layer, h), _norm
        )

    def _product(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return _product_reduced(x, weight, bias) if self.compiled else _product(x, weight, bias)

    def _ffn(self, layer: _Layer, h: torch.Tensor) -> torch.Tensor:
        # FeedForward.forward without its dropout (eval only)
        return self._product(layer.act(self._product(h, layer.fc, layer.b_fc)), layer.proj, layer.b_proj)

    def _attention(self, layer: _Layer, h: torch.Tensor, pos: int, at, visible) -> torch.Tensor:
        B, nh, hs, cache = h.size(0), self.nh, self.hs, layer.cache
        qkv = self._product(h, layer.w_in, layer.b_in).view(B, 3, nh, 1, hs)
        q, k = layer.attn.position_qk(qkv[:, 0], qkv[:, 1], pos)  # each (B, nh, 1, hs)
        if visible is None:
            cache.k[:, :, pos] = k[:, :, 0]
            cache.v[:, :, pos] = qkv[:, 2, :, 0]
            # One query against every cached key (all in its past: no mask). sdpa measured faster here than the
            # same maths as two bmm and a softmax (12.7 against 20 µs a call, 4 heads of 32, one thread).
            y = F.scaled_dot_product_attention(q, cache.k[:, :, : pos + 1], cache.v[:, :, : pos + 1])
        else:
            cache.k.index_copy_(2, at, k)
            cache.v.index_copy_(2, at, qkv[:, 2])
            w = (q @ cache.k.transpose(-2, -1) * hs**-0.5).masked_fill(~visible, float("-inf")).softmax(-1)
            y = w @ cache.v  # (B, nh, 1, hs)
        return self._product(y.reshape(B, nh * hs), layer.w_out, layer.b_out)  # heads side by side are (B, C)


def _warn(message: str) -> None:
    warnings.warn(message, stacklevel=3)  # a warning, not a print: `bricklm sample` writes the text to stdout


# DecodeStep._blocks compiled on first use, shared by every step of the process; once compiling has failed (no C
# compiler, say), each later step runs eagerly without trying again.
COMPILED_BLOCKS = CompiledFunction(DecodeStep._blocks, "the decode step", dynamic=None, say=_warn)
