"""Trained BitLinear checkpoint -> packed model folder (safetensors), plus size accounting."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ringbit.quant.bitlinear import BitLinear
from ringbit.quant.packed import PackedBitLinear
from ringbit.quant.packing import format_for

HIGH_PRECISION = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def pack_model(model: nn.Module, ternary_format: str = "i2") -> nn.Module:
    """Replace every BitLinear in `model` (in place) by its packed equivalent."""
    quant = getattr(model, "quant", None)
    if quant is None or not any(isinstance(m, BitLinear) for m in model.modules()):
        raise ValueError("this model has no BitLinear layers to pack (it was trained without a "
                         "quant section, or it is packed already)")
    fmt = format_for(quant.weight_bits, ternary_format).name
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, BitLinear):
                setattr(module, child_name, PackedBitLinear.from_bitlinear(child, fmt))
    return model


def tensor_bytes(tensors: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


def size_report(unpacked: nn.Module, packed: nn.Module) -> dict[str, Any]:
    """Bytes of the projections packed vs bf16, and of the whole checkpoint (embeddings, norms
    and LM head included: they are what low-bit memory figures often leave out)."""

    def split(model: nn.Module, linear_types: tuple[type, ...]) -> tuple[dict, dict]:
        linear, rest, seen = {}, {}, set()
        linear_names = {n for n, m in model.named_modules() if isinstance(m, linear_types)}
        for name, t in model.state_dict().items():
            if t.data_ptr() in seen and t.numel():  # tied embedding / LM head counted once
                continue
            seen.add(t.data_ptr())
            (linear if name.rsplit(".", 1)[0] in linear_names else rest)[name] = t
        return linear, rest

    lin_u, rest_u = split(unpacked, (BitLinear,))
    lin_p, rest_p = split(packed, (PackedBitLinear,))
    bf16 = lambda d: sum(t.numel() * 2 for t in d.values())  # noqa: E731
    report = {
        "linear_bf16_bytes": bf16(lin_u),
        "linear_packed_bytes": tensor_bytes(lin_p),
        "other_bf16_bytes": bf16(rest_u),
        "other_packed_bytes": tensor_bytes(rest_p),
    }
    report["linear_ratio"] = report["linear_bf16_bytes"] / report["linear_packed_bytes"]
    report["checkpoint_bf16_bytes"] = report["linear_bf16_bytes"] + report["other_bf16_bytes"]
    report["checkpoint_packed_bytes"] = report["linear_packed_bytes"] + report["other_packed_bytes"]
    report["checkpoint_ratio"] = report["checkpoint_bf16_bytes"] / report["checkpoint_packed_bytes"]
    return report


def export_packed(
    src: str | Path, out: str | Path, ternary_format: str = "i2", high_precision: str = "float32"
) -> dict[str, Any]:
    """Read a BitLinear model folder, write the packed folder; return the size report."""
    from ringbit.models.io import TOKENIZER, load_model_dir, read_prompt_format, read_tokenizer_config, write_model_dir

    if high_precision not in HIGH_PRECISION:
        raise ValueError(f"high_precision {high_precision!r}: choose one of {sorted(HIGH_PRECISION)}")
    reference, _ = load_model_dir(src)
    model = pack_model(copy.deepcopy(reference), ternary_format)  # one read of the checkpoint
    dtype = HIGH_PRECISION[high_precision]
    for p in model.parameters():  # embeddings, norms, LM head
        p.data = p.data.to(dtype)
    fmt = format_for(model.quant.weight_bits, ternary_format).name
    write_model_dir(out, model, (Path(src) / TOKENIZER).read_text(),
                    packing={"format": fmt, "high_precision": high_precision},
                    tokenizer_config=read_tokenizer_config(src),  # chat template, eos
                    prompt_format=read_prompt_format(src))
    report = size_report(reference, model)
    report.update(format=fmt, weight_bits=model.quant.weight_bits,
                  files_bytes=sum(f.stat().st_size for f in Path(out).iterdir()))
    return report
