"""The baseline every speed ratio is taken against: the blog's model and loop, plain and eager.

Written from the description in ../shared/seed/NOTES.md (not from bricklm's code, and not from
the blog's notebook): token embedding + learned positions, pre-norm blocks with PyTorch's
nn.MultiheadAttention (no bias, causal mask) and a ReLU feed-forward, a final LayerNorm, an
untied head with a bias, AdamW at a constant learning rate, random windows sampled with a Python
list, and generation that re-runs the whole (cropped) context for every new token.

    model = ReferenceGPT(vocab_size=107, n_embd=64, n_head=8, n_layer=16, block_size=128)
    loss = train_step(model, opt, data, batch_size=64, block_size=128)
    tokens = generate_recompute(model, torch.zeros((1, 1), dtype=torch.long), 500)

It deliberately has no fast paths: no fused attention, no KV cache, default (for-each) AdamW,
fp32 only, no compile. benchmarks/run.py imports it.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class RefBlock(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(n_embd)
        self.attn = nn.MultiheadAttention(n_embd, n_head, dropout=dropout, bias=False, batch_first=True)
        self.ln2 = nn.LayerNorm(n_embd)
        self.ffn = nn.Sequential(
            nn.Linear(n_embd, 4 * n_embd), nn.ReLU(), nn.Linear(4 * n_embd, n_embd), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.ffn(self.ln2(x))


class ReferenceGPT(nn.Module):
    def __init__(self, vocab_size: int, n_embd: int, n_head: int, n_layer: int, block_size: int, dropout=0.0):
        super().__init__()
        self.block_size = block_size
        self.token_embedding = nn.Embedding(vocab_size, n_embd)
        self.position_embedding = nn.Embedding(block_size, n_embd)
        self.blocks = nn.ModuleList(RefBlock(n_embd, n_head, dropout) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size)  # untied, with a bias

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        B, T = idx.shape
        x = self.token_embedding(idx) + self.position_embedding(torch.arange(T, device=idx.device))
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool, device=idx.device), diagonal=1)
        for block in self.blocks:
            x = block(x, mask)
        logits = self.lm_head(self.ln_f(x))
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.view(B * T, -1), targets.view(B * T))


def get_batch(data: torch.Tensor, batch_size: int, block_size: int):
    """Random windows, with replacement, stacked from a Python list (the lecture's way)."""
    ix = torch.randint(len(data) - block_size, (batch_size,))
    x = torch.stack([data[i : i + block_size] for i in ix])
    y = torch.stack([data[i + 1 : i + block_size + 1] for i in ix])
    return x, y


def make_optimizer(model: nn.Module, lr: float = 1e-3) -> torch.optim.AdamW:
    return torch.optim.AdamW(model.parameters(), lr=lr)  # constant learning rate, PyTorch's defaults


def train_step(model, optimizer, data, batch_size: int, block_size: int) -> float:
    x, y = get_batch(data, batch_size, block_size)
    _, loss = model(x, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


@torch.no_grad()
def generate_recompute(model: ReferenceGPT, idx: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Plain multinomial sampling that re-runs the whole context (cropped to block_size) every step."""
    model.eval()
    for _ in range(max_new_tokens):
        logits, _ = model(idx[:, -model.block_size :])
        probs = F.softmax(logits[:, -1, :], dim=-1)
        idx = torch.cat([idx, torch.multinomial(probs, 1)], dim=1)
    return idx
