"""Training health: the numbers that say whether a network is set up correctly.

One *health record* is a JSON-able dict measured on one batch:

    grad_norm     {layer: ‖∂loss/∂w‖}                  per layer group: embed, block0 … block{L-1}, head
    update_ratio  {layer: ‖Δw‖ / ‖w‖}                  matrices of that layer, over the last optimiser step
    act_mean/std  [embedding, after block 0, …]        the residual stream, over every number in the batch
    embed_cos     [after block 0, …]                   mean per-token cosine of the stream with the embedding
    passthrough   [block 0, …]                         ⟨block(2x) − block(x), x⟩ / ‖x‖²: ≈1 if an identity path
                                                       carries x through the block, ≈0 if the block discards
                                                       the stream's scale (no residual, or the blog's bug)
    input_sensitivity [block 0, …]                     how much the first sub-layer's input changes when the
                                                       block's input doubles: 0 behind a LayerNorm, 1 without
    attn_entropy  [[head 0, …] per block]              attention entropy / its maximum, 0 = one position,
                                                       1 = uniform; recomputed from the block's own q, k
    attn_first    [[head 0, …] per block]              mean weight on position 0 in the second half of rows

    record = measure(model, x, y)                      # grads land in model's .grad
    TrainConfig(log_health=True)                       # the Trainer adds HealthCallback: a record per evaluation
    (inspect/probe.py's probe_training trains a copy of a model and returns its records)

The stream, what each block's first sub-layer receives and the attention weights come from the
model itself (GPT.trace, Block.trace): the weights recomputed from each block's own q and k, because
the fused kernel never materialises them. Nothing here knows the model's switches.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from bricklm.config import TrainConfig
from bricklm.errors import UserError
from bricklm.model.gpt import evaluating
from bricklm.text.data import get_batch
from bricklm.training.callbacks import Callback, Context
from bricklm.training.optim import learning_rate


def layer_of(param_name: str) -> str:
    """The layer group a parameter belongs to: 'embed', 'block3', or 'head' (final norm + output)."""
    if param_name.startswith("blocks."):
        return "block" + param_name.split(".")[1]
    if param_name.startswith(("tok_emb", "pos_emb")):
        return "embed"
    return "head"


def layer_names(model) -> list[str]:
    """Layer groups in the order the data flows through them."""
    return ["embed"] + [f"block{i}" for i in range(len(model.blocks))] + ["head"]


def grad_norms(model) -> dict[str, float]:
    """L2 norm of the gradient of each layer group (all its parameters together)."""
    sq = dict.fromkeys(layer_names(model), 0.0)
    for name, p in model.named_parameters():
        if p.grad is not None:
            sq[layer_of(name)] += float(p.grad.detach().float().pow(2).sum())
    return {k: math.sqrt(v) for k, v in sq.items()}


def snapshot(model) -> dict[str, torch.Tensor]:
    """A copy of the weight matrices, to measure the next update against."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.dim() >= 2}


def update_ratios(before: dict[str, torch.Tensor], model) -> dict[str, float]:
    """‖w_after − w_before‖ / ‖w_before‖ per layer group, over weight matrices only.

    Matrices only because LayerNorm gains start at 1 and biases at 0: they'd swamp or zero the ratio.
    """
    num = dict.fromkeys(layer_names(model), 0.0)
    den = dict.fromkeys(layer_names(model), 0.0)
    for name, p in model.named_parameters():
        if name in before:
            layer = layer_of(name)
            num[layer] += float((p.detach() - before[name]).float().pow(2).sum())
            den[layer] += float(before[name].float().pow(2).sum())
    return {k: math.sqrt(num[k] / den[k]) for k in num if den[k] > 0}


def attention_entropy(weights: torch.Tensor) -> list[float]:
    """Per head: mean over rows t ≥ 1 of entropy(row) / log(t + 1), so 1 = uniform over what t can see."""
    T = weights.size(-1)
    if T < 2:
        return [float("nan")] * weights.size(1)
    p = weights[:, :, 1:, :].float()
    ent = -(p * p.clamp_min(1e-12).log()).sum(-1)  # (B, nh, T-1)
    max_ent = torch.arange(2, T + 1, dtype=torch.float32, device=p.device).log()
    return (ent / max_ent).mean(dim=(0, 2)).tolist()


def attention_first(weights: torch.Tensor) -> list[float]:
    """Per head: mean weight on position 0 over the second half of rows (uniform would give ≤ 2/T)."""
    T = weights.size(-1)
    return weights[:, :, T // 2 :, 0].float().mean(dim=(0, 2)).tolist()


def _cos_per_token(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.float(), b.float(), dim=-1).mean())


