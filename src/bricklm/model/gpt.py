"""The GPT: a decoder-only Transformer, as in "Attention Is All You Need" and GPT-2.

    tokens (B, T) ──embed──▶ + positions ──▶ n_layer × Block ──▶ LayerNorm ──▶ head ──▶ logits (B, T, vocab)
    Block:  x = x + attention(ln1(x))        (causal: position t sees positions ≤ t)
            x = x + feed_forward(ln2(x))     (Linear C→4C, activation, Linear 4C→C)

Every block the blog experiments with is a switch on `ModelConfig` (attention kind,
positions, norm, residual, the blog's residual bug, activation, weight tying), so an
ablation is a config change, not a code edit; so are the modern ones that modded-nanogpt and
nanochat use (rotary positions, RMSNorm, QK-norm, ReLU², zero-initialised projections, no
biases). The blog's settings stay the defaults; recipes opt in. Shapes in comments: B batch, T time,
C n_embd, nh n_head, hs head size.

    model = GPT(ModelConfig(vocab_size=100)); logits, loss = model(idx, targets)
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

from bricklm.config import ModelConfig

# Parameter names other modules rely on (optimiser groups, LoRA, export), defined once here.
EMBEDDINGS = ("tok_emb", "pos_emb")
RESIDUAL_PROJECTIONS = ("attn.c_proj.weight", "ffn.proj.weight", "attn.mha.out_proj.weight")  # write into the stream


def split_heads(x: torch.Tensor, n_head: int) -> torch.Tensor:
    B, T, C = x.shape
    return x.view(B, T, n_head, C // n_head).transpose(1, 2)  # (B, nh, T, hs)


def merge_heads(y: torch.Tensor) -> torch.Tensor:
    B, nh, T, hs = y.shape
    return y.transpose(1, 2).contiguous().view(B, T, nh * hs)  # (B, T, C)


def causal_attention_plain(q, k, v, dropout_p: float = 0.0, training: bool = False):
    """Scaled dot-product attention written out: softmax(q kᵀ / √hs + causal mask) v, per head.

    q is (B, nh, Tq, hs) and k, v are (B, nh, Tk, hs) with Tk ≥ Tq: the queries are the *last*
    Tq positions, which is what decoding with a KV cache needs.
    """
    Tq, Tk, hs = q.size(2), k.size(2), q.size(3)
    scores = q @ k.transpose(-2, -1) * hs**-0.5  # (B, nh, Tq, Tk); scaled by head size, not n_embd
    future = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).triu(Tk - Tq + 1)
    scores = scores.masked_fill(future, float("-inf"))
    weights = F.dropout(F.softmax(scores, dim=-1), dropout_p, training)
    return weights @ v  # (B, nh, Tq, hs)


def sdpa_causal(q, k, v, dropout_p: float = 0.0, training: bool = False):
    """The same attention through PyTorch's fused kernel (flash attention on CPU and GPU when it can)."""
    if q.size(2) == k.size(2):
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
    if q.size(2) == 1:  # one new token attends to everything cached: no mask needed
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    return causal_attention_plain(q, k, v, dropout_p, training)


# Ways to compute causal attention over all heads at once, by name (SelfAttention.kernel): the same maths
# (tests/model/test_fastpaths.py), different speeds. fastpaths.py adds a compiled one; attention = "auto" lets
# hardware.tune measure which is fastest for a shape on this machine.
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


class SelfAttention(nn.Module):
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
        self.kernel = "sdpa"  # a name in ATTENTION_KERNELS; hardware.tune may pick another for attention = auto
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        if self.rope:
            cos, sin = rope_tables(config.block_size, config.head_size)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)

    def qkv(self, x: torch.Tensor, start: int = 0):
        """q, k, v (B, nh, T, hs) of x, whose first position is `start` (for rotary positions)."""
        q, k, v = (split_heads(t, self.n_head) for t in self.c_attn(x).chunk(3, dim=-1))
        if self.qk_norm:
            q, k = F.rms_norm(q, (q.size(-1),)), F.rms_norm(k, (k.size(-1),))
        if self.rope:
            cos, sin = self.rope_cos[start : start + x.size(1)], self.rope_sin[start : start + x.size(1)]
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return q, k, v

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
        else:
            y = ATTENTION_KERNELS[self.kernel](q, k, v, p, self.training)
        return self.resid_dropout(self.c_proj(merge_heads(y)))


class TorchMultiheadAttention(nn.Module):
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

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        if cache is None:
            T = x.size(1)
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)  # True = may not attend
            y, _ = self.mha(x, x, x, attn_mask=mask, need_weights=False)
            return self.resid_dropout(y)
        m = self.mha
        q, k, v = F.linear(x, m.in_proj_weight, m.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (split_heads(t, self.n_head) for t in (q, k, v))
        k, v = cache.append(k, v)
        y = causal_attention_plain(q, k, v)
        return self.resid_dropout(m.out_proj(merge_heads(y)))


class ReLUSquared(nn.Module):
    """relu(x)²: the feed-forward activation of modded-nanogpt and nanochat (So et al., Primer)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x).square()


ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "relu2": ReLUSquared}


class FeedForward(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.ffn_bias)
        self.act = ACTIVATIONS[config.activation]()
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.ffn_bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(self.act(self.fc(x))))


def make_norm(config: ModelConfig) -> nn.Module:
    if config.norm == "layernorm":
        return nn.LayerNorm(config.n_embd)
    return nn.RMSNorm(config.n_embd) if config.norm == "rmsnorm" else nn.Identity()


def make_attention(config: ModelConfig) -> nn.Module | None:
    if config.attention == "none":
        return None
    if config.attention == "torch_mha":
        return TorchMultiheadAttention(config)
    return SelfAttention(config)


class Block(nn.Module):
    """One Transformer block, pre-norm, with the residual switches the blog's ablations need."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.residual = config.residual  # "on", "off", or "bug" (the blog's subtle bug, kept as an ablation)
        self.ln1 = make_norm(config) if config.attention != "none" else None
        self.attn = make_attention(config)
        self.ln2 = make_norm(config)
        self.ffn = FeedForward(config)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        if self.attn is None and cache is not None:
            cache.length += x.size(1)  # nothing to keep, but the cache still counts the positions seen
        if self.attn is not None:
            if self.residual == "bug":
                x = self.ln1(x)  # the blog's bug: the normalised x replaces the stream it should add to
                x = x + self.attn(x, cache)
            elif self.residual == "on":
                x = x + self.attn(self.ln1(x), cache)
            else:
                x = self.attn(self.ln1(x), cache)
        if self.residual == "off":
            return self.ffn(self.ln2(x))
        return x + self.ffn(self.ln2(x))


