"""FireAct ReAct agent: trajectory formats, the action parser, the loop (replaying the released
trajectories through a scripted LLM and a search cache built from them) and SFT data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ringbit.agents.llm import FunctionLLM
from ringbit.agents.react import (CachedSearch, ReactResult, Step, Trajectory, build_search_cache,
                                  evaluate_react, few_shot_prefix, format_prompt, format_target,
                                  gold_examples, parse_action, read_trajectories, run_react,
                                  sft_pairs, split_trajectories, write_alpaca, write_chat)
from ringbit.agents.react.react import ALPACA_TEMPLATE, FINISH_OBSERVATION, split_step
from ringbit.agents.react.trajectories import read_records, to_alpaca, to_chat

FIREACT = Path(__file__).resolve().parents[3] / "shared" / "fireact"
ALPACA = FIREACT / "hotpotqa_alpaca.json"
CHAT = FIREACT / "hotpotqa_chat.jsonl"
needs_data = pytest.mark.skipif(not ALPACA.exists() or not CHAT.exists(),
                                reason=f"FireAct trajectories not found under {FIREACT}")


@pytest.fixture(scope="module")
def trajs() -> list[Trajectory]:
    return read_trajectories(ALPACA)


@pytest.fixture(scope="module")
def search(trajs) -> CachedSearch:
    return CachedSearch(build_search_cache(trajs))


class ReplayLLM:
    """Test double: replays recorded trajectories' Thought/Action turns. It finds the episode by
    the question in the prompt and the turn by the observations already in it, and keeps every
    prompt it was shown. Its completions run past the stop string, like a real model's would."""

    def __init__(self, trajectories: list[Trajectory], answer_override: str | None = None):
        self.by_prompt = {format_prompt(t.question): t for t in trajectories}
        self.answer_override = answer_override
        self.prompts: list[str] = []
        self.llm = FunctionLLM(self._complete)
        self.usage = self.llm.usage

    def _complete(self, prompt: str, stop: list[str] | None, max_tokens: int) -> str:
        assert stop == ["\nObservation:"] and prompt.endswith("Thought:")
        self.prompts.append(prompt)
        head = prompt[: prompt.index("### Response:\n") + len("### Response:\n")]
        traj = self.by_prompt[head]
        step = traj.steps[prompt[len(head):].count("\nObservation: ")]
        action = step.action
        if self.answer_override is not None and action.startswith("finish["):
            action = f"finish[{self.answer_override}]"
        return f" {step.thought}\nAction: {action}\nObservation: made-up text the stop cuts off"

    def __call__(self, prompt: str, *, stop=None, max_tokens: int = 256) -> str:
        return self.llm(prompt, stop=stop, max_tokens=max_tokens)


def scripted(*replies: str, record: list | None = None) -> FunctionLLM:
    """An LLM double returning `replies` in turn (the last one repeats)."""
    state = {"i": 0}

    def fn(prompt, stop, max_tokens):
        if record is not None:
            record.append((prompt, max_tokens))
        reply = replies[min(state["i"], len(replies) - 1)]
        state["i"] += 1
        return reply

    return FunctionLLM(fn)


# --- parser -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("Thought: x\nAction: search[Malcolm Smith]", ("search", "Malcolm Smith")),
    ("Action:   search [  spaced query  ]   and some trailing words", ("search", "spaced query")),
    (" finish[Super Bowl XLVIII]\nObservation: x", ("finish", "Super Bowl XLVIII")),
    ("Thought: t\nAction: search[Foo [band]] then more]", ("search", "Foo [band]")),
    ("Thought: t\nAction: finish[]", ("finish", "")),
    ("Thought 2: t\nAction 2: Search[x]", ("Search", "x")),
    ("Thought: I should search. Action: search[inline]", ("search", "inline")),
    ("Thought: t\nAction: search[a], search[b]", ("search", "a")),
    ("Thought: t\nAction: search[a [b]", ("search", "a [b")),
])
def test_parse_action(text, expected):
    assert parse_action(text) == expected


@pytest.mark.parametrize("text", ["Thought: I need to think more.", "Action: search[cut off by max",
                                  "", "Action: just words", "I need to search[x] later"])
def test_parse_action_none(text):
    assert parse_action(text) is None


def test_split_step():
    assert split_step(" I need X.\nAction: search[X]") == ("I need X.", ("search", "X"))
    assert split_step("Thought: I need X.\nAction: search[X]") == ("I need X.", ("search", "X"))
    assert split_step(" only a thought") == ("only a thought", None)


@needs_data
def test_every_released_action_parses(trajs):
    tools = set()
    for t in trajs:
        for s in t.steps:
            parsed = parse_action(s.action)
            assert parsed is not None, s.action
            tools.add(parsed[0])
        assert parse_action(t.steps[-1].action)[0] == "finish"
    assert tools == {"search", "finish"}
    assert sum(len(t.steps) for t in trajs) == 1385


