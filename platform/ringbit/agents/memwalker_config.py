"""The MemWalker evaluation job's config (`ringbit agents eval memwalker`): synthetic long
documents with planted facts (ringbit.agents.longdoc) read by MemWalker (ringbit.agents.memwalker)."""

from __future__ import annotations

from pydantic import Field

from ringbit.agents.config import MAX_SEED, AgentLLMConfig
from ringbit.config import StrictModel
from ringbit.train.config import TrackingConfig


class MemWalkerEvalConfig(StrictModel):
    """Evaluate MemWalker on synthetic long documents with planted facts: accuracy to MLflow."""

    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", description="Run name; None = timestamped.")
    n_docs: int = Field(8, ge=1, le=10_000, description="Documents (one planted-fact question each).")
    n_words: int = Field(3000, ge=100, le=1_000_000, description="Words per document.")
    segment_words: int = Field(300, ge=20, le=100_000, description="Words per leaf segment (paper: ~1,000 tokens).")
    fanout: int = Field(4, ge=2, le=16, description="Children per summary node.")
    max_steps: int = Field(12, ge=1, le=200, description="Navigation steps before giving up.")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seed of the synthetic documents.")
    workers: int = Field(2, ge=1, le=64, description="Documents run in parallel (Ray tasks).")
    llm: AgentLLMConfig = Field(default_factory=AgentLLMConfig)
    mlflow: TrackingConfig = Field(default_factory=lambda: TrackingConfig(experiment="ringbit-agents", registered_model=None))
