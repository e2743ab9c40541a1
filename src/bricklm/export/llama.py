"""A bricklm GPT with rotary positions and RMSNorm in the Llama family's layout: Arcee, Llama or Qwen3.

    arch = llama_architecture(cfg, "gguf")   # "arcee", "llama", "qwen3", or a list of misfits (llama_misfits)
    w = llama_weights(model)                 # per-layer q, k, v, o, gates and norms, float32, (out, in)

The three are one network in transformers and llama.cpp (verified against transformers 5.25's
modeling_{arcee,llama,qwen3}.py and llama.cpp's src/models/{arcee,llama,qwen3}.cpp): token embedding
(no position table), pre-norm blocks of RMSNorm (with weights) → attention with rotary positions →
residual and RMSNorm → feed-forward → residual, a final RMSNorm and a head without bias. They differ
where bricklm's switches do:

* Arcee: an ungated feed-forward (up, activation, down); transformers takes any activation, llama.cpp
  ReLU² only. No QK-norm.
* Llama: the gated SiLU feed-forward (bricklm's activation = swiglu). No QK-norm. Biases optional.
* Qwen3: the gated SiLU feed-forward and a per-head RMSNorm on q and k before the rotation. Its norms
  have weights, written as ones: bricklm's is weightless, and a weightless per-head RMSNorm commutes
  with the rotation anyway (the rotation keeps each head's length).

Exact by construction: bricklm's RMSNorm (nn.RMSNorm and F.rms_norm without eps) divides by
sqrt(mean(x²) + ε) with ε float32's machine epsilon, which is written as the architecture's epsilon;
rotary positions rotate pairs (x_i, x_{i+hs/2}) by t·10000^(-2i/hs), transformers' rotate_half and
llama.cpp's "neox" rope (Qwen3). llama.cpp's Llama and Arcee rotate adjacent pairs (x_2i, x_2i+1)
instead, so their GGUF q and k rows are permuted within each head (`rope_pairs_adjacent`); q·k is
unchanged because both are permuted alike. bricklm's head bias has no place here and cannot be folded
(an RMSNorm's output has no constant direction, unlike a LayerNorm's), so it is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bricklm.config import ModelConfig
from bricklm.model.gpt import GATED, GPT, ffn_hidden

ROPE_BASE = 10000.0  # attention.rope_tables' default, the one bricklm trains with
RMS_EPS = float(torch.finfo(torch.float32).eps)  # nn.RMSNorm(eps=None) and F.rms_norm's ε in float32
HF_CLASS = {"arcee": "ArceeForCausalLM", "llama": "LlamaForCausalLM", "qwen3": "Qwen3ForCausalLM"}
ADJACENT_PAIRS = ("arcee", "llama")  # llama.cpp's "normal" rope: pairs (2i, 2i+1), not (i, i + hs/2)


def llama_misfits(cfg: ModelConfig, fmt: str) -> tuple[str | None, list[str]]:
    """(the architecture, []) when one fits the run's switches in fmt ('hf' or 'gguf'), else (None, the misfits)."""
    found = []
    if cfg.attention == "none":
        found.append("attention = none (their blocks always attend)")
    if cfg.residual != "on":
        found.append(f'residual = "{cfg.residual}" (their blocks add to the residual stream)')
    if cfg.norm != "rmsnorm":
        found.append(f"norm = {cfg.norm} (they normalise with RMSNorm)")
    if cfg.positional != "rope":
        found.append(f"positional = {cfg.positional} (they have rotary positions only)")
    if cfg.head_bias:
        found.append("head_bias = true (their head has no bias; set head_bias = false)")
    gated = cfg.activation in GATED
    if gated:
        arch = "qwen3" if cfg.qk_norm else "llama"
    elif cfg.qk_norm:
        arch = None
        found.append(
            f"qk_norm = true with activation = {cfg.activation} (Arcee has no QK-norm and Qwen3's feed-forward "
            "is gated: set activation = swiglu for Qwen3, or qk_norm = false for Arcee)"
        )
    else:
        arch = "arcee"
        if fmt == "gguf" and cfg.activation != "relu2":
            found.append(f"activation = {cfg.activation} (llama.cpp's Arcee is ReLU² only; --format hf takes it)")
    if cfg.ffn_bias and (arch == "qwen3" or (fmt == "gguf" and arch == "arcee")):
        found.append(f"ffn_bias = true ({'llama.cpp' if fmt == 'gguf' else 'transformers'}' {arch} has none)")
    if cfg.bias and fmt == "gguf" and arch in ("arcee", "qwen3"):
        found.append(f"bias = true (llama.cpp's {arch} has no bias on the attention's output projection)")
    return (None, found) if found else (arch, [])


