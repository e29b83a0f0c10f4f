"""The linear-layer seam: every projection inside the blocks is built by one factory, called as
`factory(in_features, out_features, role)` with role in wq, wk, wv, wo, w_gate, w_up, w_down.

Embeddings and the LM head are not built here: low-bit schemes keep them in high precision.
"""

from __future__ import annotations

from typing import Protocol

from torch import nn

from ringbit.quant.config import QuantConfig


class LinearFactory(Protocol):
    def __call__(self, in_features: int, out_features: int, role: str) -> nn.Module: ...


def dense_linear(in_features: int, out_features: int, role: str = "") -> nn.Module:
    return nn.Linear(in_features, out_features, bias=False)


LINEAR_FACTORIES: dict[str, LinearFactory] = {"dense": dense_linear}


def get_linear_factory(
    name: str = "dense", quant: QuantConfig | None = None, packed_format: str | None = None
) -> LinearFactory:
    """nn.Linear; BitLinear when `quant` is given; PackedBitLinear when a packed format is too."""
    if quant is not None:
        from ringbit.quant.bitlinear import BitLinear
        from ringbit.quant.packed import PackedBitLinear

        def bitlinear(in_features: int, out_features: int, role: str) -> nn.Module:
            shifted = quant.shift_ffn_down_input and role == "w_down"
            if packed_format:
                return PackedBitLinear(in_features, out_features, quant, packed_format, shifted)
            return BitLinear(in_features, out_features, quant, shifted)

        return bitlinear
    try:
        return LINEAR_FACTORIES[name]
    except KeyError:
        raise ValueError(
            f"unknown linear factory {name!r}; choose one of {sorted(LINEAR_FACTORIES)}"
        ) from None
