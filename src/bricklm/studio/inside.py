"""Look inside one generated token: where every head looked, and what each layer would have said.

    view = look_inside(served, ids, prompt_len=4, position=10)

`ids` is a prompt and its continuation, as the playground generated them. For the token at
`position` this recomputes the forward pass that chose it (GPT.trace, no hooks: the model is
shared with the threads that are generating), over the same context the sampler had
(generate.context_start replays generate()'s window), and returns

    attention   per layer, per head, the weights over the context tokens (the row of the last
                one, which predicts `position`), recomputed from the block's own q and k
                projections; None for a block without attention
    lens        the logit lens: the residual stream after the embedding and after each block put
                through the final norm and the output head (GPT.readout), as the five likeliest
                next tokens and the probability of the token that was chosen (before temperature)
"""

from __future__ import annotations

import torch

from bricklm.model.generate import context_start
from bricklm.studio.models import Served

TOP = 5


def piece(tokenizer, token: int) -> str:
    """One token's text, for labels (a special token shows as itself, e.g. <|end|>)."""
    return tokenizer.decode([token])


@torch.no_grad()
def look_inside(served: Served, ids: list[int], prompt_len: int, position: int) -> dict:
    """Attention strips and logit lens for the token at `position` (1 <= position < len(ids))."""
    model, tok = served.model, served.tokenizer
    start = context_start(prompt_len, position, served.block_size)
    context = ids[start:position]
    trace = model.trace(torch.tensor([context], dtype=torch.long))
    chosen = ids[position]
    attention = [
        None if w is None else [[round(float(v), 5) for v in head] for head in w[0, :, -1, :]] for w in trace.weights
    ]
    names = ["embedding"] + [f"layer {i + 1}" for i in range(len(model.blocks))]
    lens = []
    for name, stream in zip(names, trace.streams, strict=True):
        p = torch.softmax(model.readout(stream[0, -1]).float(), dim=-1)
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
