"""BitLinear: the training-time (fake-quant) layer, a drop-in nn.Linear behind the linear seam.

Forward (BitNet eq. 11, b1.58 "Training forward"):
    x_n = SubLN(x)                      per group, no learnable affine
    x_q = x_n + (AQ(x_n) - x_n).detach()   absmax activations: per tensor in training, per token in eval
    w_q = w + (WQ(w) - w).detach()         binary / ternary / k-bit weights
    y   = F.linear(x_q, w_q)
`BitLinearFunction` computes exactly this gradient while saving only x and w (as nn.Linear does).
In eval mode the same value is computed from the integer codes, in the order the packed kernel
uses (`integer_linear`), so a packed export reproduces evaluation bit for bit.
The latent weight, its gradient and the optimizer state stay in high precision; the
straight-through estimator passes gradients through Sign/Round/Clip unchanged.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ringbit.quant.config import QuantConfig
from ringbit.quant.quantizers import (
    Quantized,
    activation_levels,
    grouped,
    quantize_activations,
    quantize_activations_shifted,
    quantize_weights,
)


def sub_layer_norm(x: torch.Tensor, kind: str, groups: int, eps: float) -> torch.Tensor:
    """SubLN: LayerNorm or RMSNorm without affine, per group of input features, in fp32."""
    if kind == "none":
        return x
    xg = grouped(x.float(), groups)
    if kind == "layernorm":
        xg = F.layer_norm(xg, xg.shape[-1:], eps=eps)
    else:
        xg = xg * torch.rsqrt(xg.pow(2).mean(-1, keepdim=True) + eps)
    return xg.flatten(-2).to(x.dtype)


def quantize_input(
    x_n: torch.Tensor, quant: QuantConfig, shifted: bool, per_token: bool
) -> Quantized:
    fn = quantize_activations_shifted if shifted else quantize_activations
    return fn(x_n, quant.activation_bits, quant.groups, per_token=per_token, eps=quant.eps)


def integer_linear(
    x: torch.Tensor,
    quant: QuantConfig,
    shifted: bool,
    out_features: int,
    group_matmul: Callable[[torch.Tensor, int], torch.Tensor],
    weight_scale: torch.Tensor,
    row_sums: torch.Tensor | None = None,
) -> torch.Tensor:
    """y = sum_g (W~_g . x~_g) * (x_scale_g * w_scale_g)  [+ (eta_g * w_scale_g) * rowsum(W~_g)]

    with per-token int8 activations; `group_matmul(codes [T, K/G], g)` returns the exact integer
    products W~_g . x~_g as floats [T, N] (from float codes in training, from packed bytes in
    PackedBitLinear)."""
    g_count, lead = quant.groups, x.shape[:-1]
    x_n = sub_layer_norm(x, quant.subln, g_count, quant.eps).reshape(-1, x.shape[-1])
    aq = quantize_input(x_n, quant, shifted, per_token=True)
    codes = aq.codes.unflatten(-1, (g_count, -1))
    out = torch.zeros(x_n.shape[0], out_features, dtype=torch.float32, device=x.device)
    for g in range(g_count):
        out += group_matmul(codes[:, g], g).float() * (aq.scale[:, g] * weight_scale[g])
        if shifted:
            out += (aq.shift[:, g] * weight_scale[g]) * row_sums[g].float()
    return out.to(x.dtype).reshape(*lead, out_features)


def fake_quantize(
    x: torch.Tensor, weight: torch.Tensor, quant: QuantConfig, shifted: bool, per_token: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(SubLN(x), its quantized value x_q, the quantized weight w_q), without autograd."""
    x_n = sub_layer_norm(x, quant.subln, quant.groups, quant.eps)
    x_q = x_n
    if quant.quantizes_activations:
        x_q = quantize_input(x_n, quant, shifted, per_token).dequantize(quant.groups).to(x.dtype)
    w_q = weight
    if quant.quantizes_weights:
        w_q = quantize_weights(weight, quant.weight_bits, quant.groups, quant.eps)
        w_q = w_q.dequantize(quant.groups).to(weight.dtype)
    return x_n, x_q, w_q


