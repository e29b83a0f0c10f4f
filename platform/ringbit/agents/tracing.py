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
