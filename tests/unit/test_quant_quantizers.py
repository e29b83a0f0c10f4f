"""Each quantizer against examples computed by hand from the papers' formulas."""

from __future__ import annotations

import pytest
import torch

from ringbit.quant.quantizers import (
    absmax_weights,
    binarize_weights,
    quantize_activations,
    quantize_activations_shifted,
    quantize_weights,
    ternarize_weights,
)


def t(rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_binarize_maps_zero_to_minus_one_and_scales_by_mean_abs():
    # alpha = mean(W) = 1, W - alpha = [[0, 2], [1, -3]]: Sign(0) is -1 in BitNet (torch.sign gives 0).
    q = binarize_weights(t([[1, 3], [2, -2]]))
    assert torch.equal(q.codes, t([[-1, 1], [1, -1]]))
    assert q.scale.item() == pytest.approx(2.0)  # beta = ||W||_1 / (n m) = 8 / 4


def test_binarize_groups_have_their_own_alpha_and_beta():
    w = t([[1, 3, 10, 20], [2, -2, 30, 40]])
    q = binarize_weights(w, groups=2)
    # group 0 = columns 0-1 (alpha 1, beta 2); group 1 = columns 2-3 (alpha 25, beta 25)
    assert torch.equal(q.codes, t([[-1, 1, -1, -1], [1, -1, 1, 1]]))
    assert q.scale.flatten().tolist() == pytest.approx([2.0, 25.0])
    assert torch.allclose(q.dequantize(2), t([[-2, 2, -25, -25], [2, -2, 25, 25]]))


def test_ternarize_is_absmean_roundclip():
    # gamma = (0.3 + 0.9 + 0.05 + 1.2) / 4 = 0.6125; W / gamma = [0.49, -1.47, 0.08, 1.96]
    q = ternarize_weights(t([[0.3, -0.9], [0.05, 1.2]]), eps=0.0)
    assert torch.equal(q.codes, t([[0, -1], [0, 1]]))
    assert q.scale.item() == pytest.approx(0.6125)


@pytest.mark.parametrize("bits, codes, scale", [
    (4, [[7, -4], [1, 0]], 0.1),   # Q = 7, s = 7 / 0.7: [7, -3.6, 1, -0.4] rounded
    (8, [[127, -65], [18, -7]], 0.7 / 127),  # Q = 127: [127, -64.77, 18.14, -7.26]
    (2, [[1, -1], [0, 0]], 0.7),   # Q = 1: [1, -0.51, 0.14, -0.06]
])
def test_k_bit_absmax(bits, codes, scale):
    q = absmax_weights(t([[0.7, -0.357], [0.1, -0.04]]), bits, eps=0.0)
    assert torch.equal(q.codes, t(codes))
    assert q.scale.item() == pytest.approx(scale)


def test_weight_dispatch_and_unquantized_widths():
    w = torch.randn(4, 8)
    assert torch.equal(quantize_weights(w, 1).codes, binarize_weights(w).codes)
    assert torch.equal(quantize_weights(w, 1.58).codes, ternarize_weights(w).codes)
    assert quantize_weights(w, 4).codes.abs().max() <= 7
    with pytest.raises(ValueError, match="16"):
        quantize_weights(w, 16)


def test_activations_absmax_per_token_and_per_tensor():
    x = t([[1.5, -2.0], [0.5, 4.0]])
    per_token = quantize_activations(x, 8, per_token=True)
    # row 0: gamma 2 -> [95.25, -127]; row 1: gamma 4 -> [15.875, 127]
    assert torch.equal(per_token.codes, t([[95, -127], [16, 127]]))
    assert per_token.scale.flatten().tolist() == pytest.approx([2 / 127, 4 / 127])
    per_tensor = quantize_activations(x, 8, per_token=False)
    # gamma = 4 for both rows: [47.625, -63.5, 15.875, 127] (-63.5 rounds half to even)
    assert torch.equal(per_tensor.codes, t([[48, -64], [16, 127]]))
    assert per_tensor.scale.flatten().tolist() == pytest.approx([4 / 127])
    four_bit = quantize_activations(x, 4, per_token=False)  # Q = 7: [2.625, -3.5, 0.875, 7]
    assert torch.equal(four_bit.codes, t([[3, -4], [1, 7]]))


def test_activation_groups_take_their_own_gamma():
    x = t([[1.0, -2.0, 10.0, 5.0]])
    q = quantize_activations(x, 8, groups=2)
    assert q.scale.flatten().tolist() == pytest.approx([2 / 127, 10 / 127])
    assert torch.equal(q.codes, t([[64, -127, 127, 64]]))  # 63.5 -> 64 (half to even), 63.5 -> 64


def test_shifted_variant_scales_into_zero_to_q():
    # eta = min = -1, gamma = ||x||_inf = 3: (x - eta) Q / gamma = [0, 42.33, 84.67, 169.33] -> clip at Q
    x = t([[-1.0, 0.0, 1.0, 3.0]])
    q = quantize_activations_shifted(x, 8)
    assert torch.equal(q.codes, t([[0, 42, 85, 127]]))
    assert q.shift.item() == -1.0 and q.scale.item() == pytest.approx(3 / 127)
    assert torch.allclose(q.dequantize(1), t([[-1.0, 42 * 3 / 127 - 1, 85 * 3 / 127 - 1, 2.0]]))
    assert q.codes.min() >= 0


def test_straight_through_gradient_is_identity_inside_the_clip_range():
    from ringbit.quant.config import QuantConfig
    from ringbit.quant.bitlinear import BitLinear

    layer = BitLinear(11, 11, QuantConfig(weight_bits=16, activation_bits=8, subln="none"))
    layer.weight.data.copy_(torch.eye(11))  # y = x_q exactly
    x = torch.linspace(-3, 3, 11)[None].requires_grad_(True)
    y = layer(x)
    assert torch.allclose(y, quantize_activations(x.detach(), 8, per_token=False).dequantize(1))
    upstream = torch.arange(11.0)[None]
    y.backward(upstream)
    assert torch.equal(x.grad, upstream)  # backward through Round/Clip: identity
