"""Write a run as a Hugging Face `transformers` folder of a stock architecture (no custom code).

    write_hf(run, folder)   # config.json, generation_config.json, model.safetensors,
                            # tokenizer.json, tokenizer_config.json

`AutoModelForCausalLM.from_pretrained(folder)` then builds a `GPT2LMHeadModel` (weights.py explains
the head bias) or, for rotary/RMSNorm runs, an `ArceeForCausalLM`, `LlamaForCausalLM` or
`Qwen3ForCausalLM` (llama.py), whose logits are bricklm's; and `AutoTokenizer.from_pretrained(folder)` a
fast tokenizer with bricklm's ids (vocab.py); a fine-tuned run's folder has the chat template.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file
from tokenizers import Tokenizer

import bricklm.export.vocab as vocab
from bricklm.export.llama import hf_llama_config, hf_llama_state, llama_weights
from bricklm.export.weights import LAYER_NORM_EPS, GPT2Weights, export_architecture, gpt2_weights

# nn.GELU() is the exact (erf) GELU: "gelu", not GPT-2's "gelu_new"; transformers' "relu2" is relu(x)².
ACTIVATION = {"gelu": "gelu", "relu": "relu", "relu2": "relu2"}


def hf_state_dict(w: GPT2Weights) -> dict:
    """GPT2LMHeadModel's tensor names. Its Conv1D layers hold (in, out) weights: transposed from nn.Linear's."""
    state = {"transformer.wte.weight": w.wte, "transformer.wpe.weight": w.wpe}
    for i, layer in enumerate(w.layers):
        p = f"transformer.h.{i}."
        state |= {
            p + "ln_1.weight": layer["ln_1.weight"],
            p + "ln_1.bias": layer["ln_1.bias"],
            p + "attn.c_attn.weight": layer["attn.c_attn.weight"].t(),
            p + "attn.c_attn.bias": layer["attn.c_attn.bias"],
            p + "attn.c_proj.weight": layer["attn.c_proj.weight"].t(),
            p + "attn.c_proj.bias": layer["attn.c_proj.bias"],
            p + "ln_2.weight": layer["ln_2.weight"],
            p + "ln_2.bias": layer["ln_2.bias"],
            p + "mlp.c_fc.weight": layer["c_fc.weight"].t(),
            p + "mlp.c_fc.bias": layer["c_fc.bias"],
            p + "mlp.c_proj.weight": layer["mlp_proj.weight"].t(),
            p + "mlp.c_proj.bias": layer["mlp_proj.bias"],
        }
    state |= {"transformer.ln_f.weight": w.ln_f_weight, "transformer.ln_f.bias": w.ln_f_bias}
    if not w.tied:
        state["lm_head.weight"] = w.lm_head
    return {k: v.contiguous() for k, v in state.items()}


def hf_config(cfg, tied: bool, end_id: int | None, provenance: dict) -> dict:
    """config.json for GPT2LMHeadModel; every field that matters is written, none left to GPT-2's defaults."""
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.block_size,
        "n_embd": cfg.n_embd,
        "n_layer": cfg.n_layer,
        "n_head": cfg.n_head,
        "n_inner": 4 * cfg.n_embd,
        "activation_function": ACTIVATION[cfg.activation],
        "layer_norm_epsilon": LAYER_NORM_EPS,
        "resid_pdrop": cfg.dropout,
        "embd_pdrop": cfg.dropout,
        "attn_pdrop": cfg.dropout,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": tied,
        "bos_token_id": None,
        "eos_token_id": end_id,
        "pad_token_id": end_id,
        "use_cache": True,
        "torch_dtype": "float32",
        "bricklm": provenance,
    }


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_hf(model, tokenizer, folder: Path, provenance: dict) -> list[str]:
    """Write the five files into folder (which exists and is empty); returns notes for the user."""
    cfg = model.config
    arch = export_architecture(cfg, "this run", "hf")
    end_id = tokenizer.end_id if hasattr(tokenizer, "end_id") else None
    notes = []
    if arch == "gpt2":
        weights = gpt2_weights(model)
        state, config = hf_state_dict(weights), hf_config(cfg, weights.tied, end_id, provenance)
        if cfg.tie_weights and not weights.tied:
            notes.append(
                "the run ties its embedding and head; the folder has them untied (the head bias lives in lm_head)"
            )
    else:
        weights = llama_weights(model)
        state, config = hf_llama_state(weights), hf_llama_config(cfg, arch, weights, end_id, provenance)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    write_json(folder / "config.json", config)
    generation = {"bos_token_id": None, "eos_token_id": end_id, "pad_token_id": end_id}
    write_json(folder / "generation_config.json", generation)
    hf: Tokenizer = vocab.hf_tokenizer(tokenizer)
    hf.save(str(folder / "tokenizer.json"))
    write_json(folder / "tokenizer_config.json", vocab.tokenizer_config(tokenizer, cfg.block_size))
    return [f"architecture: {config['architectures'][0]}", *notes]
