"""Agent runs in MLflow: one run per evaluation job (a context that ends it FINISHED, FAILED or
KILLED, never RUNNING) and one per REST request (outcome, steps, LLM calls, tokens, trajectory)."""

from __future__ import annotations

import contextlib
import json
import signal
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from mlflow.tracking import MlflowClient

from ringbit import tracking


@contextlib.contextmanager
def mlflow_run(experiment: str, name: str, params: dict[str, Any], tracking_uri: str | None = None,
               tags: dict[str, Any] | None = None, log=print) -> Iterator[tuple[MlflowClient, str]]:
    """A new MLflow run for a job; SIGTERM (`ringbit stop`) marks it KILLED, an exception FAILED."""
    uri = tracking.resolve_tracking_uri(tracking_uri)
    client = MlflowClient(uri)
    run = client.create_run(tracking.experiment_id(client, experiment), run_name=name)
    run_id = run.info.run_id
    tracking.log_params(client, run_id, params)
    tracking.set_tags(client, run_id, {**tracking.default_tags(), **(tags or {})})
    log(f"[ringbit] mlflow run {run_id}: {tracking.run_url(uri, client, run_id)}")

    def killed(signum, frame):
        client.set_terminated(run_id, "KILLED")
        raise SystemExit(128 + signum)

    in_main = _is_main_thread()
    previous = signal.signal(signal.SIGTERM, killed) if in_main else None
    try:
        yield client, run_id
    except BaseException:  # FAILED, unless the SIGTERM handler has just marked it KILLED
        tracking.mark_failed(client, run_id, log)
        raise
    else:
        client.set_terminated(run_id, "FINISHED")
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def log_jsonl(client: MlflowClient, run_id: str, name: str, rows: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text("".join(json.dumps(r, default=str) + "\n" for r in rows))
        client.log_artifact(run_id, str(path))


def record_request_run(tracking_uri: str, experiment: str, agent: str, run_id_public: str,
                       params: dict[str, Any], result: dict[str, Any], status: str,
                       trace_ids: list[str] | None = None) -> str:
    """One MLflow run for one REST agent run: outcome, steps, LLM calls and tokens as metrics, the
    whole trajectory as an artifact, and the run's traces linked to it. Returns the MLflow run id."""
    client = MlflowClient(tracking_uri)
    run = client.create_run(tracking.experiment_id(client, experiment), run_name=f"{agent}-{run_id_public}",
                            tags={"ringbit.agent": agent, "ringbit.agent_run": run_id_public,
                                  "ringbit.source": "serve"})
    mid = run.info.run_id
    tracking.log_params(client, mid, {k: v for k, v in params.items() if v is not None})
    metrics = {k: float(result[k]) for k in METRIC_KEYS if isinstance(result.get(k), (int, float, bool))}
    now = int(time.time() * 1000)
    for k, v in metrics.items():
        client.log_metric(mid, k, v, timestamp=now)
    if result.get("error"):
        client.set_tag(mid, "ringbit.error", str(result["error"])[:5000])
    log_jsonl(client, mid, "trajectory.jsonl", [result])
    if trace_ids:
        from ringbit.agents.tracing import flush

        flush()  # traces are exported asynchronously: they must exist before they are linked
        client.link_traces_to_run(trace_ids, mid)
    client.set_terminated(mid, "FINISHED" if status == "succeeded" else "FAILED")
    return mid


# What every agent result may carry, logged as metrics when present.
METRIC_KEYS = ("success", "reward", "trials_used", "steps", "iterations", "finished", "answered",
               "backtracks", "em", "f1", "correct", "llm_calls", "prompt_tokens", "completion_tokens",
               "llm_seconds", "browser_s", "wall_s")
