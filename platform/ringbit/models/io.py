"""A trained model on disk: config.json + model.safetensors + tokenizer.json, nothing pickled.

config.json is {"model": ModelConfig, "quant": QuantConfig | null, "packing": {...} | null}
and, for a model fine-tuned on bare prompts, "prompt_format": "plain" (see read_prompt_format);
a packed BitNet export (ringbit.quant.export) has packed uint8 weights in model.safetensors and
its format under "packing". A bare ModelConfig dict (the first layout) still loads.

Imported models (ringbit.models.convert) also carry tokenizer_config.json in Hugging Face's format
(chat_template, bos/eos/pad tokens), so the folder's tokenizer also loads with transformers'
AutoTokenizer; models trained from them (fine-tunes, BitNet exports) keep it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_model

from ringbit.models.config import ModelConfig
from ringbit.quant.config import QuantConfig
from ringbit.data.tokenizer import EOS, read_tokenizer_config  # noqa: F401 (re-exported: model folders have one)
from ringbit.models.linear import get_linear_factory
from ringbit.models.transformer import Transformer

CONFIG, WEIGHTS, TOKENIZER = "config.json", "model.safetensors", "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"


def write_model_dir(
    out: str | Path, model: Transformer, tokenizer_json: str, packing: dict[str, Any] | None = None,
    tokenizer_config: dict[str, Any] | None = None, prompt_format: str | None = None,
) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_model(model, str(out / WEIGHTS))  # handles the tied embedding/LM-head weight
    meta = {"model": model.cfg.model_dump(mode="json"),
            "quant": model.quant.model_dump(mode="json") if model.quant else None,
            "packing": packing}
    if prompt_format:
        meta["prompt_format"] = prompt_format
    (out / CONFIG).write_text(json.dumps(meta, indent=2))
    (out / TOKENIZER).write_text(tokenizer_json)
    if tokenizer_config:
        (out / TOKENIZER_CONFIG).write_text(json.dumps(tokenizer_config, indent=2))
    return out


def save_model_dir(
    out: str | Path,
    cfg: ModelConfig,
    state_dict: dict[str, torch.Tensor],
    tokenizer_json: str,
    quant: QuantConfig | None = None,
    tokenizer_config: dict[str, Any] | None = None,
    prompt_format: str | None = None,
) -> Path:
    model = Transformer(cfg, quant=quant)
    model.load_state_dict(state_dict)
    return write_model_dir(out, model, tokenizer_json, tokenizer_config=tokenizer_config,
                           prompt_format=prompt_format)


def stop_token_ids(tokenizer, tokenizer_config: dict[str, Any]) -> set[int]:
    """Ids that end a generation: the model's eos token (SmolLM2-Instruct: <|im_end|>) and the
    end-of-text token, whichever the vocabulary has."""
    ids = {tokenizer.token_to_id(t) for t in (tokenizer_config.get("eos_token"), EOS) if t}
    ids.discard(None)
    if not ids:
        raise ValueError(f"the tokenizer has neither an eos_token nor {EOS}")
    return ids


def render_chat(tokenizer_config: dict[str, Any], messages: list[dict[str, str]]) -> str | None:
    """The prompt for `messages` through the model's own chat template (Jinja, rendered as
    transformers' apply_chat_template does, with the generation prompt); None without a template."""
    template = tokenizer_config.get("chat_template")
    if not template:
        return None
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str):
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(
        messages=messages, add_generation_prompt=True, bos_token=tokenizer_config.get("bos_token") or "",
        eos_token=tokenizer_config.get("eos_token") or "")


def read_model_meta(path: str | Path) -> tuple[ModelConfig, QuantConfig | None, dict | None]:
    meta = json.loads((Path(path) / CONFIG).read_text())
    if "model" not in meta:  # first layout: the ModelConfig itself
        return ModelConfig.model_validate(meta), None, None
    quant = QuantConfig.model_validate(meta["quant"]) if meta.get("quant") else None
    return ModelConfig.model_validate(meta["model"]), quant, meta.get("packing")


PROMPT_FORMATS = ("chat", "plain")


def read_prompt_format(path: str | Path) -> str:
    """How the model in the folder expects its prompts: "chat" (through its chat template, as an
    instruct model) or "plain" (bare text). A fine-tune on bare prompts keeps its base model's
    chat template but answers bare prompts (ringbit.train.sft records "plain"), so the template
    alone cannot tell; without the record: "chat" when the folder has a template."""
    meta = json.loads((Path(path) / CONFIG).read_text())
    recorded = meta.get("prompt_format") if isinstance(meta, dict) else None
    if recorded in PROMPT_FORMATS:
        return recorded
    return "chat" if read_tokenizer_config(path).get("chat_template") else "plain"


def load_weights(model: torch.nn.Module, file: str | Path) -> None:
    """Copy a model.safetensors into `model`, one tensor at a time (safetensors.torch.load_model
    reads the whole file first: a second copy of a 135M-parameter model, +0.5 GB peak). Strict:
    every tensor must match a parameter/buffer in name and shape, and every parameter/buffer
    must be in the file unless it is tied to one that is (save_model keeps one name per tensor).
    Raises ValueError naming what does not fit."""
    from safetensors import safe_open

    file = Path(file)
    state = model.state_dict()
    with safe_open(str(file), "pt") as f:
        names = set(f.keys())
        unexpected = sorted(names - set(state))
        shapes = {n: tuple(f.get_slice(n).get_shape()) for n in names if n in state}
        wrong = [f"{n} {shapes[n]} vs {tuple(state[n].shape)}" for n in sorted(shapes) if shapes[n] != tuple(state[n].shape)]
        loaded = {state[n].data_ptr() for n in names if n in state}
        missing = sorted(n for n, t in state.items() if n not in names and t.data_ptr() not in loaded)
        if unexpected or missing or wrong:
            raise ValueError(f"{file} ({len(names)} tensors) does not fit the model: missing "
                             f"{', '.join(missing[:4]) or 'nothing'}, unexpected {', '.join(unexpected[:4]) or 'nothing'}"
                             + (f", wrong shape {'; '.join(wrong[:3])}" if wrong else ""))
    # One short-lived mapping per tensor: the pages of a mapped file count in this process's RSS
    # for as long as the mapping is open, so reading all tensors through one open file holds a
    # whole second copy (+0.5 GB for SmolLM2) resident until the end.
    with torch.no_grad():
        for n in names:
            with safe_open(str(file), "pt") as f:
                state[n].copy_(f.get_tensor(n))


def load_model_dir(path: str | Path, device: str = "cpu"):
    """(Transformer in eval mode, tokenizers.Tokenizer) from a model folder, packed or not."""
    from tokenizers import Tokenizer

    path = Path(path)
    missing = [f for f in (CONFIG, WEIGHTS, TOKENIZER) if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} is not a ringbit model folder (missing {', '.join(missing)})")
    cfg, quant, packing = read_model_meta(path)
    linear = get_linear_factory(cfg.linear, quant, packing["format"] if packing else None)
    model = Transformer(cfg, linear=linear, quant=quant)
    load_weights(model, path / WEIGHTS)
    return model.to(device).eval(), Tokenizer.from_file(str(path / TOKENIZER))
