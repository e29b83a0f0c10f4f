"""Agent evaluation configs and their CLI / job-script input checks: no services are started
(`--dry-run`, exit 2 before any work).

Moved from tests/integration/test_agents_evaluation.py (the jobs on the platform stay there)."""

from __future__ import annotations

import json

import pytest

from conftest import REPO, ringbit
from ringbit.agents.computer.config import ComputerEvalConfig, with_resolved_tasks
from ringbit.agents.react.config import ReactEvalConfig
from ringbit.config import ConfigError
from ringbit.workflows import load_workflow_config


def test_seed_ranges_and_limits():
    assert ComputerEvalConfig(tasks=["click-button"], seeds="0-3,9").seeds == [0, 1, 2, 3, 9]
    assert ComputerEvalConfig(tasks=["click-button"], seeds=7).seeds == [7]
    for bad, field in [({"seeds": "0-x"}, "seeds"), ({"seeds": [-1]}, "seeds"), ({"trials": 0}, "trials"),
                       ({"trials": 11}, "trials"), ({"tasks": ["click-buton"]}, "tasks"),
                       ({"llm": {"url": "localhost:8000"}}, "llm.url")]:
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            load_workflow_config("eval-computer", REPO / "jobs/configs/agents-computer.yaml",
                                 [f"{k}={json.dumps(v)}" for k, v in bad.items()])


def test_task_names_are_checked_when_the_workflow_starts():
    # validating the schema needs no browser stack; the workflow's preflight checks the names
    cfg = ComputerEvalConfig(tasks=["click-buton", "miniwob/click-button-v1"])
    with pytest.raises(ConfigError, match=r"^tasks: unknown MiniWoB task 'click-buton' \(close matches: click-button"):
        with_resolved_tasks(cfg)
    assert with_resolved_tasks(cfg.model_copy(update={"tasks": ["miniwob/click-button-v1"]})).tasks == ["click-button"]


def test_react_eval_config_resolves_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "qa.jsonl").write_text('{"question": "q?", "answer": "a"}\n')
    cfg = ReactEvalConfig(questions="qa.jsonl", search="bm25:builtin:python-topics")
    assert cfg.questions == str(tmp_path / "qa.jsonl")  # relative to where the user is
    with pytest.raises(ValueError, match="no file"):
        ReactEvalConfig(questions="missing.jsonl")
    with pytest.raises(ValueError, match="bm25"):
        ReactEvalConfig(questions="qa.jsonl", search="google")


def test_cli_rejects_bad_input_with_exit_2():
    proc = ringbit("agents", "eval", "computer", "--tasks", "click-button", "--trials", "0", "--dry-run")
    assert proc.returncode == 2 and "trials" in proc.stderr and "Traceback" not in proc.stderr
    proc = ringbit("agents", "eval", "react", "--questions", "nowhere.json", "--dry-run")
    assert proc.returncode == 2 and "questions" in proc.stderr and "no file" in proc.stderr
    proc = ringbit("agents", "eval", "computer", "--tasks", "click-buton", "--dry-run")
    assert proc.returncode == 2 and "tasks: unknown MiniWoB task 'click-buton'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_job_script_rejects_unknown_task_with_exit_2():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "jobs/eval_computer_agent.py", "--config", "jobs/configs/agents-computer.yaml",
                           "--set", "tasks=[click-buton]"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "tasks: unknown MiniWoB task 'click-buton'" in proc.stderr and "Traceback" not in proc.stderr


FIREACT = REPO.parent / "shared" / "fireact"


@pytest.mark.skipif(not (FIREACT / "hotpotqa_alpaca.json").is_file(),
                    reason="FireAct trajectories not found at ../shared/fireact")
