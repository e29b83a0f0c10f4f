"""The BitNet quantizers as plain functions (no modules, no state).

Every function returns integer *codes* (held in a float tensor so autograd tricks stay simple)
and the scale that maps them back: value ~= codes * scale (+ shift). One convention for all bit
widths, so the packed kernel and the training forward cannot disagree about the scale.

Groups split the last (input-feature) dimension into `groups` equal parts with their own
statistics (BitNet, "Model parallelism with group quantization"): a row-parallel split then
needs no extra all-reduce for the scales.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Quantized(NamedTuple):
    codes: torch.Tensor  # integers stored as float, same shape as the input
    scale: torch.Tensor  # broadcastable against the grouped view (see `grouped`)
    shift: torch.Tensor | None = None  # shifted activations only: value ~= codes * scale + shift

    def dequantize(self, groups: int) -> torch.Tensor:
        value = grouped(self.codes, groups) * self.scale
        if self.shift is not None:
            value = value + self.shift
        return value.flatten(-2)


def grouped(t: torch.Tensor, groups: int) -> torch.Tensor:
    """[..., K] -> [..., groups, K / groups]."""
    if t.shape[-1] % groups:
        raise ValueError(f"last dimension {t.shape[-1]} does not divide into {groups} groups")
    return t.unflatten(-1, (groups, t.shape[-1] // groups))


# Statistics of a grouped weight [N, G, K/G] are taken over the rows and columns of each group.
WEIGHT_STAT_DIMS = (0, 2)


def binarize_weights(w: torch.Tensor, groups: int = 1) -> Quantized:
    """BitNet (W1): alpha = mean(W), W~ = Sign(W - alpha) with Sign(0) = -1 (the paper's Sign,
    not torch.sign), beta = ||W||_1 / (n m)."""
    wg = grouped(w.float(), groups)
    dims = WEIGHT_STAT_DIMS
    alpha = wg.mean(dim=dims, keepdim=True)
    codes = torch.where(wg - alpha > 0, 1.0, -1.0)
    beta = wg.abs().mean(dim=dims, keepdim=True)
    return Quantized(codes.flatten(-2), beta)


def ternarize_weights(w: torch.Tensor, groups: int = 1, eps: float = 1e-5) -> Quantized:
    """BitNet b1.58 (W1.58): gamma = mean|W|, W~ = RoundClip(W / (gamma + eps), -1, 1)."""
    wg = grouped(w.float(), groups)
    gamma = wg.abs().mean(dim=WEIGHT_STAT_DIMS, keepdim=True)
    codes = (wg / (gamma + eps)).round().clamp(-1, 1)
    return Quantized(codes.flatten(-2), gamma)


def absmax_weights(w: torch.Tensor, bits: int, groups: int = 1, eps: float = 1e-5) -> Quantized:
    """Symmetric k-bit: Q = 2^(k-1) - 1, s = Q / max|W|, W~ = round(W s).clamp(-Q, Q), scale 1/s."""
    q = 2 ** (bits - 1) - 1
    wg = grouped(w.float(), groups)
    top = wg.abs().amax(dim=WEIGHT_STAT_DIMS, keepdim=True).clamp(min=eps)
    codes = (wg * (q / top)).round().clamp(-q, q)
    return Quantized(codes.flatten(-2), top / q)


def quantize_weights(w: torch.Tensor, bits: float, groups: int = 1, eps: float = 1e-5) -> Quantized:
    """Dispatch on the bit width: 1 -> binarize, 1.58 -> ternarize, 2/4/8 -> absmax."""
    if bits == 1:
        return binarize_weights(w, groups)
    if bits == 1.58:
        return ternarize_weights(w, groups, eps)
    if bits in (2, 4, 8):
        return absmax_weights(w, int(bits), groups, eps)
    raise ValueError(f"weight_bits {bits:g} has no quantizer (16/32 mean: not quantized)")


def activation_levels(bits: int) -> int:
    """Q_b. The paper writes 2^(b-1) with a clip to +-(Q_b - eps); once codes are rounded to
    integers that clip only fits b bits with Q_b = 2^(b-1) - 1 (127 for int8, as in b1.58)."""
    return 2 ** (bits - 1) - 1


def quantize_activations(
    x: torch.Tensor, bits: int, groups: int = 1, per_token: bool = True, eps: float = 1e-5
) -> Quantized:
    """Absmax: gamma = ||x||_inf, x~ = round(Clip(x Q_b / gamma, -Q_b, Q_b)), value = x~ gamma / Q_b.
    gamma per token (last dim, at inference) or per tensor (training), per group either way."""
    q = activation_levels(bits)
    xg = grouped(x.float(), groups)
    dims = (-1,) if per_token else tuple(d for d in range(xg.dim()) if d != xg.dim() - 2)
    gamma = xg.abs().amax(dim=dims, keepdim=True).clamp(min=eps)
    codes = (xg * (q / gamma)).round().clamp(-q, q)
    return Quantized(codes.flatten(-2), gamma / q)


def quantize_activations_shifted(
    x: torch.Tensor, bits: int, groups: int = 1, per_token: bool = True, eps: float = 1e-5
) -> Quantized:
    """BitNet's variant at a non-linearity: eta = min(x), gamma = ||x||_inf,
    x~ = round(Clip((x - eta) Q_b / gamma, 0, Q_b)), value = x~ gamma / Q_b + eta."""
    q = activation_levels(bits)
    xg = grouped(x.float(), groups)
    dims = (-1,) if per_token else tuple(d for d in range(xg.dim()) if d != xg.dim() - 2)
    eta = xg.amin(dim=dims, keepdim=True)
    gamma = xg.abs().amax(dim=dims, keepdim=True).clamp(min=eps)
    codes = ((xg - eta) * (q / gamma)).round().clamp(0, q)
    return Quantized(codes.flatten(-2), gamma / q, eta)
