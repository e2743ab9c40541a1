"""Growing a trained model's vocabulary: new rows in the token embedding and the head, the old ones kept exactly.

    bigger = extend_vocab(model, 120)                       # 120 rows; rows 0..old-1 unchanged, the rest the mean
    bigger = extend_vocab(model, 120, replace(model.config, dropout=0.1))   # into a model built from this config

`bricklm finetune` grows it for the chat template's special tokens, and `bricklm train --init-from` for the
characters a new corpus added (prepare --tokenizer-from --unknown-chars add): the same rule for both.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from bricklm.config import ModelConfig
from bricklm.model.gpt import GPT

GROWN = ("tok_emb.weight", "head.weight", "head.bias")  # the tensors with one row per token


def extend_vocab(model: GPT, vocab_size: int, config: ModelConfig | None = None) -> GPT:
    """A copy of model with vocab_size rows in tok_emb and head; old rows kept, new rows the mean of the old.

    config: the new model's settings (default: model's own); its vocab_size is set to vocab_size. Its other
    settings must build the same weights (a training setting such as dropout may differ). A state that does
    not fit raises RuntimeError (load_state_dict's)."""
    old = model.config.vocab_size
    if vocab_size < old:
        raise ValueError(f"cannot shrink the vocabulary from {old} to {vocab_size}")
    new = GPT(replace(config or model.config, vocab_size=vocab_size)).to(next(model.parameters()).device)
    state = {}
    for key, t in model.state_dict().items():
        if key in GROWN:
            # The mean row keeps a new token's logit at the average of the old ones (Hewitt, 2021),
            # so the extended model predicts almost exactly what the pretrained one did.
            rows = t.mean(dim=0, keepdim=True).expand(vocab_size - old, *t.shape[1:])
            t = torch.cat([t, rows], dim=0)
        state[key] = t
    missing, unexpected = new.load_state_dict(state, strict=False)
    if unexpected or not set(missing) <= {"head.weight"}:  # a tied head has no weight of its own
        raise RuntimeError(f"the weights do not fit: missing {sorted(missing)}, unexpected {sorted(unexpected)}")
    return new