def test_every_question_file_works_with_every_search_or_is_refused_up_front(tmp_path, monkeypatch):
    """A question file and a search either combine (the questions load and the tool answers) or
    the config refuses them naming the field and the search to pass; never a KeyError at run time."""
    from ringbit.agents.evaluation import react_examples, react_tools
    from ringbit.agents.react.tools import write_search_cache
    from ringbit.agents.react.trajectories import read_records

    monkeypatch.chdir(tmp_path)
    alpaca = read_records(FIREACT / "hotpotqa_alpaca.json")[:3]
    (tmp_path / "traj.json").write_text(json.dumps(alpaca))
    (tmp_path / "chat.jsonl").write_text("".join(
        line + "\n" for line in (FIREACT / "hotpotqa_chat.jsonl").read_text().splitlines()[:3]))
    (tmp_path / "qa.jsonl").write_text('{"question": "Who wrote Hamlet?", "answer": "Shakespeare"}\n')
    (tmp_path / "qa.json").write_text('[{"question": "Who wrote Hamlet?", "answer": "Shakespeare"}]')
    write_search_cache(tmp_path / "cache.jsonl", {"hamlet": "Hamlet is a play by William Shakespeare."})
    (tmp_path / "passages.jsonl").write_text('{"title": "Hamlet", "text": "Hamlet is a tragedy by Shakespeare."}\n')
    searches = ["cache", "cache:traj.json", "cache:chat.jsonl", "cache:cache.jsonl", "bm25:passages.jsonl",
                "bm25:builtin:python-topics", "bm25:traj.json"]
    refused = {}
    for questions in ("traj.json", "chat.jsonl", "qa.jsonl", "qa.json"):
        for search in searches:
            try:
                cfg = ReactEvalConfig(questions=questions, search=search, n=2)
            except ValueError as exc:
                refused[questions, search] = str(exc)
                continue
            examples, prefix = react_examples(cfg)
            assert prefix is None  # prompting=finetuned: the Alpaca template
            assert examples and all(e["question"] and e["answer"] for e in examples)
            assert isinstance(react_tools(cfg)["search"]("Hamlet"), str)
    # only the bare cache with a question/answer file (it has no recorded searches) is refused
    assert set(refused) == {("qa.jsonl", "cache"), ("qa.json", "cache")}
    assert all("search" in why and "bm25:builtin:python-docs" in why for why in refused.values())
    for bad, field in [("qa.jsonl", "search"), ("passages.jsonl", "questions")]:  # noqa: B007
        with pytest.raises(ValueError, match=field):
            ReactEvalConfig(questions="traj.json" if field == "search" else bad,
                            search=f"cache:{bad}" if field == "search" else "bm25:passages.jsonl")
    with pytest.raises(ValueError, match="split: heldout needs"):
        ReactEvalConfig(questions="qa.jsonl", search="bm25:passages.jsonl", split="heldout")


@pytest.mark.skipif(not (FIREACT / "hotpotqa_alpaca.json").is_file(),
                    reason="FireAct trajectories not found at ../shared/fireact")
def test_prompting_modes_never_show_an_evaluated_question_as_an_example(tmp_path):
    from ringbit.agents.evaluation import react_examples
    from ringbit.agents.react.react import ALPACA_TEMPLATE, format_prompt

    path = FIREACT / "hotpotqa_alpaca.json"
    for split in ("heldout", "all"):
        cfg = ReactEvalConfig(questions=str(path), split=split, n=500, prompting="few-shot",
                              few_shot_examples=3, search="bm25:builtin:python-topics")
        examples, prefix = react_examples(cfg)
        assert prefix.count("finish[") >= 3 and "Examples:" in prefix
        assert not [e for e in examples if e["question"].strip() in prefix]
        prompt = format_prompt(examples[0]["question"], prefix)
        assert prompt.startswith(prefix) and prompt.endswith(examples[0]["question"].strip() + "\n")
    zero = ReactEvalConfig(questions=str(path), split="heldout", prompting="zero-shot", search="bm25:builtin:python-topics")
    examples, prefix = react_examples(zero)
    assert "finish[" in prefix and "Examples:" not in prefix and len(examples) == 50
    tuned = react_examples(zero.model_copy(update={"prompting": "finetuned"}))
    assert tuned[0] == examples and tuned[1] is None  # the Alpaca template (format_prompt default)
    assert format_prompt("Q?").startswith(ALPACA_TEMPLATE.split("{")[0])
    (tmp_path / "qa.jsonl").write_text('{"question": "q?", "answer": "a"}\n')
    with pytest.raises(ValueError, match="prompting: few-shot takes its examples from a trajectories file"):
        ReactEvalConfig(questions=str(tmp_path / "qa.jsonl"), prompting="few-shot", search="bm25:builtin:python-topics")


@pytest.mark.skipif(not (FIREACT / "hotpotqa_alpaca.json").is_file(),
                    reason="FireAct trajectories not found at ../shared/fireact")
