"""The quantization config (QuantConfig): BitLinear's weight and activation bit widths.

Owned by the quantization code (ringbit.quant): it imports only the shared config machinery
(ringbit.config), never the job schemas, Ray or MLflow, and not torch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ringbit.config import StrictModel

WEIGHT_BITS = (1, 1.58, 2, 4, 8, 16, 32)
WEIGHT_BITS_CHOICES = ", ".join(f"{b:g}" for b in WEIGHT_BITS)


class QuantConfig(StrictModel):
    """BitLinear (BitNet / BitNet b1.58): every projection inside the blocks quantizes its weights
    and input activations; embeddings and the LM head stay in high precision. 16 and 32 bits mean
    "not quantized", so the full-precision baseline runs the same code path."""

    weight_bits: float = Field(
        1.58,
        description=(
            "1 = BitNet Sign(W - mean W) * mean|W|; 1.58 = b1.58 absmean ternary {-1, 0, +1}; "
            "2/4/8 = symmetric absmax k-bit; 16/32 = no weight quantization."
        ),
    )
    activation_bits: int = Field(
        8,
        description="Absmax activation bits (2-8, int8 at inference); 16/32 = no quantization.",
    )
    groups: int = Field(
        1,
        ge=1,
        description=(
            "Group quantization for tensor-parallel splits: the input features of every "
            "projection form this many groups, each with its own scales and SubLN statistics."
        ),
    )
    subln: Literal["layernorm", "rmsnorm", "none"] = Field(
        "rmsnorm",
        description=(
            "Normalisation without learnable affine applied inside BitLinear before the "
            "activation quantizer (BitNet: layernorm; b1.58: rmsnorm)."
        ),
    )
    shift_ffn_down_input: bool = Field(
        False,
        description=(
            "Quantize the FFN down projection's input (the gated non-linearity's output) into "
            "[0, Q_b] by subtracting its minimum: BitNet's variant for activations at a "
            "non-linearity."
        ),
    )
    eps: float = Field(1e-5, gt=0, description="Guards the scales against division by zero.")

    @field_validator("weight_bits")
    @classmethod
    def _weight_bits_supported(cls, bits: float) -> float:
        if bits not in WEIGHT_BITS:
            raise ValueError(f"weight_bits {bits:g} is not supported; choose one of {WEIGHT_BITS_CHOICES}")
        return bits

    @field_validator("activation_bits")
    @classmethod
    def _activation_bits_supported(cls, bits: int) -> int:
        if not (2 <= bits <= 8 or bits in (16, 32)):
            raise ValueError(
                f"activation_bits {bits} is not supported; use 2-8 (8 = the papers' int8) or "
                "16/32 for no activation quantization"
            )
        return bits

    @property
    def quantizes_weights(self) -> bool:
        return self.weight_bits < 16

    @property
    def quantizes_activations(self) -> bool:
        return self.activation_bits < 16
