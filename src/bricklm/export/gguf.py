"""Write a run as one GGUF file for llama.cpp: its GPT-2, Arcee, Llama or Qwen3 architecture, with the `gguf` package.

    write_gguf(model, tokenizer, path, provenance, chat_template, dtype)   # chat_template: None unless fine-tuned

weights.export_architecture picks the architecture. GPT-2's tensors are weights.py's layout under
llama.cpp's names (token_embd, position_embd, blk.N.attn_qkv, ..., output); the Llama family's are
llama.py's (blk.N.attn_q, attn_k, ..., ffn_gate, ffn_up, ffn_down). 2-D tensors are in dtype
(float32, bfloat16 or float16: --gguf-dtype; llama.cpp's `llama-quantize` can shrink them further),
1-D ones in float32. The vocabulary is llama.cpp's byte-level BPE ("gpt2" model, "gpt-2"
pre-tokenizer), which for a character run is made to yield one token per character (vocab.py).

What llama.cpp's GPT-2 graph cannot follow is refused: ReLU runs (its feed-forward is always
GELU). Its GELU is the tanh approximation read through a float16 table, and its KV cache is
float16 by default, so logits there differ slightly from bricklm's even though the weights are
exact; benchmarks/export_llamacpp.py measures how much, and that both causes explain it all.

A run that is not fine-tuned has no end-of-text token, and llama.cpp would otherwise take id 11
for one (and stop generating there); so one control token, <|endoftext|>, is appended after the
vocabulary. In GPT-2's layout the folded head bias gives it a constant logit of -10000, which no
sampler picks. The Llama family's head has no bias, and an RMSNorm's output has no constant
direction to fold one into, so there its logit is a constant 0: greedy decoding picks it (and
stops) only where every real token's logit is below 0.
"""

from __future__ import annotations

import gguf
import numpy as np
import torch

import bricklm.export.vocab as vocab
from bricklm.export.llama import gguf_llama_keys, gguf_llama_tensors, llama_weights
from bricklm.export.weights import LAYER_NORM_EPS, export_architecture, gpt2_weights
from bricklm.text.tokenizer import END

ENDOFTEXT = "<|endoftext|>"
NEVER = -1e4  # the constant logit of the appended <|endoftext|> token


def gguf_tensors(w) -> dict[str, np.ndarray]:
    """llama.cpp's GPT-2 tensor names; 2-D weights stay in nn.Linear's (out, in) layout (GGUF lists dims reversed)."""
    out = {"token_embd.weight": w.wte, "position_embd.weight": w.wpe}
    for i, layer in enumerate(w.layers):
        p = f"blk.{i}."
        out |= {
            p + "attn_norm.weight": layer["ln_1.weight"],
            p + "attn_norm.bias": layer["ln_1.bias"],
            p + "attn_qkv.weight": layer["attn.c_attn.weight"],
            p + "attn_qkv.bias": layer["attn.c_attn.bias"],
            p + "attn_output.weight": layer["attn.c_proj.weight"],
            p + "attn_output.bias": layer["attn.c_proj.bias"],
            p + "ffn_norm.weight": layer["ln_2.weight"],
            p + "ffn_norm.bias": layer["ln_2.bias"],
            p + "ffn_up.weight": layer["c_fc.weight"],
            p + "ffn_up.bias": layer["c_fc.bias"],
            p + "ffn_down.weight": layer["mlp_proj.weight"],
            p + "ffn_down.bias": layer["mlp_proj.bias"],
        }
    out |= {"output_norm.weight": w.ln_f_weight, "output_norm.bias": w.ln_f_bias}
    if not w.tied:
        out["output.weight"] = w.lm_head
    return {k: v.numpy() for k, v in out.items()}


# --gguf-dtype: train's spellings → the GGUF file type and the type of the 2-D tensors. 1-D tensors (norms, biases)
# stay float32, as llama.cpp's own converter keeps them: they are tiny, and its kernels read them as float32.
DTYPES = {
    "float32": (gguf.LlamaFileType.ALL_F32, gguf.GGMLQuantizationType.F32),
    "bfloat16": (gguf.LlamaFileType.MOSTLY_BF16, gguf.GGMLQuantizationType.BF16),
    "float16": (gguf.LlamaFileType.MOSTLY_F16, gguf.GGMLQuantizationType.F16),
}


def add_tensors(writer, tensors: dict[str, np.ndarray], dtype: str) -> None:
    kind = DTYPES[dtype][1]
    for name, array in tensors.items():
        if array.ndim < 2 or kind == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(name, array)
        else:
            writer.add_tensor(name, gguf.quants.quantize(array, kind), raw_dtype=kind)


def write_gguf(
    model, tokenizer, path, provenance: dict, chat_template: str | None, dtype: str = "float32"
) -> list[str]:
    """Write the GGUF file at path (a new file) in dtype (DTYPES); returns notes for the user."""
    cfg = model.config
    arch = export_architecture(cfg, "this run", "gguf")
    tokens, types, merges = vocab.gguf_vocab(tokenizer)
    if END in tokens:
        end_id, extra = tokens.index(END), ()
    else:
        end_id, extra = len(tokens), (NEVER,)
        tokens, types = tokens + [ENDOFTEXT], types + [vocab.CONTROL]

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(provenance["run"])
    writer.add_file_type(DTYPES[dtype][0])
    if arch == "gpt2":
        weights = gpt2_weights(model, extra_logits=extra)
        tensors = gguf_tensors(weights)
        writer.add_context_length(cfg.block_size)
        writer.add_embedding_length(cfg.n_embd)
        writer.add_feed_forward_length(4 * cfg.n_embd)
        writer.add_block_count(cfg.n_layer)
        writer.add_head_count(cfg.n_head)
        writer.add_layer_norm_eps(LAYER_NORM_EPS)
    else:
        w = llama_weights(model)
        if extra:  # no head bias here to pin its logit: a zero row gives it a logit of exactly 0 (module docstring)
            w.embed = torch.cat([w.embed, torch.zeros(1, cfg.n_embd)])
            if w.head is not None:
                w.head = torch.cat([w.head, torch.zeros(1, cfg.n_embd)])
        tensors = {k: v.numpy() for k, v in gguf_llama_tensors(w, arch, cfg.n_head).items()}
        gguf_llama_keys(writer, cfg, w)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(end_id)
    writer.add_eos_token_id(end_id)
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)
    if chat_template:
        writer.add_chat_template(chat_template)
    for key, value in provenance.items():
        writer.add_string(f"bricklm.{key}", str(value))
    add_tensors(writer, {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}, dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    notes = [f"architecture: {arch}, tensors in {dtype}"]
    if extra:
        logit = f"{NEVER:g} (never predicted)" if arch == "gpt2" else "0 (its head has no bias to pin it lower)"
        notes.append(f"appended {ENDOFTEXT} as token {end_id} with a constant logit of {logit} for llama.cpp's end id")
    return notes
