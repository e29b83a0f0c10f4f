"""The one LLM interface every agent uses: text in, text out, with a stop list; it counts calls,
tokens and seconds so runs can report them. Backed by any OpenAI-compatible endpoint."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from ringbit.llm.client import LLMClient


@dataclass
class LLMUsage:
    """What a run spent on the LLM (summed over calls)."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"llm_calls": self.calls, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "llm_seconds": round(self.seconds, 4)}


@dataclass
class AgentLLM:
    """`llm(prompt, stop=[...], max_tokens=N) -> str`.

    api="completions" sends the prompt as-is to /v1/completions (the platform's own LMs, vLLM);
    api="chat" sends it as one user message to /v1/chat/completions (chat-only hosted models)."""

    client: LLMClient
    api: Literal["completions", "chat"] = "completions"
    temperature: float = 0.0
    usage: LLMUsage = field(default_factory=LLMUsage)
    max_context: int | None = None  # tokens, when the endpoint says (the platform's LM service does)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, prompt: str, *, stop: list[str] | None = None, max_tokens: int = 256) -> str:
        start = time.perf_counter()
        if self.api == "chat":
            resp = self.client.chat([{"role": "user", "content": prompt}], max_tokens=max_tokens,
                                    temperature=self.temperature, stop=stop)
            text = resp["choices"][0]["message"]["content"] or ""
        else:
            resp = self.client.complete(prompt, max_tokens=max_tokens, temperature=self.temperature,
                                        stop=stop)
            text = resp["choices"][0]["text"]
        used = resp.get("usage") or {}
        with self._lock:
            self.usage.calls += 1
            self.usage.prompt_tokens += int(used.get("prompt_tokens", 0))
            self.usage.completion_tokens += int(used.get("completion_tokens", 0))
            self.usage.seconds += time.perf_counter() - start
        # Endpoints differ on whether the stop string is included: cut it here, once.
        for s in stop or []:
            if s and s in text:
                text = text[: text.index(s)]
        return text


@dataclass
class FunctionLLM:
    """An LLM made from a Python function `fn(prompt, stop, max_tokens) -> str`, with the same
    usage counters (tokens counted as whitespace words). Tests use it for scripted test doubles."""

    fn: Callable[[str, list[str] | None, int], str]
    usage: LLMUsage = field(default_factory=LLMUsage)

    def __call__(self, prompt: str, *, stop: list[str] | None = None, max_tokens: int = 256) -> str:
        start = time.perf_counter()
        text = self.fn(prompt, stop, max_tokens)
        self.usage.calls += 1
        self.usage.prompt_tokens += len(prompt.split())
        self.usage.completion_tokens += len(text.split())
        self.usage.seconds += time.perf_counter() - start
        for s in stop or []:
            if s and s in text:
                text = text[: text.index(s)]
        return text


DEFAULT_URL = "http://127.0.0.1:8000"  # serving/config.yaml's proxy: the platform's LM service


def build_agent_llm(cfg, check: bool = True) -> AgentLLM:
    """An AgentLLM from an AgentLLMConfig; `check` asks the endpoint for its models first, so an
    unreachable or wrong URL fails at once with what to do, not in the middle of a run."""
    import os

    from ringbit.llm.client import LLMError

    url = cfg.url or DEFAULT_URL
    client = LLMClient(url, api_key=os.environ.get(cfg.api_key_env), model=cfg.model,
                       timeout_s=cfg.timeout_s, retries=cfg.retries)
    context = None
    if check:
        try:
            cards = client.model_cards()
        except LLMError as exc:
            hint = "" if cfg.url else " (start the platform's LM with `ringbit serve up`, or set llm.url)"
            raise LLMUnavailable(f"LLM endpoint {url} is not usable: {exc}{hint}") from None
        if client.model is None and cards:
            client.model = cards[0]["id"]
        context = next((c.get("max_context") for c in cards if c["id"] == client.model), None)
    return AgentLLM(client, api=cfg.api, temperature=cfg.temperature, max_context=context)


class LLMUnavailable(RuntimeError):
    """The configured LLM endpoint cannot be reached or refuses requests."""
