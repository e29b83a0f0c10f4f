"""FireAct ReAct agents (Chen et al., "FireAct: Toward Language Agent Fine-tuning", 2023): the
trajectory formats, the ReAct loop, offline search tools, HotpotQA scoring and fine-tuning data."""

from __future__ import annotations

import importlib

# name -> submodule; loaded on first use, so the job configs (ringbit.agents.react.config)
# import without numpy and rank_bm25
_EXPORTS = {
    "evaluate_react": "evaluate",
    "aggregate": "metrics", "exact_match": "metrics", "f1": "metrics", "normalize_answer": "metrics",
    "ReactResult": "react", "few_shot_prefix": "react", "format_prompt": "react", "format_target": "react",
    "parse_action": "react", "run_react": "react",
    "gold_examples": "sft", "sft_pairs": "sft", "split_trajectories": "sft",
    "BM25Search": "tools", "CachedSearch": "tools", "Tool": "tools", "build_search_cache": "tools",
    "load_tools": "tools",
    "Step": "trajectories", "Trajectory": "trajectories", "read_trajectories": "trajectories",
    "write_alpaca": "trajectories", "write_chat": "trajectories",
}

__all__ = ["BM25Search", "CachedSearch", "ReactResult", "Step", "Tool", "Trajectory", "aggregate",
           "build_search_cache", "evaluate_react", "exact_match", "f1", "few_shot_prefix",
           "format_prompt", "format_target", "gold_examples", "load_tools", "normalize_answer",
           "parse_action", "read_trajectories", "run_react", "sft_pairs", "split_trajectories",
           "write_alpaca", "write_chat"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
