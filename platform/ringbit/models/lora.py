"""LoRA (Hu et al. 2021): W x + (alpha / r) B A x with W frozen, A (r x in) and B (out x r)
trained, B = 0 at the start so the wrapped model equals the base one. FireAct fine-tunes with
r = 8, alpha = 16. `merge_lora_state` folds the adapters back into plain weights, so a LoRA
fine-tune saves an ordinary model folder that every backend loads."""

from __future__ import annotations

import math

import torch
from torch import nn

DEFAULT_TARGETS = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__()
        self.base, self.scale = base, alpha / r
        base.weight.requires_grad_(False)
        if base.bias is not None:
            base.bias.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear initialises
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (self.dropout(x) @ self.lora_A.t() @ self.lora_B.t()) * self.scale


def apply_lora(model: nn.Module, r: int, alpha: float, dropout: float = 0.0,
               targets: tuple[str, ...] = DEFAULT_TARGETS) -> int:
    """Wrap every nn.Linear whose attribute name is in `targets`; freeze everything else.
    Returns how many were wrapped."""
    for p in model.parameters():
        p.requires_grad_(False)
    wrapped = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if name in targets and type(child) is nn.Linear:
                setattr(module, name, LoRALinear(child, r, alpha, dropout))
                wrapped += 1
    if not wrapped:
        raise ValueError(f"lora.targets {list(targets)} matched no nn.Linear of the model "
                         "(BitLinear and packed layers cannot take adapters)")
    return wrapped


def merge_lora_state(state: dict[str, torch.Tensor], scale: float) -> dict[str, torch.Tensor]:
    """A LoRA model's state dict -> the plain model's: W + scale * B A under the original keys."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith((".lora_A", ".lora_B")):
            continue
        if ".base." in key:
            prefix, _, leaf = key.rpartition(".base.")
            if leaf == "weight":
                a, b = state[f"{prefix}.lora_A"], state[f"{prefix}.lora_B"]
                value = (value.float() + scale * (b.float() @ a.float())).to(value.dtype)
            key = f"{prefix}.{leaf}"
        out[key] = value
    return out
