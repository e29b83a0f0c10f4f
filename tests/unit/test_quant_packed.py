"""Packed inference equals the fake-quant training forward; export writes a model folder that
loads, generates and keeps its perplexity."""

from __future__ import annotations

import copy

import pytest
import torch

from ringbit.models.config import ModelConfig
from ringbit.quant.config import QuantConfig
from ringbit.models import Transformer
import torch.nn.functional as F

from ringbit.quant.bitlinear import BitLinear, sub_layer_norm
from ringbit.quant.export import pack_model, size_report
from ringbit.quant.packed import PackedBitLinear
from ringbit.quant.quantizers import quantize_activations, quantize_activations_shifted

SMALL = ModelConfig(vocab_size=300, d_model=64, n_layers=2, n_heads=4, max_seq_len=32)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("bits, fmt", [(1, "b1"), (1.58, "i2"), (1.58, "t3"), (2, "i2"),
                                       (4, "i4"), (8, "i8")])
@pytest.mark.parametrize("groups, shifted", [(1, False), (2, True)])
def test_packed_layer_equals_fake_quant_forward(bits, fmt, groups, shifted):
    torch.manual_seed(0)
    quant = QuantConfig(weight_bits=bits, groups=groups, subln="layernorm")
    layer = BitLinear(80, 24, quant, shifted=shifted).eval()
    packed = PackedBitLinear.from_bitlinear(layer, fmt)
    x = torch.randn(3, 7, 80) * 3
    xq = quantize_activations(sub_layer_norm(x, "layernorm", groups, 1e-5), 8, groups,
                              per_token=True)
    if shifted:
        xq = quantize_activations_shifted(sub_layer_norm(x, "layernorm", groups, 1e-5), 8, groups)
    fake_quant = F.linear(xq.dequantize(groups), layer.quantized_weight().dequantize(groups))
    with torch.no_grad():
        assert rel_err(packed(x), fake_quant) <= 1e-5  # the training forward's formula
        assert torch.equal(packed(x), layer(x))  # eval runs the same integer arithmetic
    # Only packed bytes and one scale per group: no full-precision copy of the weight.
    floats = [t for t in packed.state_dict().values() if t.is_floating_point()]
    assert sum(t.numel() for t in floats) == groups
    assert packed.packed.dtype == torch.uint8


@pytest.mark.parametrize("bits", [1, 1.58])
def test_packed_model_matches_and_generates(bits):
    torch.manual_seed(0)
    model = Transformer(SMALL, quant=QuantConfig(weight_bits=bits)).eval()
    packed = pack_model(copy.deepcopy(model))
    assert not any(isinstance(m, BitLinear) for m in packed.modules())
    ids = torch.randint(0, 300, (2, 20))
    with torch.no_grad():
        assert torch.equal(packed(ids), model(ids))
    assert torch.equal(packed.generate(ids[:1, :4], 6), model.generate(ids[:1, :4], 6))


def test_size_report_counts_embeddings_once_and_meets_the_ratios():
    model = Transformer(SMALL.model_copy(update={"d_model": 256, "n_heads": 4}),
                        quant=QuantConfig(weight_bits=1)).eval()
    r1 = size_report(model, pack_model(copy.deepcopy(model)))
    assert r1["linear_ratio"] >= 14
    model.quant = QuantConfig(weight_bits=1.58)
    for m in model.modules():
        if isinstance(m, BitLinear):
            m.quant = model.quant
    r158 = size_report(model, pack_model(copy.deepcopy(model)))
    assert r158["linear_ratio"] >= 7.5
    # The tied embedding is 300 x 256 and stays in high precision: counted once.
    assert r1["other_bf16_bytes"] < 2 * (300 * 256 + 10 * 256) * 2
    assert 1 < r1["checkpoint_ratio"] < r1["linear_ratio"]


def test_export_folder_round_trip(tmp_path):
    from ringbit.data.tokenizer import train_tokenizer
    from ringbit.models.io import load_model_dir, save_model_dir
    from ringbit.quant.export import export_packed
    from ringbit.train.perplexity import nll_sums, perplexity

    torch.manual_seed(0)
    quant = QuantConfig(weight_bits=1.58, shift_ffn_down_input=True)
    model = Transformer(SMALL, quant=quant)
    tok = train_tokenizer(["the quick brown fox jumps over the lazy dog"] * 50, 300)
    save_model_dir(tmp_path / "fp", SMALL, model.state_dict(), tok.to_str(), quant=quant)
    report = export_packed(tmp_path / "fp", tmp_path / "packed", ternary_format="t3")
    assert report["format"] == "t3" and report["linear_ratio"] > 9
    unpacked, _ = load_model_dir(tmp_path / "fp")
    packed, tok2 = load_model_dir(tmp_path / "packed")
    assert any(isinstance(m, PackedBitLinear) for m in packed.modules())
    rows = torch.randint(0, 300, (4, 33))
    ppl_u = perplexity(*nll_sums(unpacked, [rows]))[1]
    ppl_p = perplexity(*nll_sums(packed, [rows]))[1]
    assert ppl_p == pytest.approx(ppl_u, rel=1e-4)
    assert tok2.to_str() == tok.to_str()
