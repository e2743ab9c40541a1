"""A bricklm GPT's weights in GPT-2's layout, the one both `transformers` and llama.cpp run.

GPT-2 and bricklm's default GPT are the same network: learned (or fixed) positions added to
the token embedding, pre-norm blocks of LayerNorm → causal attention → residual and
LayerNorm → Linear(C, 4C) → activation → Linear(4C, C) → residual, a final LayerNorm and a
head. Three details differ, and are bridged here exactly:

* Biases bricklm leaves out (`bias = false` attention projections, `ffn_bias = false`) are written as zeros.
* Sinusoidal positions are a fixed table: it becomes GPT-2's position table `wpe`
  (`positional = none` is a table of zeros).
* bricklm's head is Linear(C, vocab) *with* a bias; GPT-2's `lm_head` has none, and neither
  has llama.cpp's GPT-2 `output`. The bias is folded into the head's weight matrix using the
  final LayerNorm: its normalised output n always sums to zero, so along the direction
  u = c / γ (γ the LayerNorm's scale) the LayerNorm output γ·n + β is the constant u·β.
  Shifting β along u makes that constant K, and adding (b − W·δβ) / K ⊗ u to the head's
  weight W then adds exactly the bias b to every logit (`fold_head_bias`). Because the head's
  weight then differs from the token embedding, a tied run is written untied.

Runs whose switches GPT-2 cannot express (no residual, the residual bug, no norm or RMSNorm, no
attention, rotary positions, QK-norm; for llama.cpp also ReLU and ReLU²) go to the Llama family
(llama.py) when it holds them; `export_architecture` picks, or refuses with one line naming every
switch either family would need changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bricklm.config import ModelConfig
from bricklm.errors import UserError
from bricklm.export.llama import llama_misfits
from bricklm.model.gpt import GPT

LAYER_NORM_EPS = 1e-5  # nn.LayerNorm's default, which bricklm uses; GPT-2's layer_norm_epsilon default too


def unexportable_switches(cfg: ModelConfig, fmt: str = "hf") -> list[str]:
    """The run's switches GPT-2's layout (in fmt: hf or gguf) cannot hold, each as 'name = value (why)'."""
    found = []
    if cfg.attention == "none":
        found.append("attention = none (GPT-2 blocks always attend)")
    if cfg.residual == "bug":
        found.append('residual = "bug" (GPT-2 adds to the residual stream, never replaces it)')
    elif cfg.residual == "off":
        found.append('residual = "off" (GPT-2 always has residual connections)')
    if cfg.norm != "layernorm":
        found.append(f"norm = {cfg.norm} (GPT-2 has a LayerNorm before each sub-layer and at the end)")
    if cfg.positional == "rope":
        found.append("positional = rope (GPT-2 adds a position table; it has no rotary positions)")
    if cfg.qk_norm:
        found.append("qk_norm = true (GPT-2 attends with the raw queries and keys)")
    if fmt == "gguf" and cfg.activation != "gelu":
        found.append(f"activation = {cfg.activation} (llama.cpp's GPT-2 always uses GELU; --format hf can)")
    return found


def check_gpt2_layout(cfg: ModelConfig, what: str, fmt: str = "hf") -> None:
    """Raise one UserError line naming every switch that keeps `what` (the run) out of GPT-2's layout."""
    found = unexportable_switches(cfg, fmt)
    if found:
        where = "llama.cpp's GPT-2" if fmt == "gguf" else "GPT-2's layout"
        raise UserError(f"cannot export {what}: {where} cannot express model.{'; model.'.join(found)}")


def export_architecture(cfg: ModelConfig, what: str, fmt: str) -> str:
    """The stock architecture `what` (the run) maps onto exactly in fmt: 'gpt2', 'arcee', 'llama' or 'qwen3'.

    GPT-2 where its layout holds the run (LayerNorm, position tables), else the Llama family (llama.py: RMSNorm,
    rotary positions). Neither: one UserError line naming the switches each would need changed.
    """
    gpt2 = unexportable_switches(cfg, fmt)
    if not gpt2:
        return "gpt2"
    arch, family = llama_misfits(cfg, fmt)
    if arch:
        return arch
    runtime = "llama.cpp" if fmt == "gguf" else "transformers"
    raise UserError(
        f"cannot export {what}: no stock {runtime} architecture fits; GPT-2 cannot express model."
        + "; model.".join(gpt2)
        + "; the Llama family (Arcee, Llama, Qwen3) cannot express model."
        + "; model.".join(family)
        + " (docs/export.md maps every switch, docs/records.md says what changing one costs)"
    )


