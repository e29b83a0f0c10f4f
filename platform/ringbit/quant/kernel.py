"""The packed low-bit CPU kernel: int32 = int8 activations @ packed low-bit weights.T.

The C++ source (csrc/lowbit_matmul.cpp) is compiled on first use with
torch.utils.cpp_extension.load into the default torch extensions cache (TORCH_EXTENSIONS_DIR,
~/.cache/torch_extensions), so every process on a machine (Ray workers included) reuses one
build; `make venv` calls build() once at install time. The .so is portable across x86-64 nodes
(no -march=native): AVX-512 VNNI / AVX2 code paths are chosen at run time, with a scalar path for
any other CPU. Without a working compiler, lowbit_matmul falls back to the pure-torch reference
(same results, much slower) after one warning.
"""

from __future__ import annotations

import operator
import threading
import warnings
from pathlib import Path

import torch

CODES_PER_BYTE = (1, 2, 4, 5, 8)
_SOURCE = Path(__file__).resolve().parent / "csrc" / "lowbit_matmul.cpp"
_NAME = "ringbit_lowbit"
# No -march: the build is shared by every x86-64 node (the SIMD paths are picked at run time).
# -fopenmp: at::parallel_for is header code that only runs in parallel when compiled with OpenMP
# (it then shares torch's libgomp, so torch.set_num_threads applies).
_CFLAGS = ["-O3", "-fopenmp"]
_LDFLAGS = ["-fopenmp"]

_ext = None  # the loaded extension module
_error: str | None = None  # why it could not be built (then the reference is used)
_warned = False
_lock = threading.Lock()


def _compile(verbose: bool):
    from torch.utils.cpp_extension import load

    from ringbit.extensions import clear_stale_build_locks

    clear_stale_build_locks(log=lambda line: warnings.warn(line, stacklevel=3))

    return load(name=_NAME, sources=[str(_SOURCE)], extra_cflags=_CFLAGS,
                extra_ldflags=_LDFLAGS, verbose=verbose)


def build(verbose: bool = False) -> None:
    """Compile (or load the cached build of) the extension now; RuntimeError with the compiler
    output if that fails."""
    global _ext, _error
    with _lock:
        if _ext is not None:
            return
        try:
            _ext = _compile(verbose)
            _error = None
        except Exception as e:  # compiler missing, compile error, ninja missing, ...
            _error = f"{type(e).__name__}: {e}"
            raise RuntimeError(f"building the ringbit low-bit CPU kernel failed:\n{_error}") from e


def _load():
    """The extension module, building it on first call; None (reason in _error) if it cannot."""
    if _ext is None and _error is None:
        try:
            build()
        except RuntimeError:
            pass
    return _ext


def kernel_available() -> bool:
    """True when the compiled extension loads (compiling it first if needed)."""
    return _load() is not None


def _check(x: torch.Tensor, packed: torch.Tensor, lut: torch.Tensor, k: int) -> tuple[int, int]:
    """Validate the arguments; returns (k, cpb)."""
    for name, t in (("x", x), ("packed", packed), ("lut", lut)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.device.type != "cpu":
            raise ValueError(f"{name} must be on the CPU, got {t.device}")
        if not t.is_contiguous():
            raise ValueError(f"{name} must be contiguous")
    try:  # int, numpy int, 0-d integer tensor; not float or bool
        kk = None if isinstance(k, bool) else operator.index(k)
    except TypeError:
        kk = None
    if kk is None or kk < 0:
        raise ValueError(f"k must be a non-negative int, got {k!r}")
    k = kk
    if x.dtype != torch.int8 or x.dim() != 2:
        raise ValueError(f"x must be an int8 [M, K] tensor, got {x.dtype} {tuple(x.shape)}")
    if x.shape[1] != k:
        raise ValueError(f"x has {x.shape[1]} columns, expected k={k}")
    if lut.dtype != torch.int8 or lut.dim() != 2 or lut.shape[0] != 256:
        raise ValueError(f"lut must be an int8 [256, cpb] tensor, got {lut.dtype} {tuple(lut.shape)}")
    cpb = int(lut.shape[1])
    if cpb not in CODES_PER_BYTE:
        raise ValueError(f"lut has {cpb} codes per byte; supported: {CODES_PER_BYTE}")
    if packed.dtype != torch.uint8 or packed.dim() != 2:
        raise ValueError(f"packed must be a uint8 [N, B] tensor, got {packed.dtype} {tuple(packed.shape)}")
    if packed.shape[1] != -(-k // cpb):
        raise ValueError(
            f"packed has {packed.shape[1]} bytes per row; k={k} at {cpb} codes per byte needs "
            f"{-(-k // cpb)}"
        )
    return k, cpb


def lowbit_matmul_reference(x: torch.Tensor, packed: torch.Tensor, lut: torch.Tensor, k: int) -> torch.Tensor:
    """Pure-torch reference with the lowbit_matmul contract: decode via lut[packed.long()], then
    an exact float64 matmul (every partial sum is an integer below 2^53), in row chunks so no
    full float64 weight matrix exists at once."""
    k, _ = _check(x, packed, lut, k)
    n = packed.shape[0]
    xf = x.to(torch.float64)
    out = torch.empty(x.shape[0], n, dtype=torch.int32)
    chunk = max(1, (1 << 22) // max(1, k))
    for s in range(0, n, chunk):
        w = lut[packed[s:s + chunk].long()].flatten(-2)[:, :k].to(torch.float64)
        out[:, s:s + chunk] = (xf @ w.T).to(torch.int64).to(torch.int32)
    return out


def lowbit_matmul(x: torch.Tensor, packed: torch.Tensor, lut: torch.Tensor, k: int) -> torch.Tensor:
    """int32 [M, N] = x [M, K] (int8) @ decode(packed)[N, K].T, exact integer arithmetic.

    packed: uint8 [N, B] contiguous, B = ceil(k / cpb); byte j of row n holds the weights of
    columns j*cpb .. j*cpb+cpb-1 (in that order); lut: int8 [256, cpb] maps a byte to its cpb
    weight values (cpb in {1, 2, 4, 5, 8}). Columns >= k in the last byte are padding and are
    ignored. x: int8 [M, K] (any int8 values, -128..127).
    """
    global _warned
    k, _ = _check(x, packed, lut, k)
    ext = _load()
    if ext is None:
        if not _warned:
            _warned = True
            warnings.warn(
                "ringbit low-bit CPU kernel unavailable, using the slow pure-torch reference "
                f"({_error})", RuntimeWarning, stacklevel=2,
            )
        return lowbit_matmul_reference(x, packed, lut, k)
    return ext.matmul(x, packed, lut, k)
