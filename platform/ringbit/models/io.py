"""A trained model on disk: config.json + model.safetensors + tokenizer.json, nothing pickled."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

from ringbit.config import ModelConfig
from ringbit.models.transformer import Transformer

CONFIG, WEIGHTS, TOKENIZER = "config.json", "model.safetensors", "tokenizer.json"


def save_model_dir(
    out: str | Path, cfg: ModelConfig, state_dict: dict[str, torch.Tensor], tokenizer_json: str
) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = Transformer(cfg)
    model.load_state_dict(state_dict)
    save_model(model, str(out / WEIGHTS))  # handles the tied embedding/LM-head weight
    (out / CONFIG).write_text(json.dumps(cfg.model_dump(mode="json"), indent=2))
    (out / TOKENIZER).write_text(tokenizer_json)
    return out


def load_model_dir(path: str | Path, device: str = "cpu"):
    """(Transformer in eval mode, tokenizers.Tokenizer) from a model folder."""
    from tokenizers import Tokenizer

    path = Path(path)
    missing = [f for f in (CONFIG, WEIGHTS, TOKENIZER) if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} is not a ringbit model folder (missing {', '.join(missing)})")
    cfg = ModelConfig.model_validate(json.loads((path / CONFIG).read_text()))
    model = Transformer(cfg)
    load_model(model, str(path / WEIGHTS), device=device)
    return model.to(device).eval(), Tokenizer.from_file(str(path / TOKENIZER))