# --- trajectory files ---------------------------------------------------------------------------

@needs_data
def test_alpaca_round_trip(trajs, tmp_path):
    records = read_records(ALPACA)
    assert len(trajs) == len(records) == 500
    for t, r in zip(trajs, records):
        assert to_alpaca(t) == r
        assert t.steps[-1].observation == "Episode finished, reward = True"
        assert t.answer == parse_action(t.steps[-1].action)[1]
    write_alpaca(tmp_path / "a.json", trajs)
    assert (tmp_path / "a.json").read_bytes() == ALPACA.read_bytes()
    write_alpaca(tmp_path / "a.jsonl", trajs)
    assert read_trajectories(tmp_path / "a.jsonl") == trajs


@needs_data
def test_chat_round_trip(trajs, tmp_path):
    chat = read_trajectories(CHAT)
    for t, r in zip(chat, read_records(CHAT)):
        assert to_chat(t) == r
    write_chat(tmp_path / "c.jsonl", chat)
    assert (tmp_path / "c.jsonl").read_bytes() == CHAT.read_bytes()
    # The two released files hold the same steps (a few questions differ in leading spaces).
    assert [t.steps for t in chat] == [t.steps for t in trajs]
    assert [t.question.strip() for t in chat] == [t.question.strip() for t in trajs]


def test_chat_system_message_and_format_detection(tmp_path):
    t = Trajectory.from_steps("Q?", [Step("think", "search[q]", "obs"),
                                     Step("done", "finish[A]", "Episode finished, reward = True")],
                              system="You are an agent.")
    assert t.answer == "A"
    write_chat(tmp_path / "c.jsonl", [t])
    assert read_trajectories(tmp_path / "c.jsonl") == [t]
    rec = json.loads((tmp_path / "c.jsonl").read_text())
    assert [m["role"] for m in rec["messages"]] == ["system", "user", "assistant", "user",
                                                    "assistant", "user"]
    (tmp_path / "bad.jsonl").write_text('{"foo": 1}\n')
    with pytest.raises(ValueError):
        read_trajectories(tmp_path / "bad.jsonl")


# --- the loop -----------------------------------------------------------------------------------

@needs_data
def test_replay_reproduces_a_trajectory(trajs, search):
    traj = next(t for t in trajs if len(t.steps) >= 3)
    llm = ReplayLLM([traj])
    events: list[dict] = []
    res = run_react(traj.question, llm, {"search": search}, on_event=events.append)
    assert isinstance(res, ReactResult)
    assert res.finished and res.error is None and res.answer == traj.answer
    assert res.iterations == len(traj.steps) == len(events)
    assert [s["observation"] for s in res.steps[:-1]] == [s.observation for s in traj.steps[:-1]]
    assert events == res.steps
    # Inference text == training text: each prompt is format_prompt + the steps so far + "Thought:".
    for i, prompt in enumerate(llm.prompts):
        assert prompt == format_prompt(traj.question) + format_target(
            Trajectory(traj.question, traj.steps[:i])) + "Thought:"
    # ... and the finished episode, rewarded, is the released record again.
    assert to_alpaca(res.to_trajectory(reward=True)) == to_alpaca(traj)
    d = res.to_dict()
    assert set(d) >= {"question", "answer", "finished", "steps", "iterations", "error"}
    assert set(d["steps"][0]) == {"thought", "action", "observation", "llm_s", "tool_s"}
    assert json.loads(json.dumps(d)) == d
    assert llm.usage.calls == len(traj.steps)


@needs_data
def test_replay_all_released_trajectories_em_1(trajs, search):
    examples = gold_examples(trajs)
    seen: list[dict] = []
    out = evaluate_react(examples, ReplayLLM(trajs), {"search": search}, on_result=seen.append)
    assert (out["em"], out["f1"], out["n"], out["finished_rate"]) == (1.0, 1.0, 500, 1.0)
    assert out["avg_iterations"] == pytest.approx(1385 / 500)
    assert len(seen) == 500 and seen[0] is out["rows"][0]
    for t, row in zip(trajs, out["rows"]):
        assert row["gold"] == t.answer and row["answer"] == t.answer
        assert [s["observation"] for s in row["steps"][:-1]] == [s.observation
                                                                 for s in t.steps[:-1]]


@needs_data
def test_evaluate_scores_wrong_answers(trajs, search):
    sub = trajs[:5]
    out = evaluate_react(gold_examples(sub), ReplayLLM(sub, answer_override="yes"),
                         {"search": search})
    assert out["em"] == 0.0 and out["f1"] == 0.0 and out["finished_rate"] == 1.0
    assert "usage" in out and out["usage"]["llm_calls"] == sum(len(t.steps) for t in sub)


