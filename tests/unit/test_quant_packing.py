"""Packed formats: every code survives pack/unpack; bytes are laid out as documented."""

from __future__ import annotations

import pytest
import torch

from ringbit.quant.packing import FORMATS, format_for, pack, unpack


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_round_trip_over_every_code(name):
    fmt = FORMATS[name]
    codes = [c for c in range(fmt.low, fmt.high + 1) if not (name == "b1" and c == 0)]
    # every code at every position inside a byte, rows not a multiple of codes_per_byte
    k = len(codes) * fmt.codes_per_byte + 3
    rows = torch.stack([torch.tensor(codes).roll(s).repeat(k)[:k]
                        for s in range(fmt.codes_per_byte)])
    packed = pack(rows, fmt)
    assert packed.dtype == torch.uint8 and packed.shape == (rows.shape[0], fmt.bytes_per_row(k))
    assert torch.equal(unpack(packed, fmt, k).long(), rows)


def test_byte_layout_is_least_significant_digit_first():
    assert pack(torch.tensor([1, -1, -1, 1, 1, 1, 1, -1]), FORMATS["b1"]).item() == 0b01111001
    assert pack(torch.tensor([1, 0, -1, 1]), FORMATS["i2"]).item() == 2 + 1 * 4 + 0 * 16 + 2 * 64
    assert pack(torch.tensor([1, 0, -1, 1, 0]), FORMATS["t3"]).item() == 2 + 3 + 0 + 2 * 27 + 81
    assert pack(torch.tensor([-7, 7]), FORMATS["i4"]).item() == 9 + 7 * 16


def test_bits_per_weight():
    k = 4000
    assert {n: f.bytes_per_row(k) * 8 / k for n, f in FORMATS.items()} == {
        "b1": 1.0, "i2": 2.0, "t3": 1.6, "i4": 4.0, "i8": 8.0}


def test_codes_outside_a_format_are_rejected():
    with pytest.raises(ValueError, match="do not fit"):
        pack(torch.tensor([2, 0]), FORMATS["i2"])
    with pytest.raises(ValueError, match="-1/\\+1"):
        pack(torch.tensor([1, 0]), FORMATS["b1"])


def test_format_for_each_bit_width():
    assert [format_for(b).name for b in (1, 1.58, 2, 4, 8)] == ["b1", "i2", "i2", "i4", "i8"]
    assert format_for(1.58, "t3").name == "t3"
    with pytest.raises(ValueError, match="nothing to pack"):
        format_for(16)