class BitLinearFunction(torch.autograd.Function):
    """y = F.linear(x_q, w_q) with the straight-through estimator, keeping for backward only what
    nn.Linear keeps (the input and the weight): SubLN and both quantizers are recomputed in
    backward, so BitNet training needs no more activation memory than the FP model."""

    @staticmethod
    def forward(ctx, x, weight, quant: QuantConfig, shifted: bool, per_token: bool):
        _, x_q, w_q = fake_quantize(x, weight, quant, shifted, per_token)
        ctx.save_for_backward(x, weight)
        ctx.cfg = (quant, shifted, per_token)
        return F.linear(x_q, w_q.to(x_q.dtype))

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        quant, shifted, per_token = ctx.cfg
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(ctx.needs_input_grad[0])
            x_n, x_q, w_q = fake_quantize(x_in, weight.detach(), quant, shifted, per_token)
        grad_x = grad_w = None
        g = grad_out
        if ctx.needs_input_grad[0]:
            # STE: d x_q / d x_n = I, so the gradient enters SubLN's backward unchanged.
            grad_xq = g @ w_q.detach().to(g.dtype)
            if x_n is x_in:  # no SubLN
                grad_x = grad_xq.to(x.dtype)
            else:
                (grad_x,) = torch.autograd.grad(x_n, x_in, grad_xq.to(x_n.dtype))
        if ctx.needs_input_grad[1]:
            # STE: d w_q / d w = I.
            grad_w = (g.reshape(-1, g.shape[-1]).T @ x_q.detach().reshape(-1, x_q.shape[-1]).to(g.dtype))
            grad_w = grad_w.to(weight.dtype)
        return grad_x, grad_w, None, None, None


class BitLinear(nn.Linear):
    """nn.Linear(bias=False) whose forward quantizes weights and inputs (fake quantization)."""

    def __init__(
        self, in_features: int, out_features: int, quant: QuantConfig, shifted: bool = False
    ) -> None:
        super().__init__(in_features, out_features, bias=False)
        if in_features % quant.groups:
            raise ValueError(f"in_features {in_features} does not divide into {quant.groups} groups")
        self.quant, self.shifted = quant, shifted

    def quantized_weight(self) -> Quantized:
        q = self.quant
        return quantize_weights(self.weight, q.weight_bits, q.groups, q.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.quant
        if not self.training and q.quantizes_weights and q.quantizes_activations:
            return self._forward_integer(x)
        return BitLinearFunction.apply(x, self.weight, q, self.shifted, not self.training)

    def _forward_integer(self, x: torch.Tensor) -> torch.Tensor:
        q = self.quant
        wq = self.quantized_weight()
        codes = wq.codes.unflatten(-1, (q.groups, -1))  # [N, G, K/G]
        # fp32 holds integer sums exactly below 2^24; wider 4/8-bit layers need fp64.
        bound = activation_levels(q.activation_bits) * codes.abs().max() * codes.shape[-1]
        exact = torch.float32 if bound < 2**24 else torch.float64
        codes = codes.to(exact)

        def group_matmul(x_codes: torch.Tensor, g: int) -> torch.Tensor:
            return x_codes.to(exact) @ codes[:, g].T

        row_sums = codes.sum(-1).T if self.shifted else None  # [G, N]
        return integer_linear(x, q, self.shifted, self.out_features, group_matmul,
                              wq.scale.reshape(q.groups), row_sums)

    def extra_repr(self) -> str:
        q = self.quant
        return (f"{super().extra_repr()}, weight_bits={q.weight_bits:g}, "
                f"activation_bits={q.activation_bits}, groups={q.groups}, subln={q.subln}"
                + (", shifted" if self.shifted else ""))
