"""The OpenAI-compatible wire format: request models (validated, with field-named errors) and
response/stream-chunk builders. No Serve and no model here."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Bounds on what one request may ask for (checked before any tokenization): the largest context
# served is 8192 tokens, a few characters each, so longer text can only be refused later anyway.
MAX_PROMPT_CHARS = 100_000
MAX_STOP_CHARS = 64
MAX_MESSAGES = 256
MAX_SEED = 2**63 - 1  # torch.manual_seed's range


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields we do not use

    model: str | None = Field(None, description="Ignored beyond a check: one model per endpoint.")
    max_tokens: int = Field(16, ge=1, le=4096, description="New tokens at most.")
    temperature: float = Field(1.0, ge=0, le=2, description="0 = greedy.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass.")
    n: int = Field(1, ge=1, le=1, description="Only n = 1 is served.")
    stream: bool = Field(False, description="Server-sent events, OpenAI chunk format.")
    stop: str | list[str] | None = Field(None, description="Up to 4 stop strings (not returned).")
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="Makes sampling reproducible (0 to 2**63-1).")

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, v):
        stops = [v] if isinstance(v, str) else (v or [])
        if len(stops) > 4:
            raise ValueError("at most 4 stop strings")
        if any(not s or len(s) > MAX_STOP_CHARS for s in stops):
            raise ValueError(f"each stop string must have 1 to {MAX_STOP_CHARS} characters")
        return v

    @property
    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class CompletionRequest(_Request):
    prompt: str | list[str] = Field(description="A prompt or a list of prompts.")

    @field_validator("prompt")
    @classmethod
    def _non_empty(cls, v):
        prompts = [v] if isinstance(v, str) else v
        if not prompts or any(not p for p in prompts):
            raise ValueError("prompt must be a non-empty string or a non-empty list of them")
        if len(prompts) > 32:
            raise ValueError("at most 32 prompts per request")
        if any(len(p) > MAX_PROMPT_CHARS for p in prompts):
            raise ValueError(f"a prompt has at most {MAX_PROMPT_CHARS:,} characters")
        return v

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)


class ChatCompletionRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES,
                                        description="The conversation so far.")

    @field_validator("messages")
    @classmethod
    def _total_length(cls, v):
        if sum(len(m.content) for m in v) > MAX_PROMPT_CHARS:
            raise ValueError(f"the messages have at most {MAX_PROMPT_CHARS:,} characters in all")
        return v


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion_response(model: str, choices: list[tuple[str, str]], prompt_tokens: int,
                        completion_tokens: int) -> dict[str, Any]:
    return {"id": _id("cmpl"), "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": [{"index": i, "text": text, "logprobs": None, "finish_reason": reason}
                        for i, (text, reason) in enumerate(choices)],
            "usage": usage(prompt_tokens, completion_tokens)}


def chat_response(model: str, text: str, reason: str, prompt_tokens: int,
                  completion_tokens: int) -> dict[str, Any]:
    return {"id": _id("chatcmpl"), "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": reason}],
            "usage": usage(prompt_tokens, completion_tokens)}


def sse(obj: dict[str, Any] | str) -> str:
    return f"data: {obj if isinstance(obj, str) else json.dumps(obj)}\n\n"


def completion_stream(model: str, pieces: list[str], reason: str):
    """Server-sent events of a completion: one chunk per piece, the finish reason, [DONE]."""
    cid, created = _id("cmpl"), int(time.time())
    for piece in pieces:
        yield sse({"id": cid, "object": "text_completion", "created": created, "model": model,
                   "choices": [{"index": 0, "text": piece, "logprobs": None, "finish_reason": None}]})
    yield sse({"id": cid, "object": "text_completion", "created": created, "model": model,
               "choices": [{"index": 0, "text": "", "logprobs": None, "finish_reason": reason}]})
    yield sse("[DONE]")


def chat_stream(model: str, pieces: list[str], reason: str):
    cid, created = _id("chatcmpl"), int(time.time())

    def chunk(delta: dict, finish: str | None) -> str:
        return sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    yield chunk({"role": "assistant"}, None)
    for piece in pieces:
        yield chunk({"content": piece}, None)
    yield chunk({}, reason)
    yield sse("[DONE]")


def error_body(message: str, param: str | None, code: str = "invalid_request_error") -> dict[str, Any]:
    """OpenAI's error shape; `param` names the offending field."""
    return {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
