"""The FireAct table from MLflow: one row per finished ReAct evaluation run (`ringbit agents eval
react`), with the model, the prompting, the search, EM and F1 with their 95% bootstrap intervals,
the finished rate and the mean number of steps. Rows are compared only when they evaluated the
same questions (questions file, split, n), which `rows` checks."""

from __future__ import annotations

import math
from pathlib import PurePath
from typing import Any

from mlflow.tracking import MlflowClient


def rows(client: MlflowClient, experiment_ids: list[str], names: list[str] | None = None) -> list[dict[str, Any]]:
    """The table rows: finished react runs of the experiments (or only those named, in that order)."""
    runs = client.search_runs(experiment_ids, "tags.`ringbit.agent` = 'react' and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time ASC"], max_results=1000)
    if names:
        by_name = {r.info.run_name: r for r in runs}  # the latest run of a name wins
        missing = [n for n in names if n not in by_name]
        if missing:
            raise ValueError(f"no finished ReAct evaluation run named {', '.join(missing)}")
        runs = [by_name[n] for n in names]
    out = []
    for run in runs:
        p, m = run.data.params, run.data.metrics
        model = run.data.tags.get("ringbit.llm_model") or _given(p, "llm.model") or _given(p, "llm.url")
        out.append({
            "row": run.info.run_name, "model": model,
            "prompting": p.get("prompting", "finetuned"), "api": _given(p, "llm.api"), "search": p.get("search", ""),
            "n": int(m.get("n", 0)), "em": m.get("em", math.nan),
            "em_ci": (m.get("em_ci_low", math.nan), m.get("em_ci_high", math.nan)),
            "f1": m.get("f1", math.nan), "f1_ci": (m.get("f1_ci_low", math.nan), m.get("f1_ci_high", math.nan)),
            "finished_rate": m.get("finished_rate", math.nan), "avg_iterations": m.get("avg_iterations", math.nan),
            "questions": (p.get("questions"), p.get("split"), p.get("n")), "run_id": run.info.run_id})
    return out


def _given(params: dict[str, str], key: str) -> str:
    """A param's value, "" when absent or logged as None (runs before the resolved LLM was logged)."""
    value = params.get(key, "")
    return "" if value == "None" else value


def same_questions(table: list[dict[str, Any]]) -> bool:
    """Whether every row evaluated the same questions (file, split, n)."""
    return len({r["questions"] for r in table}) <= 1


def markdown(table: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table (EM/F1 with [low, high] 95% intervals)."""

    def ci(value: float, interval: tuple[float, float]) -> str:
        return f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"

    lines = ["| row | model | prompting (api) | search | n | EM [95% CI] | F1 [95% CI] | finished | steps |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        prompting = f"{r['prompting']} ({r['api']})" if r.get("api") else r["prompting"]
        kind, _, path = r["search"].partition(":")  # the file's name: the JSON keeps the whole path
        search = f"{kind}:{PurePath(path).name}" if path and not path.startswith("builtin:") else r["search"]
        lines.append(f"| {r['row']} | {r['model']} | {prompting} | {search} | {r['n']} | "
                     f"{ci(r['em'], r['em_ci'])} | {ci(r['f1'], r['f1_ci'])} | {r['finished_rate']:.2f} | "
                     f"{r['avg_iterations']:.1f} |")
    return "\n".join(lines)
