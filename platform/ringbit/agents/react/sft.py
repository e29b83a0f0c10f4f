"""FireAct fine-tuning data: (prompt, completion) pairs whose concatenation is exactly the text the
ReAct loop shows the model (`react.format_prompt` + `react.format_target`), a deterministic
held-out split, and gold answers for evaluation. The trainer masks the prompt tokens and should
append EOS after the completion; the loop stops generation at "\\nObservation:" anyway."""

from __future__ import annotations

import random
from typing import Sequence, TypeVar

from ringbit.agents.react.react import format_prompt, format_target
from ringbit.agents.react.trajectories import Trajectory

__all__ = ["gold_examples", "sft_pairs", "split_trajectories"]

T = TypeVar("T")


def sft_pairs(trajectories: Sequence[Trajectory]) -> list[tuple[str, str]]:
    """[(format_prompt(question), format_target(trajectory))] for each trajectory."""
    return [(format_prompt(t.question), format_target(t)) for t in trajectories]


def split_trajectories(trajectories: Sequence[T], n_val: int,
                       seed: int = 0) -> tuple[list[T], list[T]]:
    """(train, val): `n_val` items drawn by a seeded shuffle, both lists in the original order, so
    the same (trajectories, n_val, seed) always gives the same split."""
    if not 0 <= n_val <= len(trajectories):
        raise ValueError(f"n_val={n_val} outside 0..{len(trajectories)}")
    order = list(range(len(trajectories)))
    random.Random(seed).shuffle(order)
    val_ids = set(order[:n_val])
    train = [t for i, t in enumerate(trajectories) if i not in val_ids]
    val = [t for i, t in enumerate(trajectories) if i in val_ids]
    return train, val


def gold_examples(trajectories: Sequence[Trajectory]) -> list[dict[str, str]]:
    """[{"question", "answer"}] from trajectories that finish; the released FireAct trajectories
    all end with reward = True, so their finish answers are correct HotpotQA answers."""
    return [{"question": t.question, "answer": t.answer} for t in trajectories
            if t.answer is not None]
