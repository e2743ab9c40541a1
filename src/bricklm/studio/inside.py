"""Look inside one generated token: where every head looked, and what each layer would have said.

    view = look_inside(served, ids, prompt_len=4, position=10)

`ids` is a prompt and its continuation, as the playground generated them. For the token at
`position` this recomputes the forward pass that chose it, over the same context the sampler
had (generate.py's policy: the last block_size tokens, then the oldest half dropped when full),
and returns

    attention   per layer, per head, the weights over the context tokens (the row of the last
                one, which predicts `position`), recomputed from the block's own q and k
                projections (inspect.health.attention_weights); None for a block without attention
    lens        the logit lens: the residual stream after the embedding and after each block put
                through the final norm and the output head, as the five likeliest next tokens and
                the probability of the token that was chosen (before temperature)
"""

from __future__ import annotations

import torch

from bricklm.inspect.health import attention_weights
from bricklm.studio.models import Served

TOP = 5


def context_start(prompt_len: int, position: int, block: int) -> int:
    """Index of the first token the sampler's context held when it chose the token at `position`.

    Replays generate(): the context starts as the prompt's last `block` tokens; each new token is
    appended, and when the context outgrows `block` it keeps only its newest block//2 + 1.
    """
    if position <= prompt_len:  # a prompt token: the prompt was read in one pass, as far as it fits
        return max(0, position - block)
    start = max(0, prompt_len - block)
    for end in range(prompt_len + 1, position + 1):  # the context after appending the token at end - 1
        if end - start > block:
            start = end - (block // 2 + 1)
    return start


def piece(tokenizer, token: int) -> str:
    """One token's text, for labels (a special token shows as itself, e.g. <|end|>)."""
    return tokenizer.decode([token])


def forward_by_layer(model, idx: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
    """The residual stream after the embedding and after each block, and each block's attention weights.

    The same steps as GPT.forward, taken one at a time instead of through forward hooks: the model
    is shared with the threads that are generating, and a hook would see their passes too.
    """
    x = model.drop(model.tok_emb(idx) + model.positions(idx.size(1), 0, idx.device))  # (1, T, C)
    streams, attention = [x], []
    for block in model.blocks:
        # Every residual mode (on, off, the blog's bug) hands attention ln1 of the block's input.
        attention.append(attention_weights(block.attn, block.ln1(x)) if block.attn is not None else None)
        x = block(x)
        streams.append(x)
    return streams, attention


@torch.no_grad()
def look_inside(served: Served, ids: list[int], prompt_len: int, position: int) -> dict:
    """Attention strips and logit lens for the token at `position` (1 <= position < len(ids))."""
    model, tok = served.model, served.tokenizer
    start = context_start(prompt_len, position, served.block_size)
    context = ids[start:position]
    streams, weights = forward_by_layer(model, torch.tensor([context], dtype=torch.long))
    chosen = ids[position]
    attention = [
        None if w is None else [[round(float(v), 5) for v in head] for head in w[0, :, -1, :]] for w in weights
    ]
    names = ["embedding"] + [f"layer {i + 1}" for i in range(len(model.blocks))]
    lens = []
    for name, stream in zip(names, streams, strict=True):
        p = torch.softmax(model.head(model.ln_f(stream[0, -1])).float(), dim=-1)
        values, indices = torch.topk(p, min(TOP, p.numel()))
        top = [{"token": piece(tok, int(t)), "p": round(float(q), 5)} for q, t in zip(values, indices, strict=True)]
        lens.append({"layer": name, "top": top, "chosen_p": round(float(p[chosen]), 5)})
    return {
        "position": position,
        "token": piece(tok, chosen),
        "context_start": start,
        "context": [piece(tok, t) for t in context],
        "attention": attention,  # per layer: per head, a weight per context token (None: no attention)
        "lens": lens,  # the last entry is the whole model's own prediction
    }
