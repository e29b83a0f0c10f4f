"""One client for every OpenAI-compatible endpoint (the platform's LM service, vLLM, Ray Serve
LLM, a hosted API): completions and chat, streaming, timeouts and retries with backoff."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import requests

RETRY_STATUS = {429, 500, 502, 503, 504}


class LLMError(RuntimeError):
    """The endpoint answered with an error (status and body kept) or could not be reached."""

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status, self.body = status, body


@dataclass
class LLMClient:
    base_url: str
    api_key: str | None = field(default_factory=lambda: os.environ.get("OPENAI_API_KEY"))
    model: str | None = None
    timeout_s: float = 120.0
    retries: int = 3
    backoff_s: float = 0.5

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _url(self, path: str) -> str:
        base = self.base_url.rstrip("/")
        if base.endswith("/v1"):  # accept both http://host:8000 and http://host:8000/v1
            path = path.removeprefix("/v1")
        return base + path

    def _request(self, method: str, path: str, body: dict | None = None, stream: bool = False):
        """Retries connection errors, timeouts and 429/5xx with exponential backoff; 4xx raise."""
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                resp = requests.request(method, self._url(path), json=body, headers=self._headers(),
                                        timeout=self.timeout_s, stream=stream)
            except requests.ReadTimeout as exc:  # connected, but no answer in time: not "unreachable"
                last = LLMError(f"{self.base_url} did not answer within {self.timeout_s:g} s ({exc}); a busy "
                                "endpoint needs a longer timeout (agents: --set llm.timeout_s=600)")
            except (requests.ConnectionError, requests.Timeout) as exc:
                last = LLMError(f"{self.base_url} unreachable: {exc}")
            else:
                if resp.status_code < 400:
                    return resp
                try:
                    detail = resp.json()
                except ValueError:
                    detail = resp.text
                last = LLMError(f"{method} {path} -> HTTP {resp.status_code}: {detail}", resp.status_code, detail)
                if resp.status_code not in RETRY_STATUS:
                    raise last
            if attempt < self.retries:
                time.sleep(self.backoff_s * 2**attempt)
        raise last  # type: ignore[misc]

    def model_cards(self) -> list[dict[str, Any]]:
        """/v1/models' entries (the platform's LM service adds `max_context`)."""
        return self._request("GET", "/v1/models").json()["data"]

    def models(self) -> list[str]:
        return [m["id"] for m in self.model_cards()]

    def _body(self, extra: dict[str, Any], **params: Any) -> dict[str, Any]:
        body = {k: v for k, v in params.items() if v is not None}
        if self.model:
            body.setdefault("model", self.model)
        return {**body, **extra}

    def complete(self, prompt: str | list[str], max_tokens: int = 64, temperature: float = 0.0,
                 stop: list[str] | None = None, seed: int | None = None, **extra: Any) -> dict[str, Any]:
        """The raw OpenAI completion response (choices[i].text)."""
        body = self._body(extra, prompt=prompt, max_tokens=max_tokens, temperature=temperature,
                          stop=stop, seed=seed)
        return self._request("POST", "/v1/completions", body).json()

    def complete_text(self, prompt: str, **kwargs: Any) -> str:
        return self.complete(prompt, **kwargs)["choices"][0]["text"]

    def chat(self, messages: list[dict[str, str]], max_tokens: int = 256, temperature: float = 0.0,
             stop: list[str] | None = None, seed: int | None = None, **extra: Any) -> dict[str, Any]:
        body = self._body(extra, messages=messages, max_tokens=max_tokens, temperature=temperature,
                          stop=stop, seed=seed)
        return self._request("POST", "/v1/chat/completions", body).json()

    def chat_text(self, messages: list[dict[str, str]], **kwargs: Any) -> str:
        return self.chat(messages, **kwargs)["choices"][0]["message"]["content"]

    def stream_chat(self, messages: list[dict[str, str]], max_tokens: int = 256,
                    temperature: float = 0.0, **extra: Any) -> Iterator[str]:
        """Content deltas as they arrive (server-sent events)."""
        body = self._body(extra, messages=messages, max_tokens=max_tokens, temperature=temperature,
                          stream=True)
        resp = self._request("POST", "/v1/chat/completions", body, stream=True)
        for line in resp.iter_lines(decode_unicode=True):
            if not line or not line.startswith("data: "):
                continue
            data = line.removeprefix("data: ")
            if data == "[DONE]":
                return
            delta = json.loads(data)["choices"][0].get("delta", {})
            if delta.get("content"):
                yield delta["content"]
