"""Whether a run's numbers fit float16 (--gguf-dtype float16), measured on its own validation text.

    peak = float16_peak(run)    # the largest |value| the model makes on its val split, weights included

llama.cpp multiplies float16 weights with activations it first converts to float16, and keeps the
KV cache in float16: a value past float16's largest (65,504) becomes infinity there, and the text
turns to nonsense. ReLU² squares the feed-forward's pre-activations, so a trained run can get there.
The model reports what it computes (GPT.trace: the residual stream, each block's input to its first
sub-layer, the feed-forward's hidden activations); this takes the largest over every window of the
validation split the run was trained beside. It is a measurement on that text, not a bound: the
export says so, and refuses float16 where the measurement already overflows.
"""

from __future__ import annotations

from pathlib import Path

import torch

from bricklm.errors import UserError
from bricklm.model.gpt import evaluating
from bricklm.storage.runs import read_run_config
from bricklm.text.data import load_corpus

FLOAT16_MAX = float(torch.finfo(torch.float16).max)  # 65,504
BATCH = 16


def validation_tokens(run) -> torch.Tensor:
    data = (read_run_config(run.path).get("data") or {}).get("dir")
    if not data or not Path(data).is_dir():
        raise UserError(
            f"--gguf-dtype float16 is checked on the run's validation text, and its corpus folder {data} is not "
            "there; use --gguf-dtype bfloat16 or float32"
        )
    _, val, _, _ = load_corpus(data)
    return torch.as_tensor(val.astype("int64"))


@torch.no_grad()
def float16_peak(run) -> float:
    model, T = run.model, run.model_cfg.block_size
    tokens = validation_tokens(run)
    peak = max(float(p.detach().abs().max()) for p in model.parameters())
    starts = list(range(0, max(len(tokens) - T, 0) + 1, T))
    with evaluating(model):
        for i in range(0, len(starts), BATCH):
            x = torch.stack([tokens[s : s + T] for s in starts[i : i + BATCH]])
            trace = model.trace(x, weights=False)  # the streams only: no T x T attention weights
            for t in (*trace.streams, *trace.first_inputs, *trace.ffn_hidden):
                peak = max(peak, float(t.abs().max()))
    return peak


def check_float16(run) -> str:
    """A note with the measured peak, or a UserError where it would overflow float16."""
    peak = float16_peak(run)
    if not peak < FLOAT16_MAX:
        raise UserError(
            f"cannot write float16: this run's activations reach {peak:,.0f} on its validation text, past float16's "
            f"{FLOAT16_MAX:,.0f}; use --gguf-dtype bfloat16 or float32"
        )
    return f"float16: the largest value on the run's validation text is {peak:,.1f} (float16 holds {FLOAT16_MAX:,.0f})"
