"""The attention seam: every backend maps (q, k, v) -> output with the same contract.

q: (batch, n_heads, seq, head_dim); k, v: (batch, n_kv_heads, seq, head_dim) with n_heads a
multiple of n_kv_heads (GQA/MQA). Sequence-parallel backends (ring, Ulysses) plug in here.
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch
import torch.nn.functional as F


class AttentionFn(Protocol):
    def __call__(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool
    ) -> torch.Tensor: ...


def sdpa_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool
) -> torch.Tensor:
    """Full attention through torch SDPA (flash / memory-efficient kernels where available)."""
    return F.scaled_dot_product_attention(
        q, k, v, is_causal=causal, enable_gqa=k.shape[1] != q.shape[1]
    )


ATTENTION_BACKENDS: dict[str, Callable[..., torch.Tensor]] = {"sdpa": sdpa_attention}


def get_attention(name: str) -> AttentionFn:
    try:
        return ATTENTION_BACKENDS[name]
    except KeyError:
        raise ValueError(
            f"unknown attention backend {name!r}; choose one of {sorted(ATTENTION_BACKENDS)}"
        ) from None
