"""Packed low-bit weight formats: integer codes <-> bytes, and the byte -> values lookup table
the CPU kernel decodes with.

A byte holds `codes_per_byte` digits in base `base`, least significant first:
byte = sum_i digit_i * base^i. One rule for every format:

| format | weights               | digit            | per byte | bits/weight |
|--------|-----------------------|------------------|----------|-------------|
| b1     | {-1, +1} (BitNet)     | 1 if w > 0 else 0| 8        | 1           |
| i2     | {-1, 0, +1} (ternary) | w + 1            | 4        | 2           |
| t3     | {-1, 0, +1} (ternary) | w + 1, base 3    | 5        | 1.6         |
| i4     | -7..7 (4-bit absmax)  | w mod 16         | 2        | 4           |
| i8     | -127..127 (8-bit)     | w mod 256        | 1        | 8           |
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch


@dataclass(frozen=True)
class PackFormat:
    name: str
    base: int
    codes_per_byte: int
    low: int  # smallest code the format stores
    high: int  # largest code

    def digit(self, codes: torch.Tensor) -> torch.Tensor:
        c = codes.to(torch.int64)
        if self.name == "b1":
            return (c > 0).to(torch.int64)
        if self.name in ("i2", "t3"):
            return c + 1
        return c % self.base  # two's complement digits for i4 / i8

    def value(self, digits: torch.Tensor) -> torch.Tensor:
        if self.name == "b1":
            return digits * 2 - 1
        if self.name in ("i2", "t3"):
            return digits - 1
        half = self.base // 2
        return torch.where(digits >= half, digits - self.base, digits)

    @cached_property
    def lut(self) -> torch.Tensor:
        """int8 [256, codes_per_byte]: the weights each byte value decodes to."""
        byte = torch.arange(256, dtype=torch.int64)[:, None]
        powers = self.base ** torch.arange(self.codes_per_byte, dtype=torch.int64)
        return self.value((byte // powers) % self.base).to(torch.int8).contiguous()

    def bytes_per_row(self, k: int) -> int:
        return -(-k // self.codes_per_byte)


FORMATS = {
    f.name: f
    for f in (
        PackFormat("b1", 2, 8, -1, 1),
        PackFormat("i2", 4, 4, -1, 1),
        PackFormat("t3", 3, 5, -1, 1),
        PackFormat("i4", 16, 2, -7, 7),
        PackFormat("i8", 256, 1, -127, 127),
    )
}
TERNARY_FORMATS = ("i2", "t3")


def format_for(weight_bits: float, ternary_format: str = "i2") -> PackFormat:
    """The format a bit width packs into (1.58 and 2 bits both give codes in {-1, 0, +1})."""
    if ternary_format not in TERNARY_FORMATS:
        raise ValueError(f"ternary format {ternary_format!r}: choose one of {TERNARY_FORMATS}")
    by_bits = {1: "b1", 1.58: ternary_format, 2: ternary_format, 4: "i4", 8: "i8"}
    if weight_bits not in by_bits:
        raise ValueError(
            f"weight_bits {weight_bits:g} has nothing to pack (16/32 are not quantized); "
            "export a model trained with quant.weight_bits in 1, 1.58, 2, 4, 8"
        )
    return FORMATS[by_bits[weight_bits]]


def pack(codes: torch.Tensor, fmt: PackFormat) -> torch.Tensor:
    """Integer codes [..., K] -> uint8 [..., ceil(K / codes_per_byte)] (padding digits are 0)."""
    c = codes.to(torch.int64)
    if c.numel() and (c.min() < fmt.low or c.max() > fmt.high):
        raise ValueError(
            f"codes in [{int(c.min())}, {int(c.max())}] do not fit format {fmt.name} "
            f"([{fmt.low}, {fmt.high}])"
        )
    if fmt.name == "b1" and c.numel() and bool((c == 0).any()):
        raise ValueError("format b1 stores -1/+1 only; got a 0 code")
    k = c.shape[-1]
    pad = fmt.bytes_per_row(k) * fmt.codes_per_byte - k
    digits = torch.nn.functional.pad(fmt.digit(c), (0, pad))
    digits = digits.unflatten(-1, (-1, fmt.codes_per_byte))
    powers = fmt.base ** torch.arange(fmt.codes_per_byte, dtype=torch.int64)
    return (digits * powers).sum(-1).to(torch.uint8).contiguous()


def unpack(packed: torch.Tensor, fmt: PackFormat, k: int) -> torch.Tensor:
    """uint8 [..., B] -> int8 codes [..., k] (for tests and the reference path, not the kernel)."""
    return fmt.lut[packed.long()].flatten(-2)[..., :k]
