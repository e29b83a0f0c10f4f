"""Llama-architecture weights from elsewhere -> a ringbit Transformer's config, state dict and
tokenizer: GGUF files (read with the `gguf` package, dequantized tensor by tensor) and Hugging Face
folders (config.json + safetensors + tokenizer.json).

RoPE pairing: ringbit rotates interleaved pairs (2i, 2i+1), as Meta's original Llama code and
llama.cpp do (RoFormer, arXiv:2104.09864, eq. 34). Hugging Face checkpoints rotate halves
(i, i + d/2) and their q/k rows are permuted accordingly; GGUF files were permuted back by
llama.cpp's converter. So GGUF q/k load as they are and HF q/k rows are un-permuted here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ringbit.models.config import ModelConfig
from ringbit.data.tokenizer import config_token


class ModelImportError(ValueError):
    """A source that cannot become a ringbit model; the message says what is wrong and what to do."""


@dataclass
class Imported:
    """What an import produces before anything is written."""

    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    tokenizer_json: str
    tokenizer_config: dict[str, Any]  # Hugging Face style: chat_template, bos/eos/pad tokens
    provenance: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------------------------- weights


def interleave_rope_rows(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """HF rotate-half row order -> interleaved pairs: per head, row 2i takes row i and row 2i+1
    takes row i + d/2 (llama.cpp's convert_hf_to_gguf `permute`)."""
    rows = w.shape[0]
    return w.reshape(n_heads, 2, rows // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def halve_rope_rows(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Inverse of interleave_rope_rows: ringbit order -> Hugging Face order (for export/parity)."""
    rows = w.shape[0]
    return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


_GGUF_BLOCK = {
    "attn_norm": "attn_norm", "attn_q": "attn.wq", "attn_k": "attn.wk", "attn_v": "attn.wv",
    "attn_output": "attn.wo", "ffn_norm": "ffn_norm", "ffn_gate": "ffn.w_gate",
    "ffn_up": "ffn.w_up", "ffn_down": "ffn.w_down",
}
_HF_BLOCK = {
    "input_layernorm": "attn_norm", "self_attn.q_proj": "attn.wq", "self_attn.k_proj": "attn.wk",
    "self_attn.v_proj": "attn.wv", "self_attn.o_proj": "attn.wo",
    "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn.w_gate",
    "mlp.up_proj": "ffn.w_up", "mlp.down_proj": "ffn.w_down",
}


def gguf_tensor_name(name: str) -> str | None:
    """GGUF llama tensor name -> ringbit parameter name (None: not a weight ringbit has)."""
    if name == "token_embd.weight":
        return "embed.weight"
    if name == "output_norm.weight":
        return "norm.weight"
    if name == "output.weight":
        return "lm_head.weight"
    parts = name.split(".")
    if len(parts) == 4 and parts[0] == "blk" and parts[3] == "weight" and parts[2] in _GGUF_BLOCK:
        return f"blocks.{parts[1]}.{_GGUF_BLOCK[parts[2]]}.weight"
    return None


def hf_tensor_name(name: str) -> str | None:
    if name == "model.embed_tokens.weight":
        return "embed.weight"
    if name == "model.norm.weight":
        return "norm.weight"
    if name == "lm_head.weight":
        return "lm_head.weight"
    if name.startswith("model.layers.") and name.endswith(".weight"):
        layer, _, rest = name[len("model.layers."):].partition(".")
        key = rest[: -len(".weight")]
        if key in _HF_BLOCK:
            return f"blocks.{layer}.{_HF_BLOCK[key]}.weight"
    return None


def check_state_dict(cfg: ModelConfig, state: dict[str, torch.Tensor], source: str) -> None:
    """Every parameter of the model present with its shape; refuse anything else by name."""
    from ringbit.models.transformer import Transformer

    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in Transformer(cfg).state_dict().items()}
    if cfg.tie_embeddings:
        expected.pop("lm_head.weight", None)
    missing = sorted(set(expected) - set(state))
    if missing:
        raise ModelImportError(f"{source}: missing weights {', '.join(missing[:4])}"
                               f"{' …' if len(missing) > 4 else ''} (truncated or not a complete model)")
    for k, shape in expected.items():
        if tuple(state[k].shape) != shape:
            raise ModelImportError(f"{source}: weight {k} has shape {tuple(state[k].shape)}, the config "
                                   f"implies {shape}")


# ---------------------------------------------------------------------------------------- GGUF


def _gguf_fields(reader) -> dict[str, Any]:
    out = {}
    for key, f in reader.fields.items():
        try:
            out[key] = f.contents()
        except Exception:  # a field type the reader cannot decode: not one we use
            continue
    return out


def read_gguf(path: str | Path) -> Imported:
    """A llama-architecture GGUF file (any tensor type the gguf package dequantizes)."""
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFReader
    from gguf.quants import dequantize

    path = Path(path)
    try:
        reader = GGUFReader(str(path))
    except Exception as exc:  # the reader raises ValueError/struct errors on truncated files
        raise ModelImportError(f"{path}: not a readable GGUF file ({type(exc).__name__}: {exc}); "
                               "is the download complete?") from None
    meta = _gguf_fields(reader)
    arch = meta.get("general.architecture")
    if arch != "llama":
        raise ModelImportError(f"{path}: GGUF architecture {arch!r} is not supported; ringbit imports "
                               "Llama-architecture models (general.architecture = 'llama')")

    def need(key: str):
        if key not in meta:
            raise ModelImportError(f"{path}: GGUF metadata has no {key!r}")
        return meta[key]

    names = {t.name for t in reader.tensors}
    if "rope_freqs.weight" in names or meta.get("llama.rope.scaling.type") not in (None, "none"):
        raise ModelImportError(f"{path}: RoPE scaling (Llama 3.1 style) is not supported yet")
    d_model, n_heads = int(need("llama.embedding_length")), int(need("llama.attention.head_count"))
    rope_dim = meta.get("llama.rope.dimension_count", d_model // n_heads)
    if d_model % n_heads or rope_dim != d_model // n_heads:
        raise ModelImportError(f"{path}: head dimension {rope_dim} with {n_heads} heads of width "
                               f"{d_model} is not supported (ringbit needs head_dim = d_model / heads, "
                               "RoPE on the whole head)")
    tokens = need("tokenizer.ggml.tokens")
    context = int(need("llama.context_length"))
    try:
        cfg = ModelConfig(
            vocab_size=int(meta.get("llama.vocab_size", len(tokens))), d_model=d_model,
            n_layers=int(need("llama.block_count")), n_heads=n_heads,
            n_kv_heads=int(meta.get("llama.attention.head_count_kv", n_heads)),
            ffn_hidden=int(need("llama.feed_forward_length")), max_seq_len=context,
            rope_theta=float(meta.get("llama.rope.freq_base", 10000.0)),
            norm_eps=float(need("llama.attention.layer_norm_rms_epsilon")),
            tie_embeddings="output.weight" not in names,
        )
    except ValueError as exc:
        raise ModelImportError(f"{path}: its hyperparameters do not fit a ringbit model: {exc}") from None

    state: dict[str, torch.Tensor] = {}
    for t in reader.tensors:
        target = gguf_tensor_name(t.name)
        if target is None:
            continue
        try:
            if t.tensor_type in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
                array = np.asarray(t.data, dtype=np.float32)
            else:
                array = dequantize(t.data, t.tensor_type)
        except (NotImplementedError, ValueError) as exc:
            raise ModelImportError(f"{path}: tensor {t.name} of type {t.tensor_type.name} cannot be "
                                   f"dequantized: {exc}") from None
        # GGUF lists dimensions innermost first; the data is already row-major [out, in].
        shape = tuple(int(x) for x in reversed(t.shape.tolist()))
        array = np.asarray(array, dtype=np.float32)
        if not array.flags.writeable:  # an F32 tensor is a view of the read-only memmap
            array = array.copy()
        state[target] = torch.from_numpy(array.reshape(shape))
    check_state_dict(cfg, state, str(path))

    tokenizer_json, tok_cfg = gguf_tokenizer(meta, path)
    tok_cfg["model_max_length"] = context
    provenance = {
        "source.format": "gguf", "source.file": path.name,
        "source.name": str(meta.get("general.name", "")),
        "source.organization": str(meta.get("general.organization", "")),
        "source.quantization": ",".join(sorted({t.tensor_type.name for t in reader.tensors})),
        "license": str(meta.get("general.license", "unknown")),
    }
    return Imported(cfg, state, tokenizer_json, tok_cfg, provenance)


# llama.cpp's pre-tokenizer types (tokenizer.ggml.pre) as `tokenizers` pre-tokenizers.
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def _pre_tokenizer(kind: str, path: Path):
    from tokenizers import Regex, pre_tokenizers

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if kind in ("default", "gpt2", "gpt-2"):
        return byte_level
    if kind in ("smollm", "starcoder", "refact"):  # digits one by one, then GPT-2's regex
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    if kind in ("llama-bpe", "llama3"):
        return pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(_LLAMA3_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    raise ModelImportError(f"{path}: GGUF pre-tokenizer {kind!r} is not supported (smollm, gpt2, "
                           "llama-bpe are); import the model's Hugging Face folder instead")


def gguf_tokenizer(meta: dict[str, Any], path: Path) -> tuple[str, dict[str, Any]]:
    """A byte-level BPE `tokenizers` Tokenizer from the GGUF vocabulary, merges and token types,
    plus its Hugging Face tokenizer_config (chat template, special tokens)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models

    kind = meta.get("tokenizer.ggml.model")
    if kind is None:
        raise ModelImportError(f"{path}: the GGUF file has no tokenizer (tokenizer.ggml.model missing); "
                               "import the model's Hugging Face folder instead")
    if kind != "gpt2":
        raise ModelImportError(f"{path}: GGUF tokenizer model {kind!r} is not supported (byte-level "
                               "BPE 'gpt2' is); import the model's Hugging Face folder instead")
    tokens: list[str] = list(meta["tokenizer.ggml.tokens"])
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges", [])]
    types = list(meta.get("tokenizer.ggml.token_type", [1] * len(tokens)))
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges,
                               fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = _pre_tokenizer(str(meta.get("tokenizer.ggml.pre", "default")), path)
    tok.decoder = decoders.ByteLevel()
    # llama.cpp token types: 3 = control (special), 4 = user-defined (added, not special).
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types) if ty == 3])
    tok.add_tokens([AddedToken(t, special=False, normalized=False)
                    for t, ty in zip(tokens, types) if ty == 4])

    def token(key: str) -> str | None:
        idx = meta.get(f"tokenizer.ggml.{key}_token_id")
        return tokens[int(idx)] if idx is not None and 0 <= int(idx) < len(tokens) else None

    tok_cfg: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False,
        "add_bos_token": bool(meta.get("tokenizer.ggml.add_bos_token", False)),
        "bos_token": token("bos"), "eos_token": token("eos"), "pad_token": token("padding"),
        "unk_token": token("unknown"),
    }
    if meta.get("tokenizer.chat_template"):
        tok_cfg["chat_template"] = str(meta["tokenizer.chat_template"])
    return tok.to_str(), tok_cfg


# ---------------------------------------------------------------------------------- HF folders


def read_hf_folder(path: str | Path) -> Imported:
    """A local Hugging Face Llama-architecture folder: config.json, *.safetensors, tokenizer.json."""
    from safetensors import safe_open

    path = Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise ModelImportError(f"{path}: no config.json; a Hugging Face model folder has config.json, "
                               "model.safetensors and tokenizer.json")
    hf = json.loads(cfg_file.read_text())
    if hf.get("model_type") != "llama":
        raise ModelImportError(f"{path}: model_type {hf.get('model_type')!r} is not supported; ringbit "
                               "imports Llama-architecture models (model_type 'llama')")
    # transformers 5 writes rope_parameters {rope_theta, rope_type}; 4.x rope_theta (+ rope_scaling).
    rope = hf.get("rope_parameters") or {"rope_theta": hf.get("rope_theta", 10000.0),
                                         **(hf.get("rope_scaling") or {})}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise ModelImportError(f"{path}: RoPE scaling {rope.get('rope_type') or rope.get('type')!r} is not "
                               "supported yet (only plain RoPE)")
    if hf.get("attention_bias") or hf.get("mlp_bias"):
        raise ModelImportError(f"{path}: attention_bias / mlp_bias are not supported (Llama has none)")
    if hf.get("hidden_act", "silu") != "silu":
        raise ModelImportError(f"{path}: hidden_act {hf.get('hidden_act')!r}: ringbit's SwiGLU uses silu")
    d_model, n_heads = int(hf["hidden_size"]), int(hf["num_attention_heads"])
    if hf.get("head_dim") not in (None, d_model // n_heads):
        raise ModelImportError(f"{path}: head_dim {hf['head_dim']} != hidden_size / num_attention_heads")
    try:
        cfg = ModelConfig(
            vocab_size=int(hf["vocab_size"]), d_model=d_model, n_layers=int(hf["num_hidden_layers"]),
            n_heads=n_heads, n_kv_heads=int(hf.get("num_key_value_heads") or n_heads),
            ffn_hidden=int(hf["intermediate_size"]), max_seq_len=int(hf.get("max_position_embeddings", 2048)),
            rope_theta=float(rope.get("rope_theta", 10000.0)), norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        )
    except (KeyError, ValueError) as exc:
        raise ModelImportError(f"{path}/config.json: does not describe a ringbit-compatible model: {exc}") from None
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise ModelImportError(f"{path}: no *.safetensors weights (PyTorch .bin files are not read: "
                               "they are pickles; convert them with safetensors first)")
    tok_file = path / "tokenizer.json"
    if not tok_file.is_file():
        raise ModelImportError(f"{path}: no tokenizer.json (the fast tokenizer file); save the tokenizer "
                               "with tokenizer.save_pretrained(folder) and import again")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as st:
                for key in st.keys():
                    target = hf_tensor_name(key)
                    if target is not None:
                        state[target] = st.get_tensor(key).float()
        except Exception as exc:
            raise ModelImportError(f"{f}: unreadable safetensors file ({type(exc).__name__}: {exc})") from None
    for name, w in list(state.items()):
        if name.endswith("attn.wq.weight"):
            state[name] = interleave_rope_rows(w, cfg.n_heads)
        elif name.endswith("attn.wk.weight"):
            state[name] = interleave_rope_rows(w, cfg.kv_heads)
    if cfg.tie_embeddings:
        state.pop("lm_head.weight", None)
    check_state_dict(cfg, state, str(path))

    tok_cfg: dict[str, Any] = {}
    if (path / "tokenizer_config.json").is_file():
        raw = json.loads((path / "tokenizer_config.json").read_text())
        keep = ("chat_template", "bos_token", "eos_token", "pad_token", "unk_token", "add_bos_token",
                "clean_up_tokenization_spaces", "tokenizer_class")
        tok_cfg = {k: config_token(raw, k) for k in keep if k in raw}
    if (path / "chat_template.jinja").is_file():
        tok_cfg["chat_template"] = (path / "chat_template.jinja").read_text()
    tok_cfg.setdefault("tokenizer_class", "PreTrainedTokenizerFast")
    tok_cfg["model_max_length"] = cfg.max_seq_len
    provenance = {"source.format": "huggingface", "source.file": path.name,
                  "source.name": str(hf.get("_name_or_path", path.name)),
                  "license": _hf_license(path)}
    return Imported(cfg, state, tok_file.read_text(), tok_cfg, provenance)


def _hf_license(path: Path) -> str:
    readme = path / "README.md"
    if readme.is_file():
        for line in readme.read_text(errors="replace").splitlines()[:30]:
            if line.strip().startswith("license:"):
                return line.split(":", 1)[1].strip()
    return "unknown"


# -------------------------------------------------------------------------------------- output


def write_imported(imported: Imported, out: str | Path) -> Path:
    """The ringbit model folder (config.json, model.safetensors, tokenizer.json,
    tokenizer_config.json) for an import. The Transformer is built on the meta device (no random
    init, no second copy of the weights) and takes the imported tensors as its parameters."""
    from ringbit.models.io import write_model_dir
    from ringbit.models.transformer import Transformer

    cfg = imported.config
    with torch.device("meta"):
        model = Transformer(cfg)
    model.load_state_dict(imported.state_dict, strict=not cfg.tie_embeddings, assign=True)
    if cfg.tie_embeddings:
        model.lm_head.weight = model.embed.weight  # assign=True replaced the tied Parameter
    left = [n for n, p in model.named_parameters() if p.is_meta]
    if left:
        raise ModelImportError(f"weights missing after conversion: {', '.join(left[:4])}")
    return write_model_dir(out, model, imported.tokenizer_json, tokenizer_config=imported.tokenizer_config)


def read_source(path: str | Path) -> Imported:
    """A .gguf file or a Hugging Face folder, by what is on disk."""
    path = Path(path).expanduser()
    if path.is_dir():
        return read_hf_folder(path)
    if path.is_file():
        return read_gguf(path)
    raise ModelImportError(f"{path}: no such file or folder")
