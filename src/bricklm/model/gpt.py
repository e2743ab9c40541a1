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
    trace = model.trace(idx)     # the residual stream after each block and each block's attention weights
    x = model.embed(idx, start); logits = model.readout(x)   # the pieces forward is made of

The switches are computed with here and in attention.py only; outside the model a few modules may read
them to check, set, map or key on them (tests/test_architecture.py lists each). Whatever needs per-layer
streams, attention weights, a cached step or a size asks the model (trace, Attention.weights, forward with
caches, decode.DecodeStep, count_params, count_activations) instead of re-deriving its maths.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

from bricklm.config import ModelConfig
from bricklm.model.attention import ATTENTION_COPIES, KERNEL_COPIES, KVCache, SelfAttention, make_attention

# Parameter names other modules rely on (optimiser groups, LoRA, export), defined once here.
EMBEDDINGS = ("tok_emb", "pos_emb")
RESIDUAL_PROJECTIONS = ("attn.c_proj.weight", "ffn.proj.weight", "attn.mha.out_proj.weight")  # write into the stream


class ReLUSquared(nn.Module):
    """relu(x)²: the feed-forward activation of modded-nanogpt and nanochat (So et al., Primer)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x).square()


class SwiGLU(nn.Module):
    """silu(gate) * up (Shazeer, "GLU Variants Improve Transformer"): the gated feed-forward of Llama and Qwen3.

    The input (..., 2H) is fc's output: the gate's H units first, then the up projection's H.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = x.chunk(2, dim=-1)
        return F.silu(gate) * up


# Modules, so the shape trace and hooks see them; DecodeStep calls their forward as a plain function.
ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "relu2": ReLUSquared, "swiglu": SwiGLU}
GATED = ("swiglu",)  # activations whose fc computes a gate and an up projection side by side


def ffn_hidden(config: ModelConfig) -> int:
    """The feed-forward's hidden width H: 4C, or round(8C/3) for a gated activation, whose three C×H matrices
    then hold as many parameters as the two C×4C of the ungated one (Shazeer's choice, and Llama's)."""
    return round(8 * config.n_embd / 3) if config.activation in GATED else 4 * config.n_embd


