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