def test_retry_then_finish_empty():
    calls: list = []
    llm = scripted(" I am not sure what to do.", record=calls)
    events: list = []
    res = run_react("Q?", llm, {"search": lambda q: "x"}, max_retries=3, on_event=events.append)
    assert not res.finished and res.answer == "" and res.retries == 3
    assert "no parsable action" in res.error
    assert len(calls) == 4 and res.iterations == 1 == len(events)
    assert res.steps[-1]["action"] == "finish[]"
    assert res.steps[-1]["observation"] == FINISH_OBSERVATION
    # Retry 1 keeps the thought and asks for the action alone; retry 2 regenerates with more room.
    assert calls[1][0].endswith("Thought: I am not sure what to do.\nAction:")
    assert calls[2][0].endswith("Thought:") and calls[2][1] == 2 * calls[0][1]


def test_retry_recovers_action():
    calls: list = []
    llm = scripted(" The answer is 42.", " finish[42]", record=calls)
    res = run_react("Q?", llm, {})
    assert res.finished and res.answer == "42" and res.retries == 1 and res.error is None
    assert res.steps == [{**res.steps[0], "thought": "The answer is 42.", "action": "finish[42]"}]


def test_max_iterations_enforced():
    queries: list[str] = []
    llm = scripted(" Keep looking.\nAction: search[more]")
    res = run_react("Q?", llm, {"search": lambda q: queries.append(q) or "nothing"})
    assert res.iterations == 11 and llm.usage.calls == 11 and len(queries) == 11
    assert not res.finished and res.answer == "" and "11 iterations" in res.error
    res3 = run_react("Q?", scripted(" again\nAction: search[x]"), {"search": lambda q: "n"},
                     max_iterations=3)
    assert res3.iterations == 3 and not res3.finished


def test_unknown_tool_and_tool_errors():
    def boom(q: str) -> str:
        raise RuntimeError("backend down")

    llm = scripted(" Look it up.\nAction: lookup[Paris]", " Try search.\nAction: Search[Paris]",
                   " Multi\nAction: wiki[x]", " Give up.\nAction: Finish[Paris]")
    res = run_react("Q?", llm, {"search": boom, "wiki": lambda q: "line one\nline two"})
    obs = [s["observation"] for s in res.steps]
    assert "no tool 'lookup'" in obs[0] and "Available tools: finish, search, wiki" in obs[0]
    assert obs[1].startswith("Tool error (Search): RuntimeError: backend down")
    assert obs[2] == "line one line two"  # one observation per line, as in the training text
    assert res.finished and res.answer == "Paris" and res.iterations == 4


def test_llm_error_keeps_partial_episode():
    state = {"n": 0}

    def fn(prompt, stop, max_tokens):
        state["n"] += 1
        if state["n"] > 1:
            raise ConnectionError("endpoint gone")
        return " t\nAction: search[x]"

    res = run_react("Q?", FunctionLLM(fn), {"search": lambda q: "obs"})
    assert res.iterations == 1 and not res.finished
    assert res.error == "llm error: ConnectionError: endpoint gone"


@needs_data
def test_few_shot_prompt(trajs):
    prefix = few_shot_prefix(trajs[:2])
    assert trajs[0].question.strip() + "\nThought: " in prefix
    assert prefix.count("Observation: Episode finished, reward = True\n\n\n") == 2
    calls: list = []
    run_react("  Who?  ", scripted(" x\nAction: finish[y]", record=calls), {}, few_shot=prefix)
    assert calls[0][0] == prefix + "Who?\nThought:"


# --- fine-tuning data ---------------------------------------------------------------------------

@needs_data
def test_sft_pairs_match_inference_text(trajs):
    pairs = sft_pairs(trajs)
    records = read_records(ALPACA)
    assert len(pairs) == 500
    for (prompt, completion), rec in zip(pairs, records):
        assert prompt == format_prompt(rec["instruction"])
        assert prompt == ALPACA_TEMPLATE.format(instruction=rec["instruction"].strip())
        assert completion == rec["output"]
        assert prompt.endswith("### Response:\n") and completion.startswith("Thought: ")


@needs_data
def test_split_and_gold(trajs):
    train, val = split_trajectories(trajs, 50, seed=7)
    assert len(train) == 450 and len(val) == 50
    assert (train, val) == split_trajectories(trajs, 50, seed=7)
    assert val != split_trajectories(trajs, 50, seed=8)[1]
    ids = {id(t) for t in train} | {id(t) for t in val}
    assert len(ids) == 500
    with pytest.raises(ValueError):
        split_trajectories(trajs, 501, seed=0)
    gold = gold_examples(val)
    assert len(gold) == 50 and all(g["answer"] for g in gold)
    assert gold[0] == {"question": val[0].question, "answer": val[0].answer}
