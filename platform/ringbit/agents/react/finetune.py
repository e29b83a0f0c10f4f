"""FireAct fine-tuning: a platform LM learns ReAct trajectories (question -> Thought / Action /
Observation … finish[answer]) through the shared SFT job (prompt tokens masked, Ray Train +
DeepSpeed, val_ppl on held-out trajectories in MLflow, the model registered)."""

from __future__ import annotations

from typing import Any

from ringbit.agents.react.sft import sft_pairs, split_trajectories
from ringbit.agents.react.trajectories import read_trajectories
from ringbit.agents.react.config import ReactFinetuneConfig
from ringbit.train.sft import Pairs, run_sft


def react_pairs(cfg: ReactFinetuneConfig) -> tuple[Pairs, Pairs]:
    """(train, val) pairs from the trajectory file: the split ringbit agents eval react reuses."""
    trajectories = read_trajectories(cfg.data.trajectories)
    train, val = split_trajectories(trajectories, min(cfg.data.n_val, len(trajectories) - 1), cfg.data.seed)
    if cfg.data.max_train:
        train = train[: cfg.data.max_train]
    return sft_pairs(train), sft_pairs(val)


def run_react_finetune(cfg: ReactFinetuneConfig, log=print) -> dict[str, Any]:
    return run_sft(cfg, "react", lambda: react_pairs(cfg), "act as a ReAct agent (FireAct)", log=log)
