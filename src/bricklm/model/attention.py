"""Causal self-attention: the maths, the kernels that compute it, the two modules, and the KV cache.

    q, k, v = attn.qkv(x)               # (B, nh, T, hs) each, as the module compares them (QK-norm, rotary)
    y = attn(x)                         # (B, T, C): what the block adds to the residual stream
    w = attn.weights(x)                 # (B, nh, T, T): where each position looks, row t = query t
    y = attn(x_new, cache)              # decoding: x_new continues the positions the KV cache holds

The fused kernels never materialise the weights; `weights` recomputes them from the module's own q
and k with the one mask and softmax written here (causal_weights), so whatever shows or measures
attention (inspect, the studio) sees what the model computes. Shapes: B batch, T time, C n_embd,
nh n_head, hs head size.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

from bricklm.config import ModelConfig


def split_heads(x: torch.Tensor, n_head: int) -> torch.Tensor:
    B, T, C = x.shape
    return x.view(B, T, n_head, C // n_head).transpose(1, 2)  # (B, nh, T, hs)


def merge_heads(y: torch.Tensor) -> torch.Tensor:
    B, nh, T, hs = y.shape
    return y.transpose(1, 2).contiguous().view(B, T, nh * hs)  # (B, T, C)


def causal_weights(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ / √hs + causal mask): (B, nh, Tq, Tk), row t = how much query t looks at each key.

    q is (B, nh, Tq, hs) and k is (B, nh, Tk, hs) with Tk ≥ Tq: the queries are the *last* Tq
    positions, which is what decoding with a KV cache needs.
    """
    Tq, Tk, hs = q.size(2), k.size(2), q.size(3)
    scores = q @ k.transpose(-2, -1) * hs**-0.5  # (B, nh, Tq, Tk); scaled by head size, not n_embd
    future = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).triu(Tk - Tq + 1)
    return F.softmax(scores.masked_fill(future, float("-inf")), dim=-1)


def causal_attention_plain(q, k, v, dropout_p: float = 0.0, training: bool = False):
    """Scaled dot-product attention written out: causal_weights(q, k) @ v, per head: (B, nh, Tq, hs)."""
    return F.dropout(causal_weights(q, k), dropout_p, training) @ v


def dropout_keep(q: torch.Tensor, k: torch.Tensor, p: float) -> torch.Tensor:
    """Which attention weights dropout keeps, (B, nh, Tq, Tk) bools, drawn as F.dropout draws them on a CPU (a
    float32 Bernoulli tensor), so the same RNG state gives the same mask; 1 byte per weight instead of 4."""
    return torch.empty(*q.shape[:-1], k.size(2), device=q.device).bernoulli_(1 - p).bool()


def dropout_scale(keep: torch.Tensor, p: float, dtype: torch.dtype) -> torch.Tensor:
    """What F.dropout multiplies by, from its mask: 0 or 1/(1-p), the very floats it computes (1.0 / (1-p))."""
    return keep.to(dtype).div_(1 - p)


def attention_keeping(q, k, v, keep: torch.Tensor, p: float):
    """causal_weights(q, k) with dropout's mask given, scaled by 1/(1-p) as F.dropout does, @ v: (B, nh, Tq, hs)."""
    w = causal_weights(q, k)
    return (w * dropout_scale(keep, p, w.dtype)) @ v


def attention_dropping_compactly(q, k, v, dropout_p: float, training: bool = True):
    """causal_attention_plain with dropout, the same numbers bit for bit, keeping ~1.25 float copies of the T x T
    weights for backward instead of ~3 (the softmax's output, F.dropout's scaled mask and the dropped weights):
    the mask is kept as bytes, and it and the dropped weights are remade from it and the softmax's output (which
    the softmax keeps anyway) when backward asks for them. With no dropout, or no gradient, it is the plain path.
    """
    if not (training and dropout_p > 0 and torch.is_grad_enabled()):
        return causal_attention_plain(q, k, v, dropout_p, training)
    w = causal_weights(q, k)
    noise = torch.empty_like(w).bernoulli_(1 - dropout_p)  # drawn as F.dropout draws it
    keep, scale = noise.bool(), noise.div_(1 - dropout_p)  # scale: 0 or 1/(1-p), as F.dropout multiplies by
    kind = torch.get_autocast_dtype(q.device.type) if torch.is_autocast_enabled(q.device.type) else w.dtype
    remade: dict[tuple, str] = {}  # (address, dtype, shape) of the two tensors backward gets remade: which one

    def pack(t: torch.Tensor):
        what = remade.get((t.data_ptr(), t.dtype, t.shape))
        return (what, w, keep, dropout_p, kind) if what else t

    with torch.autograd.graph.saved_tensors_hooks(pack, _remake):
        remade[(scale.data_ptr(), scale.dtype, scale.shape)] = "mask"
        dropped = (w * scale).to(kind)  # cast here, as autocast would for the product, so it is the one kept
        remade[(dropped.data_ptr(), dropped.dtype, dropped.shape)] = "dropped"
        return dropped @ v