def sinusoidal_table(block_size: int, n_embd: int) -> torch.Tensor:
    """PE[t, 2i] = sin(t / 10000^(2i/C)), PE[t, 2i+1] = cos(...): (T, C), indexed by position (not batch)."""
    position = torch.arange(block_size, dtype=torch.float32)[:, None]
    inv_freq = torch.exp(torch.arange(0, n_embd, 2, dtype=torch.float32) * (-math.log(10000.0) / n_embd))
    table = torch.zeros(block_size, n_embd)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq)
    return table


class GPT(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.vocab_size <= 0:
            raise ValueError("ModelConfig.vocab_size must be set (from the tokenizer) before building a GPT")
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        if config.positional == "learned":
            self.pos_emb = nn.Embedding(config.block_size, config.n_embd)
        elif config.positional == "sinusoidal":
            # A buffer, not a parameter: fixed, not learned, and not counted in n_params.
            self.register_buffer("pos_table", sinusoidal_table(config.block_size, config.n_embd), persistent=False)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = make_norm(config)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=config.head_bias)
        if config.tie_weights:
            self.head.weight = self.tok_emb.weight
        self.recompute_activations = False  # set by the trainer (TrainConfig.recompute_activations)
        self.apply(self._init_weights)
        # GPT-2: scale the projections into the residual stream by 1/√(2·n_layer) so depth doesn't blow it up;
        # zero_init (modded-nanogpt): start them at zero, so every block begins as the identity.
        for name, p in self.named_parameters():
            if name.endswith(RESIDUAL_PROJECTIONS):
                if config.zero_init:
                    nn.init.zeros_(p)
                else:
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        elif isinstance(module, nn.MultiheadAttention):
            nn.init.normal_(module.in_proj_weight, mean=0.0, std=0.02)
            if module.in_proj_bias is not None:
                nn.init.zeros_(module.in_proj_bias)

    def n_params(self) -> int:
        """Trainable parameters, each shared tensor counted once (as the blog counts them)."""
        return sum(p.numel() for p in self.parameters())

    def positions(self, T: int, start: int, device) -> torch.Tensor | float:
        if start + T > self.config.block_size:
            raise ValueError(f"positions {start}..{start + T} exceed block_size {self.config.block_size}")
        if self.config.positional == "learned":
            return self.pos_emb(torch.arange(start, start + T, device=device))  # (T, C)
        if self.config.positional == "sinusoidal":
            return self.pos_table[start : start + T]
        return 0.0  # none, or rope (applied to queries and keys inside the attention)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        caches: list[KVCache] | None = None,
    ):
        """idx (B, T) token ids → logits (B, T, vocab) and, given targets (B, T), the mean cross-entropy.

        With `caches`, idx holds only the new tokens and positions continue from what is cached.
        """
        B, T = idx.shape
        start = caches[0].length if caches else 0
        x = self.drop(self.tok_emb(idx) + self.positions(T, start, idx.device))  # (B, T, C)
        for i, block in enumerate(self.blocks):
            if self.recompute_activations and self.training and not caches and torch.is_grad_enabled():
                # Keep only each block's input; recompute its insides in backward: less memory, ~1/3 more work.
                x = torch.utils.checkpoint.checkpoint(block, x, None, use_reentrant=False)
            else:
                x = block(x, caches[i] if caches else None)
        logits = self.head(self.ln_f(x))
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss

    def new_caches(self, batch: int, device, dtype=torch.float32) -> list[KVCache]:
        c = self.config
        return [KVCache(batch, c.n_head, c.block_size, c.head_size, device, dtype) for _ in range(c.n_layer)]


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


@contextmanager
def evaluating(model: nn.Module):
    """model.eval() for the duration (no dropout), then back to whatever mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def count_params(config: ModelConfig) -> int:
    """The closed formula for n_params, term by term; a test checks it against the built model."""
    C, V, L = config.n_embd, config.vocab_size, config.n_layer
    norm = {"layernorm": 2 * C, "rmsnorm": C, "none": 0}[config.norm]
    attn = 0 if config.attention == "none" else 4 * C * C + (4 * C if config.bias else 0) + norm
    ffn = 8 * C * C + (5 * C if config.ffn_bias else 0) + norm
    embeddings = V * C + (config.block_size * C if config.positional == "learned" else 0)
    head = (0 if config.tie_weights else C * V) + (V if config.head_bias else 0)
    return embeddings + L * (attn + ffn) + norm + head
