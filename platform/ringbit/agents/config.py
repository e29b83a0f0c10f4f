"""What every agent evaluation shares: the LLM endpoint an agent thinks with (AgentLLMConfig)
and the seed range. Each agent's job config lives beside it (ringbit.agents.computer.config,
ringbit.agents.react.config, ringbit.agents.memwalker_config)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ringbit.config import StrictModel

MAX_SEED = 2**31 - 1


class AgentLLMConfig(StrictModel):
    """The OpenAI-compatible endpoint an agent thinks with: the platform's LM service or any other."""

    url: str | None = Field(
        None, description="Base URL (http://host:port or …/v1); None = the platform's LM service "
                          "(`ringbit serve up`, http://127.0.0.1:8000).")
    model: str | None = Field(None, description="Model name sent with each request; None = the endpoint's default.")
    api: Literal["completions", "chat"] = Field(
        "completions", description="completions sends prompts as-is; chat wraps each in one user message.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the API key (keys never go in configs).")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="Sampling temperature (0 = greedy).")
    timeout_s: float = Field(120.0, gt=0, description="Seconds per LLM request before it counts as failed.")
    retries: int = Field(2, ge=0, le=10, description="Retries of connection errors, 429 and 5xx.")

    @field_validator("url")
    @classmethod
    def _http(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r} is not an http(s) URL, e.g. http://127.0.0.1:8000")
        return url
