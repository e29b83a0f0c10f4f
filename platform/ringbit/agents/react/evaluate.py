"""Score a ReAct agent on question/answer examples (HotpotQA EM and F1). Runs the examples one
after another; callers parallelise (e.g. one Ray task per shard) and merge rows with
`metrics.aggregate`."""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

from ringbit.agents.react.metrics import aggregate, exact_match, f1
from ringbit.agents.react.react import LLM, run_react

__all__ = ["evaluate_react", "summarize"]


def evaluate_react(examples: Sequence[Mapping[str, Any]], llm: LLM,
                   tools: Mapping[str, Callable[[str], str]], max_iterations: int = 11,
                   on_result: Callable[[dict[str, Any]], None] | None = None,
                   **react_kwargs: Any) -> dict[str, Any]:
    """Run `run_react` on each {"question", "answer"} example.

    Returns {em, f1, n, finished_rate, avg_iterations, seconds, rows[, usage]}; a row is the
    episode's `ReactResult.to_dict()` plus index, gold, em and f1 (and the example's "id" if it has
    one). `on_result` gets each row as soon as it is scored; `react_kwargs` go to `run_react`
    (max_retries, few_shot, max_tokens)."""
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for i, ex in enumerate(examples):
        res = run_react(ex["question"], llm, tools, max_iterations=max_iterations, **react_kwargs)
        row: dict[str, Any] = {"index": i, **({"id": ex["id"]} if "id" in ex else {}),
                               **res.to_dict(), "gold": ex["answer"],
                               "em": exact_match(res.answer, ex["answer"]),
                               "f1": f1(res.answer, ex["answer"])}
        rows.append(row)
        if on_result is not None:
            on_result(row)
    out = summarize(rows)
    out["seconds"] = round(time.perf_counter() - start, 4)
    usage = getattr(llm, "usage", None)
    if usage is not None and hasattr(usage, "as_dict"):
        out["usage"] = usage.as_dict()
    return out


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """EM/F1/n plus finished_rate and avg_iterations over scored rows (also merges shards)."""
    n = len(rows)
    return {**aggregate(rows),
            "finished_rate": sum(bool(r["finished"]) for r in rows) / n if n else 0.0,
            "avg_iterations": sum(r["iterations"] for r in rows) / n if n else 0.0,
            "rows": list(rows)}
