"""Language models behind the serving API: the platform's own model folders (FP, BitLinear or
packed BitNet, from a path or the MLflow registry) and local Hugging Face causal-LM folders
(transformers, offline). One small interface, so the service knows nothing of either."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch


@dataclass
class Generation:
    tokens: list[int]
    text: str
    finish_reason: str  # "stop" (a stop id or stop string) or "length"


class LanguageModel(Protocol):
    name: str
    max_context: int
    has_chat_template: bool  # chat prompts come from the model's own template (else a transcript)
    prompt_format: str  # "chat": the model answers through its template; "plain": bare prompts (fine-tunes)

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def chat_prompt(self, messages: list[dict[str, str]]) -> str: ...

    def generate(self, prompts: list[list[int]], max_new_tokens: int, temperature: float,
                 top_p: float, seed: int | None, stop: list[str]) -> list[Generation]: ...


def apply_stop_strings(text: str, stop: list[str]) -> tuple[str, bool]:
    """Cut `text` at the first stop string (OpenAI semantics: the stop string is not returned)."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def _plain_chat_prompt(messages: list[dict[str, str]]) -> str:
    """A plain transcript for models trained without a chat template."""
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n".join(lines) + "\nAssistant:"


class RingbitLM:
    """A ringbit model folder: batched KV-cache generation (ringbit.models.generate).

    Imported chat models (tokenizer_config.json with a chat_template, e.g. SmolLM2-Instruct) are
    prompted through their own template and stop at their eos token (<|im_end|>) as well as at
    <|endoftext|>; platform-trained models have neither and get the plain transcript."""

    def __init__(self, path: Path, name: str) -> None:
        from ringbit.models.io import load_model_dir, read_prompt_format, read_tokenizer_config, stop_token_ids

        self.model, self.tokenizer = load_model_dir(path)
        self.name, self.max_context = name, self.model.cfg.max_seq_len
        self.tokenizer_config = read_tokenizer_config(path)
        self.stop_ids = stop_token_ids(self.tokenizer, self.tokenizer_config)
        self.has_chat_template = bool(self.tokenizer_config.get("chat_template"))
        self.prompt_format = read_prompt_format(path)

    def encode(self, text: str) -> list[int]:
        # Special tokens written in the text (the template's <|im_start|>) become their own ids.
        return self.tokenizer.encode(text).ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode([i for i in ids if i not in self.stop_ids], skip_special_tokens=True)

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        from ringbit.models.io import render_chat

        rendered = render_chat(self.tokenizer_config, messages)
        return _plain_chat_prompt(messages) if rendered is None else rendered

    def generate(self, prompts, max_new_tokens, temperature, top_p, seed, stop):
        from ringbit.models.generate import generate

        outs = generate(self.model, prompts, max_new_tokens, temperature=temperature, top_p=top_p,
                        stop_ids=self.stop_ids, seed=seed)
        results = []
        for ids in outs:
            hit_eos = bool(ids) and ids[-1] in self.stop_ids
            text, hit_stop = apply_stop_strings(self.decode(ids), stop)
            results.append(Generation(ids, text, "stop" if hit_eos or hit_stop else "length"))
        return results


class HuggingFaceLM:
    """A local transformers causal-LM folder (e.g. the InstructScore LLaMA weights), offline."""

    def __init__(self, path: Path, name: str) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.tokenizer.padding_side = "left"  # batched generation: prompts end at the same column
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()
        self.name = name
        self.max_context = int(getattr(self.model.config, "max_position_embeddings", 2048))
        self.has_chat_template = bool(getattr(self.tokenizer, "chat_template", None))
        self.prompt_format = "chat" if self.has_chat_template else "plain"

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text)["input_ids"]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        if self.has_chat_template:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return _plain_chat_prompt(messages)

    @torch.no_grad()
    def generate(self, prompts, max_new_tokens, temperature, top_p, seed, stop):
        width = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        if seed is not None:
            torch.manual_seed(seed)
        sampling = temperature > 0
        out = self.model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=sampling,
            temperature=temperature if sampling else None, top_p=top_p if sampling else None,
            pad_token_id=pad, eos_token_id=self.tokenizer.eos_token_id,
        )
        results = []
        for row in out[:, width:].tolist():
            eos = self.tokenizer.eos_token_id
            new = row[: row.index(eos) + 1] if eos in row else row
            text, hit_stop = apply_stop_strings(self.tokenizer.decode(new, skip_special_tokens=True), stop)
            results.append(Generation(new, text, "stop" if (eos in row or hit_stop) else "length"))
        return results


def load_language_model(ref: str, name: str | None = None, tracking_uri: str | None = None) -> LanguageModel:
    """A model folder, MLflow run id, runs:/ or models:/name@alias (ringbit models) or a local
    Hugging Face folder (config.json with a `model_type`)."""
    from ringbit.tracking import resolve_model_ref

    path = resolve_model_ref(ref, tracking_uri)
    meta = json.loads((path / "config.json").read_text()) if (path / "config.json").is_file() else {}
    label = name or ref
    if "model_type" in meta:
        return HuggingFaceLM(path, label)
    return RingbitLM(path, label)
