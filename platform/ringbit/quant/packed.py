"""PackedBitLinear: inference with weights stored packed (1-bit: 8 per byte, ternary: 4 or 5 per
byte) and int8 activations. The kernel decodes one weight row at a time inside the cache and
accumulates int8 x low-bit products in int32, so no full-precision weight matrix exists, ever.
The result is combined with the scales by `integer_linear`, exactly as BitLinear does in eval.
"""

from __future__ import annotations

import torch
from torch import nn

from ringbit.quant.config import QuantConfig
from ringbit.quant.bitlinear import BitLinear, integer_linear
from ringbit.quant.kernel import lowbit_matmul
from ringbit.quant.packing import FORMATS, pack


class PackedBitLinear(nn.Module):
    def __init__(
        self, in_features: int, out_features: int, quant: QuantConfig, fmt: str, shifted: bool = False
    ) -> None:
        super().__init__()
        if not quant.quantizes_activations:
            raise ValueError(
                "packed inference runs int8 activations; quant.activation_bits must be 2-8"
            )
        self.in_features, self.out_features = in_features, out_features
        self.quant, self.fmt, self.shifted = quant, FORMATS[fmt], shifted
        g = quant.groups
        self.group_width = in_features // g
        nbytes = self.fmt.bytes_per_row(self.group_width)
        self.register_buffer("packed", torch.zeros(g, out_features, nbytes, dtype=torch.uint8))
        self.register_buffer("weight_scale", torch.ones(g, dtype=torch.float32))
        if shifted:
            self.register_buffer("row_sums", torch.zeros(g, out_features, dtype=torch.int32))
        self.register_buffer("lut", self.fmt.lut.clone(), persistent=False)

    @classmethod
    def from_bitlinear(cls, layer: BitLinear, fmt: str) -> "PackedBitLinear":
        """Quantize the latent weight with the training quantizer, then pack each group."""
        q = layer.quant
        packed = cls(layer.in_features, layer.out_features, q, fmt, layer.shifted)
        with torch.no_grad():
            wq = layer.quantized_weight()
            codes = wq.codes.to(torch.int64).unflatten(-1, (q.groups, -1)).transpose(0, 1)
            packed.packed.copy_(pack(codes, packed.fmt))
            packed.weight_scale.copy_(wq.scale.reshape(q.groups))
            if layer.shifted:
                packed.row_sums.copy_(codes.sum(-1).to(torch.int32))
        return packed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def group_matmul(x_codes: torch.Tensor, g: int) -> torch.Tensor:
            x_int8 = x_codes.to(torch.int8).contiguous()
            return lowbit_matmul(x_int8, self.packed[g], self.lut, self.group_width)

        return integer_linear(x, self.quant, self.shifted, self.out_features, group_matmul,
                              self.weight_scale, self.row_sums if self.shifted else None)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"format={self.fmt.name}, groups={self.quant.groups}"
                + (", shifted" if self.shifted else ""))