def test_closed_world_search_finds_what_the_trajectories_observed():
    """bm25 over the released trajectories indexes every observation they recorded (plus the
    built-in docs): the query a trajectory searched brings back what it observed."""
    from ringbit.agents.react.tools import observation_passages, search_tool
    from ringbit.agents.react.trajectories import parse_action, read_trajectories

    trajectories = read_trajectories(FIREACT / "hotpotqa_alpaca.json")
    passages = observation_passages(trajectories)
    assert len(passages) > len(trajectories) and len(set(passages)) == len(passages)
    tool = search_tool(f"bm25:{FIREACT / 'hotpotqa_alpaca.json'}")
    hits = total = 0
    for t in trajectories[:40]:
        for step in t.steps:
            parsed = parse_action(step.action)
            if parsed and parsed[0] == "search" and step.observation in passages:
                total += 1
                hits += tool(parsed[1])[:60] == step.observation[:60]
    # measured: 25 of 66 (38%) come back first; BM25 over Google snippets is a weaker engine than
    # Google, and other snippets share the query's words (docs/agents.md)
    assert total >= 40 and hits / total >= 0.3, (hits, total)


def test_success_table_rows_and_text():
    from ringbit.agents.evaluation import format_success_table, success_table

    summary = {"by_trial": [0.25, 0.5], "tasks": {"a": {"by_trial": [0.5, 1.0], "episodes": 2},
                                                 "b": {"by_trial": [0.0, 0.0], "episodes": 2}}}
    plain = {"by_trial": [0.25, 0.25], "tasks": {"a": {"by_trial": [0.5, 0.5], "episodes": 2},
                                                "b": {"by_trial": [0.0, 0.0], "episodes": 2}}}
    rows = success_table(summary, plain)
    assert [r["task"] for r in rows] == ["a", "b", "all"] and rows[-1]["episodes"] == 4
    assert rows[0] == {"task": "a", "episodes": 2, "trial_1": 0.5, "final": 1.0, "final_no_reflection": 0.5}
    lines = format_success_table(rows, 2)
    assert "after 2" in lines[0] and "no refl." in lines[0] and lines[-1].split() == ["all", "4", "0.25", "0.50", "0.25"]
    assert "no refl." not in format_success_table(success_table(summary, None), 2)[0]


class EpisodePoolDouble:
    """Test double for BrowserPool.run_all (no browsers): records what it was asked to play and
    returns a failed one-trial episode for each."""

    def __init__(self) -> None:
        self.played: list[tuple[str, int]] = []

    def run_all(self, episodes, on_result=None):
        out = []
        for e in episodes:
            self.played.append((e["task"], e["seed"]))
            out.append({"task": e["task"], "seed": e["seed"], "success": False, "reflection": e["reflection"],
                        "trials": [{"success": False}] * e["trials"]})
            if on_result:
                on_result(out[-1])
        return out


def test_ablation_replays_only_episodes_not_solved_at_trial_1():
    from ringbit.agents.evaluation import _ablation_episodes

    cfg = ComputerEvalConfig(tasks=["click-button"], seeds="0-3", ablation=True, plan_max_tokens=32)
    assert cfg.plan_max_tokens == 32 and cfg.reflect_max_tokens == 96
    first = [{"task": "click-button", "seed": 0, "success": True, "trials": [{}]},         # trial 1: reused
             {"task": "click-button", "seed": 1, "success": True, "trials": [{}, {}]},     # needed reflection
             {"task": "click-button", "seed": 2, "success": False, "trials": [{}] * 3},
             {"task": "click-button", "seed": 3, "success": True, "trials": [{}], "error": "x"}]
    wanted = [{"task": "click-button", "seed": s, "reflection": False, "trials": 3} for s in range(4)]
    pool, seen = EpisodePoolDouble(), []
    out = _ablation_episodes(first, wanted, cfg, pool, seen.append)
    assert pool.played == [("click-button", 1), ("click-button", 2), ("click-button", 3)]
    assert [r["seed"] for r in out] == [0, 1, 2, 3] and len(seen) == 4  # input order; every result reported
    assert out[0]["reused_trial_1"] and out[0]["reflection"] is False and out[0]["success"]
    assert not any(r.get("reused_trial_1") for r in out[1:])
    # sampling (temperature > 0) could take another path: every episode is played
    pool = EpisodePoolDouble()
    _ablation_episodes(first, wanted, cfg.model_copy(update={"llm": cfg.llm.model_copy(update={"temperature": 0.7})}),
                       pool, lambda r: None)
    assert len(pool.played) == 4
    with pytest.raises(ConfigError, match="plan_max_tokens"):
        load_workflow_config("eval-computer", REPO / "jobs/configs/agents-computer.yaml", ["plan_max_tokens=4"])
