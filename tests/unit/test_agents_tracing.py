"""MLflow traces of a ReAct episode, into a real MLflow store (sqlite): the agent's LLM here is a
test double (the ReAct control logic is what produces the spans; no model is needed for that)."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from ringbit.agents.llm import FunctionLLM
from ringbit.agents.react import run_react
from ringbit.agents.tracing import TracedLLM, episode_trace, flush, traced_tools


@pytest.fixture
def store(fluent_mlflow, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    fluent_mlflow.set_tracking_uri(uri)
    return MlflowClient(uri)


def test_a_react_episode_is_one_trace_with_a_span_per_llm_and_tool_call(store):
    script = iter(["I should search.\nAction: search[Hamlet author]",
                   "Not useful.\nAction: lookup[x]",  # an unknown tool: no tool call, no TOOL span
                   "Found it.\nAction: finish[Shakespeare]"])
    llm = FunctionLLM(lambda prompt, stop, max_tokens: next(script))  # test double

    def search(query: str) -> str:
        return "Hamlet is a tragedy by William Shakespeare."

    run = store.create_run(store.create_experiment("traces"))
    with episode_trace("react", {"question": "Who wrote Hamlet?"}, run.info.run_id, run.info.experiment_id,
                       {"ringbit.agent": "react"}) as span:
        result = run_react("Who wrote Hamlet?", TracedLLM(llm), traced_tools({"search": search}), max_iterations=5)
        span.set_outputs({"answer": result.answer})
    flush()
    assert result.answer == "Shakespeare" and result.finished

    traces = mlflow.search_traces(locations=[run.info.experiment_id], run_id=run.info.run_id, return_type="list")
    assert len(traces) == 1
    trace = traces[0]
    assert trace.info.tags["ringbit.agent"] == "react"
    spans = {s.span_id: s for s in trace.data.spans}
    root = next(s for s in spans.values() if s.parent_id is None)
    assert root.span_type == "AGENT" and root.outputs == {"answer": "Shakespeare"}
    llm_spans = [s for s in spans.values() if s.span_type == "LLM"]
    tool_spans = [s for s in spans.values() if s.span_type == "TOOL"]
    assert len(llm_spans) == llm.usage.calls == 3 and all(s.parent_id == root.span_id for s in llm_spans)
    assert [s.name for s in tool_spans] == ["search"] and tool_spans[0].inputs == {"arg": "Hamlet author"}
    assert tool_spans[0].outputs.startswith("Hamlet is a tragedy")
    usage = [s.attributes["mlflow.chat.tokenUsage"] for s in llm_spans]
    assert sum(u["output_tokens"] for u in usage) == llm.usage.completion_tokens
    assert all(s.end_time_ns > s.start_time_ns for s in llm_spans)  # latency = the span's duration


def test_a_rest_run_links_its_trace_to_the_mlflow_run_recorded_afterwards(store):
    """The agents service records a REST run's MLflow run after the run ends; its trace, written
    while the run went on, is linked to it then."""
    from ringbit.agents.runs import record_request_run

    exp = store.create_experiment("serve")
    llm = FunctionLLM(lambda prompt, stop, max_tokens: "Done.\nAction: finish[42]")  # test double
    with episode_trace("react", {"question": "q?"}, None, exp, {"ringbit.agent_run": "abc"}) as span:
        result = run_react("q?", TracedLLM(llm), {}, max_iterations=2)
    mid = record_request_run(store.tracking_uri, "serve", "react", "abc", {"question": "q?"},
                             {**result.to_dict(), "llm_calls": 1}, "succeeded", trace_ids=[span.trace_id])
    traces = store.search_traces(locations=[exp], run_id=mid)
    assert [t.info.trace_id for t in traces] == [span.trace_id]
    assert store.get_run(mid).info.status == "FINISHED"


def test_a_computer_episode_is_rebuilt_as_one_trace_from_its_events(store):
    """A computer-control episode runs in a browser actor; its trace is rebuilt from the event
    stream the actor sent back (here a recorded one: a failed trial, a reflection, a solved one)."""
    from ringbit.agents.tracing import trace_computer_episode

    screen = ['<button id=5 pos="middle left">okay</button>', '<button id=6 pos="middle left">no</button>']
    events = [
        {"type": "plan", "trial": 0, "index": 0, "screen": screen, "plan": "click id=6", "llm_s": 1.5},
        {"type": "step", "trial": 0, "index": 0, "screen": screen, "plan": "click id=6", "action": "click id=6",
         "source": "planner", "ok": True, "error": None, "llm_s": 1.5, "browser_s": 0.25},
        {"type": "trial_end", "trial": 0, "success": False, "reward": -1.0, "reason": "task failed", "steps": 1},
        {"type": "reflection", "trial": 0, "index": 0, "action": "click id=5", "llm_s": 0.5,
         "raw": "For action index=0, you should click id=5.", "memory": {"slots": {"0": "click id=5"}}},
        {"type": "step", "trial": 1, "index": 0, "screen": screen[:1], "plan": None, "action": "click id=5",
         "source": "memory", "ok": True, "error": None, "llm_s": 0.0, "browser_s": 0.25},
        {"type": "trial_end", "trial": 1, "success": True, "reward": 0.9, "reason": "task solved", "steps": 1},
    ]
    result = {"task": "click-button", "seed": 3, "success": True, "trials": [{}, {}], "events": events}
    run = store.create_run(store.create_experiment("computer-traces"))
    trace_id = trace_computer_episode(result, run.info.run_id, run.info.experiment_id, {"ringbit.agent": "computer"})
    flush()
    (trace,) = mlflow.search_traces(locations=[run.info.experiment_id], run_id=run.info.run_id, return_type="list")
    assert trace.info.trace_id == trace_id and trace.info.tags["ringbit.agent"] == "computer"
    spans = trace.data.spans
    root = next(s for s in spans if s.parent_id is None)
    assert root.span_type == "AGENT" and root.outputs["success"] is True
    trials = sorted((s for s in spans if s.span_type == "CHAIN"), key=lambda s: s.name)
    assert [t.name for t in trials] == ["trial 1", "trial 2"] and trials[0].outputs["reason"] == "task failed"
    (plan,) = [s for s in spans if s.name == "plan"]
    assert plan.parent_id == trials[0].span_id and "id=6" in plan.inputs["screen"] and plan.outputs == "click id=6"
    assert (plan.end_time_ns - plan.start_time_ns) == pytest.approx(1.5e9, rel=1e-6)  # its recorded seconds
    actions = [s for s in spans if s.span_type == "TOOL"]
    assert [a.name for a in actions] == ["action 0: click id=6", "action 0: click id=5"]
    assert actions[1].inputs["source"] == "memory"
    (reflection,) = [s for s in spans if s.name == "reflection"]
    assert reflection.outputs["action"] == "click id=5" and reflection.parent_id == root.span_id
    assert root.end_time_ns - root.start_time_ns == pytest.approx(2.5e9, rel=1e-6)  # laid end to end
