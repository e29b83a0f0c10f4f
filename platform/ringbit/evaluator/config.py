"""The evaluator fine-tuning job's config (`ringbit submit finetune-evaluator`): supervised
fine-tuning (ringbit.train.config.SFTConfig) on synthetic InstructScore examples."""

from __future__ import annotations

from pydantic import Field

from ringbit.config import StrictModel
from ringbit.train.config import SFTConfig


class FinetuneDataConfig(StrictModel):
    """Synthetic InstructScore examples (ringbit.evaluator.synthetic) to fine-tune on."""

    corpus: str = Field("builtin:python-docs", description="Sentences to perturb (builtin:… or a text file).")
    n_train: int = Field(2000, ge=1, description="Training examples.")
    n_val: int = Field(200, ge=1, description="Held-out examples (val_ppl over their report tokens).")
    seed: int = Field(0, description="Seed of the synthetic data.")
    task: str = Field("zh-en", description="InstructScore prompt template of the examples.")


class FinetuneConfig(SFTConfig):
    """Teach a platform LM to write InstructScore reports from synthetic examples."""

    data: FinetuneDataConfig = Field(default_factory=FinetuneDataConfig)
