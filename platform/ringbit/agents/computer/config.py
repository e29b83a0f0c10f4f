"""The computer-control evaluation job's config (`ringbit agents eval computer`, workflow
eval-computer).

Validating it needs no browser stack: task names are checked against the installed MiniWoB++
(gymnasium, miniwob, selenium) by `with_resolved_tasks` when the workflow starts (the CLI before
it submits, the job before it runs), with the same error and exit code as any config error.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from ringbit.agents.config import MAX_SEED, AgentLLMConfig
from ringbit.config import ConfigError, StrictModel
from ringbit.train.config import TrackingConfig


def _parse_seeds(value: Any) -> Any:
    """Seeds as a list, one int, or ranges like "0-9" / "0-4,10" (what users type on a CLI)."""
    if isinstance(value, int):
        return [value]
    if isinstance(value, str):
        seeds: list[int] = []
        for part in filter(None, (p.strip() for p in value.split(","))):
            lo, sep, hi = part.partition("-")
            try:
                seeds += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
            except ValueError:
                raise ValueError(f"{value!r}: expected seeds like 0-9 or 0,3,7") from None
        return seeds
    return value


class ComputerEvalConfig(StrictModel):
    """Evaluate the structured-reflection computer-control agent on MiniWoB++ tasks: every
    (task, seed) is one episode of up to `trials` trials, episodes spread over a pool of browsers."""

    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", description="Run name; None = timestamped.")
    tasks: list[str] = Field(["click-button", "click-link", "focus-text", "enter-text"], min_length=1,
                             description="MiniWoB++ task names (miniwob/<task>-v1); checked against the installed "
                                         "miniwob when the workflow starts.")
    seeds: list[int] = Field(list(range(5)), min_length=1, max_length=1000,
                             description="Episode seeds (a list, or a range string like 0-9).")
    trials: int = Field(3, ge=1, le=10, description="Trials per episode: reflection between them (paper: up to 5).")
    max_steps: int = Field(12, ge=1, le=100, description="Actions per trial before it counts as failed.")
    episode_max_s: float | None = Field(
        300.0, gt=0, description="MiniWoB++ ends an episode after 10 s, LLM thinking included; this "
                                 "raises the limit for real LLMs (None = the benchmark's 10 s).")
    browsers: int = Field(2, ge=1, le=32, description="Browser actors (one headless Chromium each, ~400 MiB).")
    cpus_per_browser: float = Field(0.5, gt=0, le=16, description="Ray CPUs reserved per browser actor.")
    llm: AgentLLMConfig = Field(default_factory=AgentLLMConfig)
    mlflow: TrackingConfig = Field(default_factory=lambda: TrackingConfig(experiment="ringbit-agents", registered_model=None))

    @field_validator("seeds", mode="before")
    @classmethod
    def _seed_ranges(cls, value: Any) -> Any:
        return _parse_seeds(value)

    @field_validator("seeds")
    @classmethod
    def _seed_range(cls, seeds: list[int]) -> list[int]:
        bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
        if bad:
            raise ValueError(f"seeds {bad[:5]} out of range: use 0..{MAX_SEED}")
        return seeds


def with_resolved_tasks(cfg: ComputerEvalConfig) -> ComputerEvalConfig:
    """cfg with every task name checked against the installed MiniWoB++ and made canonical
    ("miniwob/click-button-v1" -> "click-button"); a ConfigError naming `tasks` for an unknown
    one. Imports the browser stack, so it runs when the workflow starts, not at validation."""
    from ringbit.agents.computer.env import resolve_task

    try:
        tasks = [resolve_task(t) for t in cfg.tasks]
    except ValueError as exc:
        raise ConfigError(f"tasks: {exc}") from None
    return cfg.model_copy(update={"tasks": tasks})