@torch.no_grad()
def scale_probe(block, x: torch.Tensor) -> tuple[float, float]:
    """Run the block on x and on 2x; return (passthrough, input_sensitivity).

    passthrough = ⟨block(2x) − block(x), x⟩ / ‖x‖²: 1 for a block with an identity path (x + f(x)
    where f sees a normalised x), 0 for a block whose output ignores the scale of its input.
    input_sensitivity = ‖s(2x) − s(x)‖ / ‖s(x)‖ where s is what the first sub-layer (attention, or
    the feed-forward without attention) receives: 0 when a LayerNorm sits in front of it, 1 when it
    gets the raw stream.
    """
    (y1, s1, _), (y2, s2, _) = block.trace(x, weights=False), block.trace(2 * x, weights=False)
    # The projection of the change onto x, not its norm: a LayerNorm's epsilon makes a block without an
    # identity path slightly scale-sensitive when the stream is tiny, but that change doesn't point along x.
    xf = x.float()
    passthrough = float(((y2 - y1).float() * xf).sum() / xf.pow(2).sum().clamp_min(1e-24))
    sensitivity = float((s2 - s1).float().norm() / s1.float().norm().clamp_min(1e-12))
    return passthrough, sensitivity


def measure(model, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """One health record (without update_ratio) from one forward and backward pass on (x, y).

    Runs in eval mode (no dropout, so no random numbers are drawn) and leaves gradients in .grad.
    The stream and attention come from the model's own trace of the same batch (GPT.trace).
    """
    with evaluating(model):
        model.zero_grad(set_to_none=True)
        _, loss = model(x, y)
        loss.backward()
        record: dict[str, Any] = {"loss": float(loss.detach()), "grad_norm": grad_norms(model)}
        with torch.no_grad():
            trace = model.trace(x)
            stream = trace.streams
            record["act_mean"] = [float(s.float().mean()) for s in stream]
            record["act_std"] = [float(s.float().std()) for s in stream]
            record["embed_cos"] = [_cos_per_token(s, stream[0]) for s in stream[1:]]
            probes = [scale_probe(b, xi) for b, xi in zip(model.blocks, stream[:-1], strict=True)]
            record["passthrough"] = [p for p, _ in probes]
            record["input_sensitivity"] = [s for _, s in probes]
            weights = [w for w in trace.weights if w is not None]
            record["attn_entropy"] = [attention_entropy(w) for w in weights]
            record["attn_first"] = [attention_first(w) for w in weights]
    return record


def probe_batch(data, train_cfg: TrainConfig, block_size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed batch health is measured on: its own generator, so training's sampling is untouched."""
    gen = torch.Generator().manual_seed(train_cfg.seed + 2)
    return get_batch(data, train_cfg.batch_size, block_size, gen, device)


class HealthCallback(Callback):
    """`train --log-health`: a `{"step": N, "health": {...}}` line in metrics.jsonl at every evaluation.

    The update ratio is the optimiser step just before the evaluation: the weights are copied one
    step ahead, so the cost is one copy of the weights per evaluation, not per step.
    """

    def __init__(self):
        self.before: dict[str, torch.Tensor] | None = None
        self.before_step = -1

    def on_start(self, ctx: Context) -> None:
        self.batch = probe_batch(ctx.data.train, ctx.cfg, ctx.model_cfg.block_size, ctx.device)
        self.on_step(ctx, ctx.state.step, float("nan"))

    def on_step(self, ctx: Context, step: int, loss: float) -> None:
        nxt = step + 1  # the loop evaluates after the step that reaches eval_interval (or max_iters)
        if nxt % ctx.cfg.eval_interval == 0 or nxt == ctx.cfg.max_iters:
            self.before, self.before_step = snapshot(ctx.model), step

    def on_eval(self, ctx: Context, record: dict[str, Any]) -> None:
        step = record["step"]
        health = measure(ctx.model, *self.batch)
        ctx.model.zero_grad(set_to_none=True)
        if self.before is not None and self.before_step == step - 1:
            health["update_ratio"] = update_ratios(self.before, ctx.model)
            health["lr"] = learning_rate(step - 1, ctx.cfg)
        self.before = None
        ctx.append_metrics({"step": step, "health": health})


# The shape of each health value: "table" {layer: number}, "list" [number], "lists" [[number]], "number".
HEALTH_SHAPES = {
    "grad_norm": "table",
    "update_ratio": "table",
    "act_mean": "list",
    "act_std": "list",
    "embed_cos": "list",
    "passthrough": "list",
    "input_sensitivity": "list",
    "attn_entropy": "lists",
    "attn_first": "lists",
    "loss": "number",
    "lr": "number",
}


def health_records(metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The health lines of a metrics.jsonl, flattened to records with their step; a damaged one is a UserError."""
    out = []
    for m in metrics:
        if "health" not in m:
            continue
        h = m["health"]
        if not isinstance(h, dict) or not all(_fits(h[k], shape) for k, shape in HEALTH_SHAPES.items() if k in h):
            raise UserError(f"metrics.jsonl: the health record at step {m['step']} is damaged (not numbers by layer)")
        out.append({"step": m["step"], **h})
    return out


def _fits(value: Any, shape: str) -> bool:
    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if shape == "table":
        return isinstance(value, dict) and all(number(v) for v in value.values())
    if shape == "list":
        return isinstance(value, list) and all(number(v) for v in value)
    if shape == "lists":
        return isinstance(value, list) and all(isinstance(r, list) and all(number(v) for v in r) for r in value)
    return number(value)
