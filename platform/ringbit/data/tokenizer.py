"""Byte-level BPE (GPT-2 style) trained with the `tokenizers` library: any text round-trips."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

EOS = "<|endoftext|>"


def train_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def load_tokenizer(path: str | Path) -> Tokenizer:
    return Tokenizer.from_file(str(path))


def eos_id(tok: Tokenizer) -> int:
    idx = tok.token_to_id(EOS)
    if idx is None:
        raise ValueError(f"tokenizer has no {EOS} token; train it with ringbit.data.tokenizer")
    return idx


def config_token(tokenizer_config: dict | None, key: str) -> str | None:
    """A special token of a Hugging Face tokenizer_config.json (a string or an AddedToken dict)."""
    value = (tokenizer_config or {}).get(key)
    return value.get("content") if isinstance(value, dict) else value


def read_tokenizer_config(folder: str | Path) -> dict:
    """tokenizer_config.json of a model or data folder ({} when there is none); no torch."""
    import json

    file = Path(folder) / "tokenizer_config.json"
    return json.loads(file.read_text()) if file.is_file() else {}


def document_eos_id(tok: Tokenizer, tokenizer_config: dict | None = None) -> int:
    """The token that ends a document in pretraining data: <|endoftext|> when the vocabulary has
    it (the platform's BPE, SmolLM2, GPT-2 style vocabularies), else the model's eos_token."""
    for token in (EOS, config_token(tokenizer_config, "eos_token")):
        idx = tok.token_to_id(token) if token else None
        if idx is not None:
            return idx
    raise ValueError(f"the tokenizer has neither {EOS} nor an eos_token in its tokenizer_config.json")


def completion_eos(tok: Tokenizer, tokenizer_config: dict | None = None) -> tuple[str, int]:
    """(token, id) that ends a fine-tuning completion: the model's own eos_token (tokenizer_config
    .json; SmolLM2-Instruct: <|im_end|>), so generation stops where the model learned to stop;
    <|endoftext|> for platform-trained models, which have no tokenizer_config."""
    for token in (config_token(tokenizer_config, "eos_token"), EOS):
        idx = tok.token_to_id(token) if token else None
        if idx is not None:
            return token, idx
    raise ValueError(f"the tokenizer has neither the eos_token of its tokenizer_config.json nor {EOS}")