def rms_eps(norm) -> float:
    """The ε an nn.RMSNorm of the model divides with (its eps, or float32's machine epsilon when None)."""
    return RMS_EPS if norm.eps is None else float(norm.eps)


def detached(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().float().clone()


@dataclass
class LlamaWeights:
    """Float32 tensors in nn.Linear's (out, in) layout, under the family's names (transformers' in each layer)."""

    embed: torch.Tensor  # (V, C)
    layers: list[dict[str, torch.Tensor]]  # input_layernorm, q/k/v/o_proj (+ .bias), mlp gate/up/down_proj, ...
    norm: torch.Tensor  # the final RMSNorm's weight
    head: torch.Tensor | None  # (V, C), or None when tied to embed
    eps: float
    hidden: int  # the feed-forward's width


def llama_weights(model: GPT) -> LlamaWeights:
    """The model's weights by the family's names; every switch they depend on was checked by llama_misfits."""
    cfg = model.config
    H = ffn_hidden(cfg)
    layers = []
    for block in model.blocks:
        qkv_w, qkv_b, o_w, o_b = block.attn.projections()
        layer = {"input_layernorm.weight": detached(block.ln1.weight)}
        for name, w in zip(("q", "k", "v"), qkv_w.chunk(3), strict=True):
            layer[f"self_attn.{name}_proj.weight"] = detached(w)
        if qkv_b is not None:
            for name, b in zip(("q", "k", "v"), qkv_b.chunk(3), strict=True):
                layer[f"self_attn.{name}_proj.bias"] = detached(b)
            layer["self_attn.o_proj.bias"] = detached(o_b)
        layer["self_attn.o_proj.weight"] = detached(o_w)
        if cfg.qk_norm:  # weightless in bricklm: ones
            layer["self_attn.q_norm.weight"] = torch.ones(cfg.head_size)
            layer["self_attn.k_norm.weight"] = torch.ones(cfg.head_size)
        layer["post_attention_layernorm.weight"] = detached(block.ln2.weight)
        fc_w, fc_b = block.ffn.fc.weight, block.ffn.fc.bias
        if cfg.activation in GATED:  # fc holds the gate's H rows, then the up projection's (model.gpt.SwiGLU)
            layer["mlp.gate_proj.weight"], layer["mlp.up_proj.weight"] = (detached(t) for t in fc_w.split(H))
            if fc_b is not None:
                layer["mlp.gate_proj.bias"], layer["mlp.up_proj.bias"] = (detached(t) for t in fc_b.split(H))
        else:
            layer["mlp.up_proj.weight"] = detached(fc_w)
            if fc_b is not None:
                layer["mlp.up_proj.bias"] = detached(fc_b)
        layer["mlp.down_proj.weight"] = detached(block.ffn.proj.weight)
        if block.ffn.proj.bias is not None:
            layer["mlp.down_proj.bias"] = detached(block.ffn.proj.bias)
        layers.append(layer)
    embed = detached(model.tok_emb.weight)
    return LlamaWeights(
        embed=embed,
        layers=layers,
        norm=detached(model.ln_f.weight),
        head=None if cfg.tie_weights else detached(model.head.weight),
        eps=rms_eps(model.ln_f),
        hidden=H,
    )


# --- transformers ----------------------------------------------------------------------------------


def hf_llama_state(w: LlamaWeights) -> dict[str, torch.Tensor]:
    state = {"model.embed_tokens.weight": w.embed, "model.norm.weight": w.norm}
    for i, layer in enumerate(w.layers):
        state |= {f"model.layers.{i}.{k}": v for k, v in layer.items()}
    if w.head is not None:
        state["lm_head.weight"] = w.head
    return {k: v.contiguous() for k, v in state.items()}


def hf_llama_config(cfg: ModelConfig, arch: str, w: LlamaWeights, end_id: int | None, provenance: dict) -> dict:
    """config.json for arch; every field that matters is written, none left to the class's defaults."""
    config = {
        "architectures": [HF_CLASS[arch]],
        "model_type": arch,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.n_embd,
        "intermediate_size": w.hidden,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.n_head,
        "head_dim": cfg.head_size,
        "hidden_act": "silu" if cfg.activation in GATED else cfg.activation,  # nn.GELU is erf's GELU: "gelu"
        "max_position_embeddings": cfg.block_size,
        "rms_norm_eps": w.eps,
        "rope_parameters": {"rope_type": "default", "rope_theta": ROPE_BASE},
        "attention_bias": cfg.bias,
        "attention_dropout": 0.0,
        "tie_word_embeddings": cfg.tie_weights,
        "initializer_range": 0.02,
        "bos_token_id": None,
        "eos_token_id": end_id,
        "pad_token_id": end_id,
        "use_cache": True,
        "torch_dtype": "float32",
        "bricklm": provenance,
    }
    if arch == "qwen3":
        config |= {"use_sliding_window": False, "sliding_window": None}
    else:
        config["mlp_bias"] = cfg.ffn_bias
    return config


# --- llama.cpp -------------------------------------------------------------------------------------

GGUF_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.o_proj.bias": "attn_output.bias",
    **{f"self_attn.{n}_proj.{t}": f"attn_{n}.{t}" for n in "qkv" for t in ("weight", "bias")},
    **{f"mlp.{n}_proj.{t}": f"ffn_{n}.{t}" for n in ("gate", "up", "down") for t in ("weight", "bias")},
}