@dataclass
class GPT2Weights:
    """Float32 tensors in nn.Linear's (out, in) layout; each writer renames (and transposes) them."""

    wte: torch.Tensor  # (V, C) token embedding
    wpe: torch.Tensor  # (block_size, C) position table
    layers: list[dict[str, torch.Tensor]]  # ln_1, c_attn (3C, C), c_proj, ln_2, c_fc (4C, C), mlp_proj (C, 4C)
    ln_f_weight: torch.Tensor
    ln_f_bias: torch.Tensor  # after the fold (see fold_head_bias)
    lm_head: torch.Tensor  # (V, C) with the head bias folded in
    tied: bool  # lm_head is wte, so a writer may leave it out


def fold_head_bias(W, b, gamma, beta):
    """(W', β') with W'·(γ⊙n + β') = W·(γ⊙n + β) + b for every n that sums to zero (a LayerNorm's output).

    W (V, C), b (V,), gamma and beta (C,). Worked in float64; see the module docstring for why.
    """
    W, b, gamma, beta = (t.detach().double() for t in (W, b, gamma, beta))
    if not bool(b.any()):
        return W.float(), beta.float()
    zero = gamma == 0
    # u·(γ⊙n) must vanish for all n summing to zero: u ∝ 1/γ (then it is c·Σn = 0), or, where some γ_i
    # is 0, u on those coordinates only (γ_i·n_i is 0 there). Scaled so that max |u_i| = 1.
    u = zero.double() if bool(zero.any()) else gamma.abs().min() / gamma
    K = float(u @ u)  # ≥ 1: the constant u·β' we give the LayerNorm's output
    delta = (K - float(u @ beta)) / K * u  # the smallest change of β that makes u·(β + δ) = K
    t = (b - W @ delta) / K
    return (W + torch.outer(t, u)).float(), (beta + delta).float()


def zeros_if_none(t: torch.Tensor | None, n: int) -> torch.Tensor:
    return torch.zeros(n) if t is None else t.detach().float()


def attention_tensors(attn, C: int) -> dict[str, torch.Tensor]:
    """q/k/v and output projections of either attention kind (sdpa/manual or torch_mha), with zero biases.

    Both pack q, k, v in one (3C, C) matrix in that order, as GPT-2's c_attn does; Attention.projections says
    where each kind keeps them."""
    qkv_w, qkv_b, proj_w, proj_b = attn.projections()
    return {
        "c_attn.weight": qkv_w.detach().float(),
        "c_attn.bias": zeros_if_none(qkv_b, 3 * C),
        "c_proj.weight": proj_w.detach().float(),
        "c_proj.bias": zeros_if_none(proj_b, C),
    }


def gpt2_weights(model: GPT, extra_logits: tuple[float, ...] = ()) -> GPT2Weights:
    """model's weights in GPT-2's layout. extra_logits appends tokens (zero embedding) whose logit is that constant.

    The extra tokens serve llama.cpp, which needs an end-of-text token id; a logit of -1e4 keeps one from
    ever being sampled.
    """
    cfg = model.config
    check_gpt2_layout(cfg, "this model")
    C = cfg.n_embd
    if cfg.positional == "learned":
        wpe = model.pos_emb.weight.detach().float()
    elif cfg.positional == "sinusoidal":
        wpe = model.pos_table.detach().float()
    else:
        wpe = torch.zeros(cfg.block_size, C)
    layers = []
    for block in model.blocks:
        layer = {
            "ln_1.weight": block.ln1.weight.detach().float(),
            "ln_1.bias": block.ln1.bias.detach().float(),
            "ln_2.weight": block.ln2.weight.detach().float(),
            "ln_2.bias": block.ln2.bias.detach().float(),
            "c_fc.weight": block.ffn.fc.weight.detach().float(),
            "c_fc.bias": zeros_if_none(block.ffn.fc.bias, 4 * C),
            "mlp_proj.weight": block.ffn.proj.weight.detach().float(),
            "mlp_proj.bias": zeros_if_none(block.ffn.proj.bias, C),
        }
        layer.update({f"attn.{k}": v for k, v in attention_tensors(block.attn, C).items()})
        layers.append(layer)
    wte = model.tok_emb.weight.detach().float()
    W, b = model.head.weight.detach().float(), zeros_if_none(model.head.bias, cfg.vocab_size)
    if extra_logits:
        wte = torch.cat([wte, torch.zeros(len(extra_logits), C)])
        W = torch.cat([W, torch.zeros(len(extra_logits), C)])
        b = torch.cat([b, torch.tensor(extra_logits, dtype=torch.float32)])
    head, ln_f_bias = fold_head_bias(W, b, model.ln_f.weight, model.ln_f.bias)
    tied = cfg.tie_weights and not bool(b.any())
    return GPT2Weights(
        wte=wte.clone(),
        wpe=wpe.clone(),
        layers=layers,
        ln_f_weight=model.ln_f.weight.detach().float().clone(),
        ln_f_bias=ln_f_bias,
        lm_head=wte.clone() if tied else head,
        tied=tied,
    )
