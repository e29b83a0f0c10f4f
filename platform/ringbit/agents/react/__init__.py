"""FireAct ReAct agents (Chen et al., "FireAct: Toward Language Agent Fine-tuning", 2023): the
trajectory formats, the ReAct loop, offline search tools, HotpotQA scoring and fine-tuning data."""

from ringbit.agents.react.evaluate import evaluate_react
from ringbit.agents.react.metrics import aggregate, exact_match, f1, normalize_answer
from ringbit.agents.react.react import (ReactResult, few_shot_prefix, format_prompt, format_target,
                                        parse_action, run_react)
from ringbit.agents.react.sft import gold_examples, sft_pairs, split_trajectories
from ringbit.agents.react.tools import (BM25Search, CachedSearch, Tool, build_search_cache,
                                        load_tools)
from ringbit.agents.react.trajectories import (Step, Trajectory, read_trajectories, write_alpaca,
                                               write_chat)

__all__ = ["BM25Search", "CachedSearch", "ReactResult", "Step", "Tool", "Trajectory", "aggregate",
           "build_search_cache", "evaluate_react", "exact_match", "f1", "few_shot_prefix",
           "format_prompt", "format_target", "gold_examples", "load_tools", "normalize_answer",
           "parse_action", "read_trajectories", "run_react", "sft_pairs", "split_trajectories",
           "write_alpaca", "write_chat"]