def _remake(saved):
    """A tensor attention_dropping_compactly's backward asked for: as it was kept, or remade to the same floats."""
    if not isinstance(saved, tuple):
        return saved
    what, w, keep, p, kind = saved
    scale = dropout_scale(keep, p, w.dtype)
    return scale if what == "mask" else (w * scale).to(kind)


def sdpa_causal(q, k, v, dropout_p: float = 0.0, training: bool = False):
    """The same attention through PyTorch's fused kernel (flash attention on CPU and GPU when it can)."""
    if q.size(2) == k.size(2):
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
    if q.size(2) == 1:  # one new token attends to everything cached: no mask needed
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    return causal_attention_plain(q, k, v, dropout_p, training)


# Ways to compute causal attention over all heads at once, by name (SelfAttention.kernel): the same maths
# (tests/model/test_fastpaths.py), different speeds. fastpaths.py adds a compiled one; attention = "auto" lets
# training/tuning.py measure which is fastest for a shape on this machine.
ATTENTION_KERNELS = {"sdpa": sdpa_causal, "math": causal_attention_plain}


def rope_tables(block_size: int, head_size: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary position embedding (Su et al., RoFormer): cos and sin of t·θ_i, θ_i = base^(-2i/hs), each (T, hs/2)."""
    inv_freq = base ** (-torch.arange(0, head_size, 2, dtype=torch.float32) / head_size)
    angles = torch.arange(block_size, dtype=torch.float32)[:, None] * inv_freq  # (T, hs/2)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x_i, x_{i+hs/2}) of every head by its position's angle: (B, nh, T, hs) in and out.

    A query at position t and a key at s then meet at an angle that depends on t - s only, so
    attention sees relative positions, and nothing is added to the residual stream.
    """
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Attention(nn.Module):
    """What both attention modules offer besides forward(x, cache): their q, k, v, their weights, their projections."""

    n_head: int

    def qkv(self, x: torch.Tensor, start: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v (B, nh, T, hs) of x (B, T, C), whose first position is `start`, as the attention compares them."""
        raise NotImplementedError

    def position_qk(self, q: torch.Tensor, k: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected queries and keys (B, nh, T, hs) made ready to compare; plain attention leaves them as they are."""
        return q, k

    def projections(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
        """(q/k/v weight (3C, C), its bias, output weight (C, C), its bias): what the fused decode step uses."""
        raise NotImplementedError

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The attention weights (B, nh, T, T) for x (B, T, C), row t = where position t looks; no cache, no dropout.

        Recomputed from the module's own q and k (the fused kernels never materialise them): a test checks that
        weights @ v, projected, is the module's output.
        """
        q, k, _ = self.qkv(x)
        return causal_weights(q, k)


class SelfAttention(Attention):
    """Multi-head causal self-attention with one fused q/k/v projection.

    `manual` runs each head on its own, as in the lecture; `sdpa` hands all heads to PyTorch's
    fused kernel; `auto` uses whichever kernel (ATTENTION_KERNELS) measured fastest here. All use
    the same weights, so they can be checked against each other and a checkpoint moves between them.
    With positional="rope" the queries and keys are rotated by position; with qk_norm they are
    RMS-normalised per head first (what keeps attention logits from growing in modern GPTs).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_head, self.kind, self.dropout = config.n_head, config.attention, config.dropout
        self.qk_norm, self.rope = config.qk_norm, config.positional == "rope"
        self.kernel = "sdpa"  # a name in ATTENTION_KERNELS; tuning.tune may pick another for attention = auto
        self.recompute = False  # set by the trainer (TrainConfig.recompute_attention)
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        if self.rope:
            cos, sin = rope_tables(config.block_size, config.head_size)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)

    def qkv(self, x: torch.Tensor, start: int = 0):
        q, k, v = (split_heads(t, self.n_head) for t in self.c_attn(x).chunk(3, dim=-1))
        return *self.position_qk(q, k, start), v

    def position_qk(self, q: torch.Tensor, k: torch.Tensor, start: int):
        """RMS-normalised per head (qk_norm), then rotated by position (rope), if those switches are on."""
        if self.qk_norm:
            q, k = F.rms_norm(q, (q.size(-1),)), F.rms_norm(k, (k.size(-1),))
        if self.rope:
            cos, sin = self.rope_cos[start : start + q.size(2)], self.rope_sin[start : start + q.size(2)]
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return q, k

    def projections(self):
        return self.c_attn.weight, self.c_attn.bias, self.c_proj.weight, self.c_proj.bias

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        q, k, v = self.qkv(x, cache.length if cache is not None else 0)
        if cache is not None:
            k, v = cache.append(k, v)
        p = self.dropout if self.training else 0.0
        if self.kind == "manual":
            heads = [
                causal_attention_plain(q[:, h : h + 1], k[:, h : h + 1], v[:, h : h + 1], p, self.training)
                for h in range(self.n_head)
            ]
            y = torch.cat(heads, dim=1)
        elif self.recompute and cache is None and torch.is_grad_enabled() and KERNEL_COPIES[self.kernel][p > 0]:
            y = self.recomputed(q, k, v, p)
        elif p > 0:
            # Every kernel: with dropout sdpa runs the written-out maths too (PyTorch has no fused CPU kernel for it).
            y = attention_dropping_compactly(q, k, v, p, self.training)
        else:
            y = ATTENTION_KERNELS[self.kernel](q, k, v, p, self.training)
        return self.resid_dropout(self.c_proj(merge_heads(y)))

    def recomputed(self, q, k, v, p: float) -> torch.Tensor:
        """Attention whose backward pass recomputes the T x T weights from q, k, v instead of keeping them (with
        dropout, 1.25 float copies even kept compactly; without, the math kernels' own). Dropout's mask is drawn
        here and kept as bytes, so backward needs no second draw of ~B·nh·T² random numbers, nor an RNG state to
        replay. With dropout every kernel computes this way; without, the tuned kernel is replayed. No early stop:
        it ends the replay by raising inside the kernel, which a compiled kernel would take for a failure to
        compile; the replay needs every tensor the kernel saves anyway."""
        replay = dict(use_reentrant=False, early_stop=False, preserve_rng_state=False)
        if p > 0:
            return torch.utils.checkpoint.checkpoint(attention_keeping, q, k, v, dropout_keep(q, k, p), p, **replay)
        return torch.utils.checkpoint.checkpoint(ATTENTION_KERNELS[self.kernel], q, k, v, 0.0, False, **replay)


class TorchMultiheadAttention(Attention):
    """The blog's choice: PyTorch's nn.MultiheadAttention with a causal mask.

    Unlike the blog, dropout does reach the attention weights (the module's own `dropout`).
    Decoding with a cache reuses the module's projection weights with the plain attention.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_head = config.n_head
        self.mha = nn.MultiheadAttention(
            config.n_embd, config.n_head, dropout=config.dropout, bias=config.bias, batch_first=True
        )
        self.resid_dropout = nn.Dropout(config.dropout)

    def qkv(self, x: torch.Tensor, start: int = 0):
        # nn.MultiheadAttention packs q, k, v in one in_proj matrix, in that order
        q, k, v = F.linear(x, self.mha.in_proj_weight, self.mha.in_proj_bias).chunk(3, dim=-1)
        return tuple(split_heads(t, self.n_head) for t in (q, k, v))

    def projections(self):
        m = self.mha
        return m.in_proj_weight, m.in_proj_bias, m.out_proj.weight, m.out_proj.bias

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        if cache is None:
            T = x.size(1)
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)  # True = may not attend
            y, _ = self.mha(x, x, x, attn_mask=mask, need_weights=False)
            return self.resid_dropout(y)
        q, k, v = self.qkv(x)
        k, v = cache.append(k, v)
        return self.resid_dropout(self.mha.out_proj(merge_heads(causal_attention_plain(q, k, v))))


def make_attention(config: ModelConfig) -> Attention | None:
    if config.attention == "none":
        return None
    if config.attention == "torch_mha":
        return TorchMultiheadAttention(config)
    return SelfAttention(config)


# Attention matrices (nh × T × T) a training step's peak holds per layer, in copies, by attention kind: (no dropout,
# dropout); measured on CPU by benchmarks/reliability.py (peak RSS, so one layer's passing copies and glibc's heap
# count too). Fused sdpa keeps none. With dropout every SelfAttention kernel runs attention_dropping_compactly, which
# keeps 1.25 copies as tensors, but the peaks of the 8-layer blog block with it varied from 813 to 1,170 MB between
# runs (glibc's heap; 517 MB under tcmalloc): 6 copies keeps the estimate above the worst of them. attention = auto
# keeps what the kernel the tuner picked keeps (KERNEL_COPIES; sdpa until it has picked).
DROPOUT_COPIES = 6
ATTENTION_COPIES = {"manual": (5, 13), "torch_mha": (6, 6), "sdpa": (0, DROPOUT_COPIES), "none": (0, 0)}
KERNEL_COPIES = {
    "sdpa": ATTENTION_COPIES["sdpa"],
    "math": (ATTENTION_COPIES["manual"][0], DROPOUT_COPIES),
    "compiled": (ATTENTION_COPIES["manual"][0], DROPOUT_COPIES),
}


class KVCache:
    """Keys and values of one layer for positions already seen, so decoding a token costs O(T), not O(T²)."""

    def __init__(self, batch: int, n_head: int, max_len: int, head_size: int, device, dtype):
        # Preallocated: appending is a copy into a slice, never a torch.cat that reallocates every step.
        self.k = torch.zeros(batch, n_head, max_len, head_size, device=device, dtype=dtype)
        self.v = torch.zeros_like(self.k)
        self.length = 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = k.size(2)
        self.k[:, :, self.length : self.length + t] = k
        self.v[:, :, self.length : self.length + t] = v
        self.length += t
        return self.k[:, :, : self.length], self.v[:, :, : self.length]
