"""LoRA (Hu et al., 2021): fine-tune a frozen Linear W by learning a low-rank update, W + (alpha/r)·B·A.

    adapted = apply_lora(model, rank=8, alpha=16)   # in place: targets become LoRALinear, blocks frozen
    plain = merged_state_dict(model)                # W + (alpha/r)·B·A under the plain GPT's names
    merge_lora(model)                               # in place: LoRALinear → nn.Linear with merged weights

A is (r × in), B is (out × r) and starts at zero, so the adapted model starts out equal to the
base. Targets: the attention projections `attn.c_attn`, `attn.c_proj` and the feed-forward
`ffn.fc`, `ffn.proj` of every block. With attention=torch_mha the attention projections live
inside nn.MultiheadAttention, whose forward reads its weight tensors directly rather than
calling submodules, so only the feed-forward layers are adapted there (apply_lora says so).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from bricklm.errors import UserError
from bricklm.storage import checkpoint as ckpt

TARGETS = ("attn.c_attn", "attn.c_proj", "ffn.fc", "ffn.proj")
# Trained in full beside the adapters: finetune adds rows for special tokens to both, and new rows
# can only be learned if the whole matrix trains (as PEFT's modules_to_save).
FULLY_TRAINED = ("tok_emb", "head")


class LoRALinear(nn.Module):
    """y = base(x) + (alpha/r) · x Aᵀ Bᵀ, with base frozen."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        if rank <= 0:
            raise ValueError(f"LoRA rank must be positive, got {rank}")
        self.base, self.rank, self.alpha = base, rank, alpha
        self.scale = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear initialises its weight
        for p in self.base.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_A.t() @ self.lora_B.t()) * self.scale

    def merged_weight(self) -> torch.Tensor:
        return self.base.weight + self.scale * (self.lora_B @ self.lora_A)

    def merged(self) -> nn.Linear:
        lin = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None)
        lin.to(self.base.weight.device)
        with torch.no_grad():
            lin.weight.copy_(self.merged_weight())
            if self.base.bias is not None:
                lin.bias.copy_(self.base.bias)
        return lin


def lora_targets(model: nn.Module) -> list[str]:
    """Names of the Linear modules apply_lora adapts in this model."""
    out = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and name.split(".", 2)[-1] in TARGETS and name.startswith("blocks."):
            out.append(name)
    return out


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, module)


def apply_lora(model: nn.Module, rank: int, alpha: float, log=None) -> list[str]:
    """Freeze the model except tok_emb and head, and wrap each target Linear in a LoRALinear. Returns the names."""
    names = lora_targets(model)
    for p in model.parameters():
        p.requires_grad_(False)
    for name in FULLY_TRAINED:
        for p in model.get_submodule(name).parameters():
            p.requires_grad_(True)
    for name in names:
        _set_submodule(model, name, LoRALinear(model.get_submodule(name), rank, alpha))
    if log and any(isinstance(m, nn.MultiheadAttention) for m in model.modules()):
        log("LoRA: attention=torch_mha keeps its projections inside nn.MultiheadAttention; adapting the FFN only")
    return names


def lora_modules(model: nn.Module) -> dict[str, LoRALinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict the plain (un-adapted) model would have: adapters folded into their weights."""
    adapted = lora_modules(model)
    out = {}
    for key, t in model.state_dict().items():
        owner = next((n for n in adapted if key.startswith(n + ".")), None)
        if owner is None:
            out[key] = t
            continue
        rest = key[len(owner) + 1 :]
        if rest == "base.weight":
            out[f"{owner}.weight"] = adapted[owner].merged_weight().detach()
        elif rest == "base.bias":
            out[f"{owner}.bias"] = t
        # lora_A and lora_B are folded in above
    return out


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every LoRALinear by a plain Linear holding W + (alpha/r)·B·A, in place; returns model."""
    for name, m in lora_modules(model).items():
        _set_submodule(model, name, m.merged())
    return model


def adapter_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The frozen base weights and the adapters, under `lora.` names: what resuming needs beside the merge."""
    out = {}
    for name, m in lora_modules(model).items():
        for key, t in m.state_dict().items():
            out[f"lora.{name}.{key}"] = t.detach().to("cpu").contiguous()
    return out


def load_adapter_tensors(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Inverse of adapter_tensors; a missing tensor raises KeyError with its name."""
    for name, m in lora_modules(model).items():
        m.load_state_dict({key: tensors[f"lora.{name}.{key}"] for key in m.state_dict()})


class LoRAWeights:
    """Checkpoints of a LoRA model (train.Trainer's `weights`): merged plain weights in model.safetensors, so
    every command loads them like any run's, and the adapters with their frozen base in state.safetensors,
    so a resume continues exactly."""

    def save(self, model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        return ckpt.model_tensors(merged_state_dict(model)), adapter_tensors(model)

    def load(self, model: nn.Module, c: ckpt.Checkpoint) -> None:
        adapted = lora_modules(model)
        plain = {k: v for k, v in c.model.items() if not any(k.startswith(n + ".") for n in adapted)}
        ckpt.check_shapes(model.state_dict(), plain, str(c.path / "model.safetensors"))
        model.load_state_dict(plain, strict=False)
        ckpt.check_shapes(adapter_tensors(model), c.state, str(c.path / "state.safetensors"))
        try:
            load_adapter_tensors(model, c.state)
        except KeyError as e:
            raise UserError(f"{c.path / 'state.safetensors'} lacks the LoRA tensor {e}; cannot resume") from None