def rope_pairs_adjacent(t: torch.Tensor, n_head: int) -> torch.Tensor:
    """q or k rows (or biases) with each head's dims reordered from pairs (i, i + hs/2) to pairs (2i, 2i + 1)."""
    hs = t.size(0) // n_head
    order = torch.stack([torch.arange(hs // 2), torch.arange(hs // 2) + hs // 2], dim=1).flatten()
    return t.reshape(n_head, hs, *t.shape[1:])[:, order].reshape(t.shape)


def gguf_llama_tensors(w: LlamaWeights, arch: str, n_head: int) -> dict[str, torch.Tensor]:
    out = {"token_embd.weight": w.embed}
    for i, layer in enumerate(w.layers):
        for name, t in layer.items():
            if arch in ADJACENT_PAIRS and name.startswith(("self_attn.q_proj", "self_attn.k_proj")):
                t = rope_pairs_adjacent(t, n_head)
            out[f"blk.{i}.{GGUF_NAMES[name]}"] = t
    out["output_norm.weight"] = w.norm
    if w.head is not None:
        out["output.weight"] = w.head
    return out


def gguf_llama_keys(writer, cfg: ModelConfig, w: LlamaWeights) -> None:
    writer.add_context_length(cfg.block_size)
    writer.add_embedding_length(cfg.n_embd)
    writer.add_feed_forward_length(w.hidden)
    writer.add_block_count(cfg.n_layer)
    writer.add_head_count(cfg.n_head)
    writer.add_head_count_kv(cfg.n_head)
    writer.add_key_length(cfg.head_size)
    writer.add_value_length(cfg.head_size)
    writer.add_rope_dimension_count(cfg.head_size)
    writer.add_rope_freq_base(ROPE_BASE)
    writer.add_layer_norm_rms_eps(w.eps)