class FeedForward(nn.Module):
    """Linear C→H (C→2H when gated), the activation, Linear H→C, dropout: applied to each position on its own."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        hidden = ffn_hidden(config)
        width = 2 * hidden if config.activation in GATED else hidden
        self.fc = nn.Linear(config.n_embd, width, bias=config.ffn_bias)
        self.act = ACTIVATIONS[config.activation]()
        self.proj = nn.Linear(hidden, config.n_embd, bias=config.ffn_bias)
        self.dropout = nn.Dropout(config.dropout)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The activation's output (..., H): what proj reads, the largest numbers a block makes (ReLU² squares)."""
        return self.act(self.fc(x))

    def out(self, hidden: torch.Tensor) -> torch.Tensor:
        """The hidden activations (..., H) back to the residual stream's width (..., C)."""
        return self.dropout(self.proj(hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(x))


def make_norm(config: ModelConfig) -> nn.Module:
    if config.norm == "layernorm":
        return nn.LayerNorm(config.n_embd)
    return nn.RMSNorm(config.n_embd) if config.norm == "rmsnorm" else nn.Identity()


def _call(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return module(x)


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
        return self.combine(x, lambda h: self.attn(h, cache), self.ffn)

    def combine(self, x: torch.Tensor, attend, feed_forward, norm=_call) -> torch.Tensor:
        """The block's wiring, the one place its residual mode is read: x (B, T, C) through the sub-layers.

        attend(h) and feed_forward(h) compute the sub-layers, norm(module, h) applies ln1 or ln2: the modules
        themselves in forward, a recording wrapper in trace, fused functional stand-ins in DecodeStep.
        """
        if self.attn is not None:
            if self.residual == "bug":
                x = norm(self.ln1, x)  # the blog's bug: the normalised x replaces the stream it should add to
                x = x + attend(x)
            elif self.residual == "on":
                x = x + attend(norm(self.ln1, x))
            else:
                x = attend(norm(self.ln1, x))
        h = feed_forward(norm(self.ln2, x))
        return h if self.residual == "off" else x + h

    def trace(
        self, x: torch.Tensor, weights: bool = True, hidden: list | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The block on x (B, T, C), no cache, and what happened inside: (output, what the first sub-layer received
        (attention's input, or the feed-forward's without attention), attention weights (B, nh, T, T) or None).
        Given a list, `hidden` also receives the feed-forward's hidden activations (B, T, H)."""
        seen = []

        def attend(h):
            seen.append(h)
            return self.attn(h)

        def feed_forward(h):
            seen.append(h)
            if hidden is None:
                return self.ffn(h)
            hidden.append(self.ffn.hidden(h))
            return self.ffn.out(hidden[-1])

        out = self.combine(x, attend, feed_forward)
        return out, seen[0], self.attn.weights(seen[0]) if weights and self.attn is not None else None


def sinusoidal_table(block_size: int, n_embd: int) -> torch.Tensor:
    """PE[t, 2i] = sin(t / 10000^(2i/C)), PE[t, 2i+1] = cos(...): (T, C), indexed by position (not batch)."""
    position = torch.arange(block_size, dtype=torch.float32)[:, None]
    inv_freq = torch.exp(torch.arange(0, n_embd, 2, dtype=torch.float32) * (-math.log(10000.0) / n_embd))
    table = torch.zeros(block_size, n_embd)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq)
    return table


@dataclass
class Trace:
    """What one forward pass computed inside (GPT.trace); tensors keep the pass's autograd graph, if any."""

    streams: list[torch.Tensor]  # (B, T, C) residual stream: after the embedding, then after each block
    weights: list[torch.Tensor | None]  # per block (B, nh, T, T) attention, row t = where t looks; None: no attention
    first_inputs: list[torch.Tensor]  # per block (B, T, C): what its first sub-layer received
    ffn_hidden: list[torch.Tensor]  # per block (B, T, H): the feed-forward's activations (FeedForward.hidden)


class GPT(nn.Module):
    """tokens → logits (forward), or layer by layer (trace); new_caches for decoding a token at a time."""

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
        self.recompute_activations = False  # set by the trainer: set_recompute
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

    def set_recompute(self, activations: bool, attention: bool) -> None:
        """What the backward pass recomputes rather than keeps (TrainConfig.recompute_activations/_attention)."""
        self.recompute_activations = activations
        for module in self.modules():
            if isinstance(module, SelfAttention):
                module.recompute = attention

    def n_params(self) -> int:
        """Trainable parameters, each shared tensor counted once (as the blog counts them)."""
        return sum(p.numel() for p in self.parameters())

    def positions(self, T: int, start: int, device) -> torch.Tensor | float:
        """What the positional switch adds to the embeddings of positions start..start+T-1: (T, C), or 0.0."""
        if start + T > self.config.block_size:
            raise ValueError(f"positions {start}..{start + T} exceed block_size {self.config.block_size}")
        if self.config.positional == "learned":
            return self.pos_emb(torch.arange(start, start + T, device=device))  # (T, C)
        if self.config.positional == "sinusoidal":
            return self.pos_table[start : start + T]
        return 0.0  # none, or rope (applied to queries and keys inside the attention)

    def embed(self, idx: torch.Tensor, start: int = 0) -> torch.Tensor:
        """idx (B, T) token ids at positions start.. → the residual stream's start (B, T, C)."""
        return self.drop(self.tok_emb(idx) + self.positions(idx.size(1), start, idx.device))

    def readout(self, x: torch.Tensor) -> torch.Tensor:
        """A residual stream (..., C) → logits (..., vocab): the final norm and the output head."""
        return self.head(self.ln_f(x))

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        caches: list[KVCache] | None = None,
    ):
        """idx (B, T) token ids → logits (B, T, vocab) and, given targets (B, T), the mean cross-entropy.

        With `caches`, idx holds only the new tokens and positions continue from what is cached.
        """
        x = self.embed(idx, caches[0].length if caches else 0)  # (B, T, C)
        for i, block in enumerate(self.blocks):
            if self.recompute_activations and self.training and not caches and torch.is_grad_enabled():
                # Keep only each block's input; recompute its insides in backward: less memory, ~1/3 more work.
                x = torch.utils.checkpoint.checkpoint(block, x, None, use_reentrant=False)
            else:
                x = block(x, caches[i] if caches else None)
        logits = self.readout(x)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss

    def trace(self, idx: torch.Tensor, weights: bool = True) -> Trace:
        """The forward pass of idx (B, T) one block at a time, keeping what the pictures and the probes need.

        No forward hooks: the model may be shared with threads that are generating (the studio), and a hook
        would see their passes too. Runs in whatever mode the model is in; wrap in evaluating() for no dropout.
        weights=False leaves the attention weights out (None per block): they are recomputed from q and k, a
        T × T matrix per head, which a caller that only reads the streams need not pay for.
        """
        x = self.embed(idx)
        trace = Trace([x], [], [], [])
        for block in self.blocks:
            x, first, attention = block.trace(x, weights, hidden=trace.ffn_hidden)
            trace.streams.append(x)
            trace.first_inputs.append(first)
            trace.weights.append(attention)
        return trace

    def new_caches(self, batch: int, device, dtype=torch.float32) -> list[KVCache]:
        c = self.config
        return [KVCache(batch, c.n_head, c.block_size, c.head_size, device, dtype) for _ in range(c.n_layer)]


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
    H = ffn_hidden(config)
    fc = 2 * H if config.activation in GATED else H
    ffn = (fc + H) * C + (fc + C if config.ffn_bias else 0) + norm
    embeddings = V * C + (config.block_size * C if config.positional == "learned" else 0)
    head = (0 if config.tie_weights else C * V) + (V if config.head_bias else 0)
    return embeddings + L * (attn + ffn) + norm + head


def count_activations(
    config: ModelConfig,
    batch_size: int,
    recompute: bool = False,
    kernel: str = "sdpa",
    recompute_attention: bool = False,
) -> int:
    """Numbers a training step keeps for the backward pass (its activations), by the same switches the model is
    built from: per token and layer the residual stream, norms, q/k/v and the 4C feed-forward (and dropout masks),
    the attention matrices the attention kind keeps (ATTENTION_COPIES), and the logits (3 copies).

    With recompute (TrainConfig.recompute_activations) only each block's input is kept, and one block at a time is
    recomputed in full during the backward pass. kernel: the one attention = auto runs (tuning.py's choice).
    With recompute_attention (TrainConfig.recompute_attention) SelfAttention keeps no attention matrices: only one
    layer's are alive at a time, during its backward pass.
    training/hardware.py turns this into bytes; benchmarks/reliability.py checks the total against measured peaks
    (docs/reliability.md).
    """
    c = config
    dropout = c.dropout > 0
    per_token_layer = (22 + 4 * dropout) * c.n_embd
    copies = KERNEL_COPIES[kernel] if c.attention == "auto" else ATTENTION_COPIES[c.attention]
    recomputed = recompute_attention and c.attention in ("auto", "sdpa")  # SelfAttention's kernels, not the others
    per_token_layer += (0 if recomputed else copies[dropout]) * c.n_head * c.block_size
    tokens = batch_size * c.block_size
    if recompute:
        kept = tokens * (c.n_layer * c.n_embd + per_token_layer)
    else:
        kept = tokens * c.n_layer * per_token_layer
    return kept + 3 * tokens * c.vocab_size
