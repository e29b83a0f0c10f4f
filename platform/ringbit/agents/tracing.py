"""MLflow traces of agent episodes: one trace per question (an AGENT root span tied to the
evaluation's run), inside it a span per LLM call (prompt, completion, token usage; latency is the
span's own duration) and one per tool call (argument, observation). The spans wrap the agent's LLM
and tools from the outside, so the agent loops themselves know nothing about MLflow."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping

import mlflow
from mlflow.entities import SpanType
from mlflow.tracing.constant import SpanAttributeKey

PREVIEW_CHARS = 2000  # longer prompts are kept whole in the span inputs; previews stay short


class TracedLLM:
    """`llm(prompt, stop=..., max_tokens=...)` with an LLM span around every call. Token counts
    are the wrapped LLM's usage before and after the call (one AgentLLM per thread)."""

    def __init__(self, llm: Any, name: str = "llm"):
        self.llm, self.name = llm, name

    @property
    def usage(self) -> Any:
        return getattr(self.llm, "usage", None)

    def __call__(self, prompt: str, *, stop: list[str] | None = None, max_tokens: int = 256) -> str:
        usage = self.usage
        before = (usage.prompt_tokens, usage.completion_tokens) if usage is not None else (0, 0)
        with mlflow.start_span(self.name, span_type=SpanType.LLM) as span:
            span.set_inputs({"prompt": prompt, "stop": stop, "max_tokens": max_tokens})
            text = self.llm(prompt, stop=stop, max_tokens=max_tokens)
            span.set_outputs(text)
            if usage is not None:
                prompt_tokens = usage.prompt_tokens - before[0]
                completion_tokens = usage.completion_tokens - before[1]
                span.set_attribute(SpanAttributeKey.CHAT_USAGE, {
                    "input_tokens": prompt_tokens, "output_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens})
        return text


def traced_tools(tools: Mapping[str, Callable[[str], str]]) -> dict[str, Callable[[str], str]]:
    """The same tools, each call inside a TOOL span named after the tool (a raised error marks the
    span ERROR and still reaches the agent, which turns it into an observation)."""

    def wrap(name: str, fn: Callable[[str], str]) -> Callable[[str], str]:
        def call(arg: str) -> str:
            with mlflow.start_span(name, span_type=SpanType.TOOL) as span:
                span.set_inputs({"arg": arg})
                out = fn(arg)
                span.set_outputs(out)
                return out

        return call

    return {name: wrap(name, fn) for name, fn in tools.items()}


@contextmanager
def episode_trace(name: str, inputs: Mapping[str, Any], run_id: str | None, experiment_id: str,
                  tags: Mapping[str, str] | None = None) -> Iterator[Any]:
    """The root AGENT span of one episode, its trace logged to `experiment_id` (named here: MLflow
    3.17 otherwise writes it to the default experiment) and shown under `run_id` when given (a run
    created afterwards links it with `MlflowClient.link_traces_to_run`). Set the episode's outcome
    with `span.set_outputs(...)` before leaving."""
    from mlflow.entities.trace_location import MlflowExperimentLocation

    with mlflow.start_span(name, span_type=SpanType.AGENT, run_id=run_id,
                           trace_destination=MlflowExperimentLocation(experiment_id)) as span:
        span.set_inputs(dict(inputs))
        mlflow.update_current_trace(tags=dict(tags or {}),
                                    request_preview=str(next(iter(inputs.values()), ""))[:PREVIEW_CHARS])
        yield span


def flush() -> None:
    """Wait for traces still being exported (MLflow logs them asynchronously)."""
    flush_async = getattr(mlflow, "flush_trace_async_logging", None)
    if flush_async is not None:
        flush_async()


def trace_computer_episode(result: Mapping[str, Any], run_id: str, experiment_id: str,
                           tags: Mapping[str, str] | None = None) -> str:
    """One MLflow trace of a finished computer-control episode, rebuilt from its event stream
    (the episode ran in a browser actor; its events carry each call's and action's seconds):
    an AGENT root, a CHAIN span per trial, inside it an LLM span per planning call (the screen
    the planner saw, its plan), a TOOL span per action (the screen before it, ok or the error)
    and an LLM span for the reflection (the advice and the memory after it). Start times are laid
    end to end from the durations, ending now. Returns the trace id."""
    import time

    from mlflow.entities.span_status import SpanStatusCode
    from mlflow.tracking import MlflowClient

    events = [e for e in result.get("events", ()) if e.get("type") in ("plan", "step", "reflection", "trial_end")]
    ns = lambda s: int(float(s or 0.0) * 1e9)  # noqa: E731
    took = sum(ns(e.get("llm_s")) for e in events if e["type"] in ("plan", "reflection")) + \
        sum(ns(e.get("browser_s")) for e in events if e["type"] == "step")
    t = time.time_ns() - took
    root = mlflow.start_span_no_context(f"computer {result['task']}", span_type=SpanType.AGENT,
                                        inputs={"task": result["task"], "seed": result["seed"],
                                                "reflection": result.get("reflection", True)},
                                        tags=dict(tags or {}), experiment_id=experiment_id, start_time_ns=t)
    trial_span = None
    for e in events:
        if trial_span is None and e["type"] in ("plan", "step"):  # a reflection sits between trials
            trial_span = mlflow.start_span_no_context(f"trial {e.get('trial', 0) + 1}", span_type=SpanType.CHAIN,
                                                      parent_span=root, start_time_ns=t)
        if e["type"] == "plan":
            span = mlflow.start_span_no_context("plan", span_type=SpanType.LLM, parent_span=trial_span,
                                                inputs={"step": e["index"], "screen": "\n".join(e["screen"])},
                                                start_time_ns=t)
            t += ns(e.get("llm_s"))
            span.end(outputs=e.get("plan"), end_time_ns=t)
        elif e["type"] == "step":
            span = mlflow.start_span_no_context(f"action {e['index']}: {e['action']}", span_type=SpanType.TOOL,
                                                parent_span=trial_span,
                                                inputs={"action": e["action"], "source": e["source"],
                                                        "screen": "\n".join(e["screen"])}, start_time_ns=t)
            t += ns(e.get("browser_s"))
            span.end(outputs={"ok": e["ok"], "error": e.get("error")}, end_time_ns=t,
                     status=SpanStatusCode.OK if e["ok"] else SpanStatusCode.ERROR)
        elif e["type"] == "reflection":
            span = mlflow.start_span_no_context("reflection", span_type=SpanType.LLM, parent_span=root,
                                                inputs={"after_trial": e["trial"] + 1}, start_time_ns=t)
            t += ns(e.get("llm_s"))
            span.end(outputs={"advice": e.get("raw"), "index": e.get("index"), "action": e.get("action"),
                              "memory": e.get("memory")}, end_time_ns=t)
        elif trial_span is not None:  # trial_end
            trial_span.end(outputs={"success": e["success"], "reward": e["reward"], "reason": e["reason"]},
                           end_time_ns=t)
            trial_span = None
    if trial_span is not None:
        trial_span.end(end_time_ns=t)
    root.end(outputs={"success": bool(result.get("success")), "trials_used": len(result.get("trials", [])),
                      "error": result.get("error")}, end_time_ns=t,
             status=SpanStatusCode.ERROR if result.get("error") else SpanStatusCode.OK)
    MlflowClient().link_traces_to_run([root.trace_id], run_id)
    return root.trace_id
