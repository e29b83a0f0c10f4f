"""The packed low-bit CPU kernel (ringbit.quant.kernel): compiled extension == pure-torch
reference == naive float64, on every code path this CPU has, plus argument validation.

The project requires a C++ compiler (the kernel is built by `make venv`), so a kernel that fails
to compile is a test FAILURE here, never a skip: test_compiled_matches_reference asserts that
the extension loads and shows the compiler output otherwise.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from ringbit.quant import kernel
from ringbit.quant.kernel import lowbit_matmul, lowbit_matmul_reference

CPBS = (1, 2, 4, 5, 8)
ISA_NAMES = {0: "scalar", 1: "avx2", 2: "avx512vnni"}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _random_lut(cpb: int, g: torch.Generator) -> torch.Tensor:
    """Arbitrary lut with no zero entry, so padding columns decode to non-zero junk."""
    lut = torch.randint(-128, 128, (256, cpb), dtype=torch.int8, generator=g)
    return torch.where(lut == 0, torch.ones_like(lut), lut).contiguous()


def _field_lut(cpb: int, g: torch.Generator, msb_first: bool) -> torch.Tensor:
    """Column i of a byte = tab[field i] (1/2/4-bit codes): the kernel's vectorised decode."""
    bits = 8 // cpb
    tab = torch.randint(1, 128, (1 << bits,), generator=g) * (torch.randint(0, 2, (1 << bits,), generator=g) * 2 - 1)
    byte = torch.arange(256)[:, None]
    field = torch.arange(cpb)
    if msb_first:
        field = cpb - 1 - field
    return tab[(byte >> (bits * field)) & ((1 << bits) - 1)].to(torch.int8).contiguous()


def _luts(cpb: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    luts = {"random": _random_lut(cpb, g)}
    if cpb in (2, 4, 8):
        luts["fields_lsb"] = _field_lut(cpb, g, msb_first=False)
        luts["fields_msb"] = _field_lut(cpb, g, msb_first=True)
    if cpb == 1:
        luts["identity"] = torch.arange(256, dtype=torch.int64).to(torch.uint8).view(torch.int8)[:, None].contiguous()
    return luts


def _case(m: int, n: int, k: int, cpb: int, g: torch.Generator):
    x = torch.randint(-128, 128, (m, k), dtype=torch.int8, generator=g)
    x[0, 0], x[-1, -1] = -128, 127
    packed = torch.randint(0, 256, (n, -(-k // cpb)), dtype=torch.uint8, generator=g)
    return x, packed


@pytest.mark.parametrize("cpb", CPBS)
def test_compiled_matches_reference(cpb):
    # Must fail (not skip) without a compiler: the project requires one.
    assert kernel.kernel_available(), f"the low-bit kernel did not build: {kernel._error}"
    ext = kernel._load()
    isas = range(ext.best_isa() + 1)  # every code path this CPU can run, scalar included
    g = _gen(cpb)
    # k is never a multiple of cpb (> 1); 6001 with M=130 spans several activation blocks.
    for m, n, k in ((1, 11, 3), (3, 11, 259), (130, 11, 1029), (130, 9, 6001), (3, 257, 1029)):
        x, packed = _case(m, n, k, cpb, g)
        for name, lut in _luts(cpb, g).items():
            ref = lowbit_matmul_reference(x, packed, lut, k)
            assert torch.equal(lowbit_matmul(x, packed, lut, k), ref), (name, m, n, k)
            for isa in isas:
                got = ext.matmul(x, packed, lut, k, isa)
                assert got.dtype == torch.int32 and got.shape == (m, n)
                assert torch.equal(got, ref), (ISA_NAMES[isa], name, m, n, k)


def test_compiled_extremes_and_threads():
    """Largest magnitudes (x = -128, w = -128 everywhere) and a result independent of threads."""
    assert kernel.kernel_available(), f"the low-bit kernel did not build: {kernel._error}"
    ext = kernel._load()
    k = 4099
    x = torch.full((5, k), -128, dtype=torch.int8)
    packed = torch.zeros(7, -(-k // 5), dtype=torch.uint8)
    lut = torch.full((256, 5), -128, dtype=torch.int8)
    for isa in range(ext.best_isa() + 1):
        assert torch.equal(ext.matmul(x, packed, lut, k, isa), torch.full((5, 7), k * 128 * 128, dtype=torch.int32))
    x, packed = _case(7, 301, 777, 4, _gen(7))
    lut = _random_lut(4, _gen(8))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = lowbit_matmul(x, packed, lut, 777)
        torch.set_num_threads(2)
        two = lowbit_matmul(x, packed, lut, 777)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two) and torch.equal(one, lowbit_matmul_reference(x, packed, lut, 777))


@pytest.mark.parametrize("cpb", CPBS)
def test_reference_matches_naive(cpb):
    g = _gen(100 + cpb)
    m, n, k = 3, 4, 2 * cpb + 1 if cpb > 1 else 7
    x, packed = _case(m, n, k, cpb, g)
    lut = _random_lut(cpb, g)
    w = [[0.0] * k for _ in range(n)]
    for r in range(n):
        for j in range(packed.shape[1]):
            for i in range(cpb):
                col = j * cpb + i
                if col < k:  # padding columns of the last byte are ignored
                    w[r][col] = float(lut[int(packed[r, j]), i])
    naive = x.to(torch.float64) @ torch.tensor(w, dtype=torch.float64).T
    assert torch.equal(lowbit_matmul_reference(x, packed, lut, k), naive.to(torch.int32))


def test_validation_names_the_argument():
    g = _gen(0)
    x, packed = _case(2, 3, 10, 4, g)
    lut = _random_lut(4, g)
    cases = {
        "x": [(x.to(torch.int16), packed, lut, 10), (x.float(), packed, lut, 10),
              (x[:, ::2].contiguous(), packed, lut, 10), (x.t().contiguous().t(), packed, lut, 10)],
        "packed": [(x, packed.to(torch.int8), lut, 10), (x, packed[:, :2].contiguous(), lut, 10),
                   (x, torch.zeros(3, 4, dtype=torch.uint8), lut, 10)],
        "lut": [(x, packed, lut.to(torch.int16), 10), (x, packed, torch.zeros(256, 3, dtype=torch.int8), 10),
                (x, packed, lut[:128].contiguous(), 10)],
        "k": [(x, packed, lut, -1), (x, packed, lut, 10.0)],
    }
    for name, calls in cases.items():
        for args in calls:
            for fn in (lowbit_matmul, lowbit_matmul_reference):
                with pytest.raises(ValueError, match=rf"^{name}\b"):
                    fn(*args)


def test_fallback_warns_once(monkeypatch):
    monkeypatch.setattr(kernel, "_ext", None)
    monkeypatch.setattr(kernel, "_error", "CalledProcessError: no compiler")
    monkeypatch.setattr(kernel, "_warned", False)
    x, packed = _case(2, 3, 13, 5, _gen(1))
    lut = _random_lut(5, _gen(2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = lowbit_matmul(x, packed, lut, 13)
        b = lowbit_matmul(x, packed, lut, 13)
    msgs = [str(w.message) for w in caught]
    assert len(msgs) == 1 and "no compiler" in msgs[0]
    assert torch.equal(a, b) and torch.equal(a, lowbit_matmul_reference(x, packed, lut, 13))
    assert not kernel.kernel_available()
