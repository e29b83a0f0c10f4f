"""The MemWalker evaluation job's config (`ringbit agents eval memwalker`): synthetic long
documents with planted facts (ringbit.agents.longdoc) read by MemWalker (ringbit.agents.memwalker)
and by the paper's two baselines (ringbit.agents.longdoc_baselines)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from ringbit.agents.config import MAX_SEED, AgentLLMConfig
from ringbit.config import StrictModel
from ringbit.train.config import SFTConfig, TrackingConfig

def _word_lengths(value: list[int], most: int) -> list[int]:
    bad = [n for n in value if not 100 <= n <= most]
    if bad:
        raise ValueError(f"n_words {bad}: each length must be 100..{most:,} words")
    return value


Filler = Literal["lorem", "builtin:python-topics", "builtin:python-docs"]


class MemWalkerEvalConfig(StrictModel):
    """Evaluate MemWalker on synthetic long documents with planted facts: accuracy to MLflow."""

    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", description="Run name; None = timestamped.")
    n_docs: int = Field(8, ge=1, le=10_000, description="Documents (one planted-fact question each).")
    n_words: list[int] = Field([3000], min_length=1, max_length=8,
                               description="Words per document: one length or several (e.g. [1500, 6000, 24000, "
                                           "96000], about 2k/8k/32k/128k tokens); n_docs documents of each.")
    methods: list[Literal["memwalker", "truncate", "retrieve"]] = Field(
        ["memwalker", "truncate", "retrieve"], min_length=1,
        description="Readers: memwalker (the summary tree), truncate (the text cut to window_words, one answer), "
                    "retrieve (BM25 segments that fit window_words, one answer).")
    window_words: int = Field(5000, ge=50, le=1_000_000, description="The baselines' context in words (SmolLM2's "
                                                                     "8,192 tokens hold ~5,000 words and the prompt).")
    filler: Filler = Field(
        "lorem", description="Text around the planted fact: lorem-like words, or prose from a built-in corpus.")
    segment_words: int = Field(300, ge=20, le=100_000, description="Words per leaf segment (paper: ~1,000 tokens).")
    fanout: int = Field(4, ge=2, le=16, description="Children per summary node.")
    max_steps: int = Field(12, ge=1, le=200, description="Navigation steps before giving up.")
    summary_tokens: int = Field(128, ge=8, le=2048, description="New tokens per summary: bounds the time a "
                                                                "rambling model spends on each tree node.")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seed of the synthetic documents.")
    workers: int = Field(2, ge=1, le=64, description="Documents run in parallel (Ray tasks).")
    traces: bool = Field(True, description="Record each document as an MLflow trace under the run: a span per "
                                           "reader, inside it one per LLM call (summaries, each navigation step "
                                           "with the node's summaries shown, the answer).")
    llm: AgentLLMConfig = Field(default_factory=AgentLLMConfig)
    mlflow: TrackingConfig = Field(default_factory=lambda: TrackingConfig(experiment="ringbit-agents", registered_model=None))

    @field_validator("n_words", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, int) else value

    @field_validator("n_words")
    @classmethod
    def _lengths(cls, value: list[int]) -> list[int]:
        return _word_lengths(value, 1_000_000)


class MemWalkerTraceDataConfig(StrictModel):
    """Navigation traces recorded by the generator's teacher (ringbit.agents.memwalker_teacher):
    documents in their own seed namespace, never the evaluation's, built into trees and walked."""

    n_docs: int = Field(60, ge=2, le=100_000, description="Documents of each length.")
    n_words: list[int] = Field([1500, 6000], min_length=1, max_length=8,
                               description="Words per document; longer ones give deeper trees to navigate.")
    distractors: int = Field(2, ge=0, le=20, description="Other access-code facts per document, so the reader "
                                                         "must match the asked key, not any number.")
    fillers: list[Filler] = Field(["lorem", "builtin:python-topics"], min_length=1,
                                  description="Text around the facts, taken in turn per document.")
    segment_words: int = Field(300, ge=20, le=100_000, description="Words per leaf segment: use the evaluation's.")
    fanout: int = Field(4, ge=2, le=16, description="Children per summary node: use the evaluation's.")
    wrong_rate: float = Field(0.3, ge=0, le=1, description="Chance a navigation step is sent to a wrong child on "
                                                          "purpose (never learned): the go-back that follows is.")
    empty_summary_keep: float = Field(0.2, ge=0, le=1, description="Share of fact-free summaries kept (they are "
                                                                  "most of a tree).")
    kinds: list[Literal["summary", "navigate", "answer"]] = Field(
        ["summary", "navigate", "answer"], min_length=1, description="Which calls to learn.")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="Share of documents held out: val_ppl over their replies.")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seed of the training documents and the split.")

    @field_validator("n_words")
    @classmethod
    def _lengths(cls, value: list[int]) -> list[int]:
        return _word_lengths(value, 200_000)


class MemWalkerFinetuneConfig(SFTConfig):
    """Fine-tune an LM as MemWalker's reader (summaries, navigation, leaf answers) on the
    teacher's traces; `ringbit agents eval memwalker` then reads with it."""

    max_seq_len: int = Field(1024, ge=64, description="Prompt + reply tokens kept (longer examples are dropped); "
                                                      "a 300-word leaf prompt is ~600-800 tokens.")
    data: MemWalkerTraceDataConfig = Field(default_factory=MemWalkerTraceDataConfig)
    mlflow: TrackingConfig = Field(default_factory=lambda: TrackingConfig(
        experiment="ringbit-agents", registered_model="memwalker-reader"))
