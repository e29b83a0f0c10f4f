"""The demonstrations job (`ringbit agents demos computer`, workflow computer-demos): scripted
solvers play the agent's LLM on training seeds of MiniWoB++ tasks in a pool of browser actors,
and the prompts and answers become `demos.jsonl` in one MLflow run (with per-task yields), the
data of the computer-control fine-tune (ringbit.agents.computer.demos says how)."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from typing import Any

from ringbit.agents.computer.config import ComputerDemosConfig
from ringbit.agents.evaluation import _log_csv, _progress
from ringbit.config import flatten

DEMOS_ARTIFACT = "demos.jsonl"


def demo_summary(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per task: episodes, usable plan / reflection episodes and examples of each kind."""
    tasks: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in results:
        row = tasks[r["task"]]
        row[f"{r['kind']}_episodes"] += 1
        row[f"{r['kind']}_usable"] += bool(r.get("usable"))
        row[f"{r['kind']}_examples"] += len(r.get("examples", ()))
        row["errors"] += bool(r.get("error")) and not r.get("usable")
    return {t: dict(v) for t, v in sorted(tasks.items())}


def run_computer_demos(cfg: ComputerDemosConfig, log=print) -> dict[str, Any]:
    import ray

    from ringbit.agents.browsers import BrowserPool
    from ringbit.agents.runs import log_jsonl, mlflow_run
    from ringbit.services import ensure_client_env

    ensure_client_env()
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=True)
    kinds = [False, True] if cfg.reflection else [False]
    items = [{"task": t, "seed": s, "reflection": k, "max_steps": cfg.max_steps}
             for t in cfg.tasks for s in cfg.seeds for k in kinds]
    name = cfg.name or time.strftime("computer-demos-%Y%m%d-%H%M%S")
    with mlflow_run(cfg.mlflow.experiment, name, flatten(cfg.model_dump(mode="json")),
                    cfg.mlflow.tracking_uri, {"ringbit.agent": "computer", "ringbit.data": "demonstrations"},
                    log=log) as (client, run_id):
        log(f"[ringbit] {len(items)} demonstration episodes ({len(cfg.tasks)} tasks x {len(cfg.seeds)} seeds"
            f"{' x plan/reflection' if cfg.reflection else ''}) on {cfg.browsers} browsers")
        pool = BrowserPool(cfg.browsers, cfg.cpus_per_browser)
        done: list[dict[str, Any]] = []
        began = time.perf_counter()

        def on_result(r: dict[str, Any]) -> None:
            done.append(r)
            if r.get("error"):
                log(f"[ringbit] {r['task']} seed={r['seed']} {r['kind']}: {r['error']}")
            _progress(len(done), len(items), usable=sum(bool(x.get("usable")) for x in done) / len(done),
                      examples=sum(len(x.get("examples", ())) for x in done))

        try:
            results = pool.run_all(items, on_result=on_result, method="demonstrate")
        finally:
            pool.shutdown()
        wall = time.perf_counter() - began
        examples = [e for r in results for e in r.get("examples", ())]
        if not examples:
            raise RuntimeError("no usable demonstration: every episode failed (see the errors above)")
        per_task = demo_summary(results)
        plans = [r for r in results if r["kind"] == "plan"]
        reflections = [r for r in results if r["kind"] == "reflection"]
        metrics = {"episodes": len(results), "examples": len(examples),
                   "plan_examples": sum(e["kind"] == "plan" for e in examples),
                   "reflection_examples": sum(e["kind"] == "reflection" for e in examples),
                   "plan_usable_rate": sum(bool(r.get("usable")) for r in plans) / max(len(plans), 1),
                   "episodes_per_minute": 60 * len(results) / wall,
                   "errors": sum(bool(r.get("error")) for r in results), "browsers_replaced": pool.replaced}
        if reflections:
            metrics["reflection_usable_rate"] = sum(bool(r.get("usable")) for r in reflections) / len(reflections)
        for task, row in per_task.items():
            metrics[f"plan_usable_rate.{task}"] = row.get("plan_usable", 0) / max(row.get("plan_episodes", 0), 1)
        for k, v in metrics.items():
            client.log_metric(run_id, k, float(v))
        log_jsonl(client, run_id, DEMOS_ARTIFACT, examples)
        _log_csv(client, run_id, "yield_by_task.csv", [{"task": t, **{k: int(v) for k, v in row.items()}}
                                                       for t, row in per_task.items()])
        log(f"[ringbit] {'task':<24} {'plans':>9} {'reflections':>12}")
        for task, row in per_task.items():
            log(f"[ringbit] {task:<24} {int(row.get('plan_usable', 0)):>4}/{int(row.get('plan_episodes', 0)):<4} "
                f"{int(row.get('reflection_usable', 0)):>6}/{int(row.get('reflection_episodes', 0)):<5}")
        log(f"[ringbit] done: {len(examples)} examples ({metrics['plan_examples']} plans, "
            f"{metrics['reflection_examples']} reflections) in {DEMOS_ARTIFACT} of run {run_id}; "
            f"{metrics['episodes_per_minute']:.1f} episodes/min")
    return {"run_id": run_id, "metrics": metrics, "per_task": per_task}
