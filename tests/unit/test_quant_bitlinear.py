"""BitLinear: the fake-quant training layer behind the linear seam."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ringbit.models.config import ModelConfig
from ringbit.quant.config import QuantConfig
from ringbit.models import Transformer
from ringbit.quant.bitlinear import BitLinear, sub_layer_norm
from ringbit.quant.quantizers import (
    quantize_activations,
    quantize_activations_shifted,
    quantize_weights,
)


def test_forward_is_linear_of_quantized_input_and_weight():
    torch.manual_seed(0)
    layer = BitLinear(16, 8, QuantConfig(weight_bits=1.58, subln="rmsnorm")).eval()
    x = torch.randn(3, 16)
    x_n = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)  # SubLN (RMSNorm, no affine)
    xq = quantize_activations(x_n, 8, per_token=True).dequantize(1)
    wq = layer.quantized_weight().dequantize(1)
    assert set(layer.quantized_weight().codes.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert torch.allclose(layer(x), F.linear(xq, wq), atol=1e-6)


def test_training_quantizes_activations_per_tensor_and_eval_per_token():
    layer = BitLinear(4, 2, QuantConfig(weight_bits=8, subln="none"))
    x = torch.tensor([[0.01, 0.02, -0.03, 0.04], [1.0, -2.0, 3.0, 4.0]])
    train_out, eval_out = layer.train()(x), layer.eval()(x)
    # The small row keeps its resolution only with a per-token scale.
    assert not torch.allclose(train_out[0], eval_out[0], rtol=1e-3)


def test_ste_gradients_are_those_of_the_quantized_linear():
    torch.manual_seed(0)
    layer = BitLinear(8, 4, QuantConfig(weight_bits=1, subln="none"))
    x = torch.randn(5, 8, requires_grad=True)
    g = torch.randn(5, 4)
    layer(x).backward(g)
    xq = quantize_activations(x.detach(), 8, per_token=False).dequantize(1)
    wq = layer.quantized_weight().dequantize(1)
    assert torch.allclose(x.grad, g @ wq, atol=1e-5)  # through Sign/Round/Clip: identity
    assert torch.allclose(layer.weight.grad, g.T @ xq, atol=1e-5)
    assert layer.weight.dtype == torch.float32  # latent weight stays high precision


@pytest.mark.parametrize("bits, subln, shifted", [(1, "layernorm", False), (1.58, "rmsnorm", True),
                                                  (4, "none", False)])
def test_recomputing_backward_equals_the_autograd_ste_reference(bits, subln, shifted):
    """BitLinearFunction against the textbook STE forward, x + (q(x) - x).detach(), by autograd."""
    torch.manual_seed(0)
    quant = QuantConfig(weight_bits=bits, subln=subln, groups=2)
    layer = BitLinear(16, 8, quant, shifted=shifted)
    x = torch.randn(2, 5, 16, requires_grad=True)
    g = torch.randn(2, 5, 8)
    layer(x).backward(g)

    x2 = x.detach().clone().requires_grad_(True)
    w2 = layer.weight.detach().clone().requires_grad_(True)
    x_n = sub_layer_norm(x2, subln, 2, quant.eps)
    quantize = quantize_activations_shifted if shifted else quantize_activations
    x_q = x_n + (quantize(x_n, 8, 2, per_token=False).dequantize(2) - x_n).detach()
    w_q = w2 + (quantize_weights(w2, bits, 2).dequantize(2) - w2).detach()
    F.linear(x_q, w_q).backward(g)
    assert torch.allclose(x.grad, x2.grad, atol=1e-5)
    assert torch.allclose(layer.weight.grad, w2.grad, atol=1e-5)


def test_training_keeps_only_what_nn_linear_keeps_for_backward():
    def saved_bytes(layer, x):
        total = []
        with torch.autograd.graph.saved_tensors_hooks(
                lambda t: total.append(t.numel() * t.element_size()) or t, lambda t: t):
            layer(x)
        return sum(total)

    x = torch.randn(4, 64, 256, requires_grad=True)
    dense = torch.nn.Linear(256, 128, bias=False)
    bit = BitLinear(256, 128, QuantConfig(weight_bits=1.58, subln="layernorm"))
    assert saved_bytes(bit, x) == saved_bytes(dense, x)


@pytest.mark.parametrize("kind", ["layernorm", "rmsnorm"])
def test_subln_normalises_each_group_without_affine(kind):
    x = torch.randn(3, 8) * torch.tensor([1.0] * 4 + [100.0] * 4)
    y = sub_layer_norm(x, kind, groups=2, eps=1e-5).unflatten(-1, (2, 4))
    if kind == "layernorm":
        assert torch.allclose(y.mean(-1), torch.zeros(3, 2), atol=1e-5)
        assert torch.allclose(y.var(-1, unbiased=False), torch.ones(3, 2), atol=1e-3)
    else:
        assert torch.allclose(y.pow(2).mean(-1), torch.ones(3, 2), atol=1e-3)


def test_unquantized_widths_run_the_same_path():
    torch.manual_seed(0)
    layer = BitLinear(8, 4, QuantConfig(weight_bits=16, activation_bits=16, subln="none"))
    x = torch.randn(2, 8)
    assert torch.allclose(layer(x), F.linear(x, layer.weight))


def test_transformer_quantizes_projections_only():
    model = Transformer(ModelConfig(vocab_size=300, d_model=32, n_heads=4, n_layers=2),
                        quant=QuantConfig(weight_bits=1, shift_ffn_down_input=True))
    bit = {n for n, m in model.named_modules() if isinstance(m, BitLinear)}
    assert len(bit) == 2 * 7
    assert type(model.embed) is torch.nn.Embedding and type(model.lm_head) is torch.nn.Linear
    assert all(m.shifted == n.endswith("w_down") for n, m in model.named_modules() if n in bit)
    logits = model(torch.randint(0, 300, (2, 8)))
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_config_rejects_unknown_bits_and_indivisible_groups():
    from pydantic import ValidationError

    from ringbit.train.config import PretrainConfig

    with pytest.raises(ValidationError, match="weight_bits 3 is not supported"):
        QuantConfig(weight_bits=3)
    with pytest.raises(ValidationError, match="activation_bits"):
        QuantConfig(activation_bits=12)
    with pytest.raises(ValidationError, match="quant.groups"):
        PretrainConfig(model={"d_model": 96, "n_heads": 4}, quant={"groups": 5})
