"""The FireAct table read back from MLflow (a real sqlite store): rows, order, intervals, the CLI."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from conftest import ringbit
from ringbit.agents.react.table import markdown, rows, same_questions


def react_run(client, exp, name, em, prompting, n="100", status="FINISHED", agent="react", model="smollm2"):
    run = client.create_run(exp, run_name=name, tags={"ringbit.agent": agent})
    for k, v in {"llm.model": model, "llm.url": "http://lm:8000", "llm.api": "completions", "prompting": prompting, "search": "bm25:traj.json",
                 "questions": "traj.json", "split": "heldout", "n": n}.items():
        client.log_param(run.info.run_id, k, v)
    for k, v in {"em": em, "f1": em + 0.1, "n": float(n), "em_ci_low": em - 0.05, "em_ci_high": em + 0.05,
                 "f1_ci_low": em + 0.05, "f1_ci_high": em + 0.15, "finished_rate": 0.9, "avg_iterations": 3.5}.items():
        client.log_metric(run.info.run_id, k, v)
    client.set_terminated(run.info.run_id, status)
    return run.info.run_id


def test_rows_come_from_finished_react_runs_in_the_order_asked(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("agents")
    react_run(client, exp, "zero-shot", 0.02, "zero-shot")
    react_run(client, exp, "lora", 0.21, "finetuned")
    react_run(client, exp, "crashed", 0.5, "finetuned", status="FAILED")
    react_run(client, exp, "memwalker", 0.5, "finetuned", agent="memwalker")

    table = rows(client, [exp])
    assert [r["row"] for r in table] == ["zero-shot", "lora"]  # finished react runs only, oldest first
    assert [r["row"] for r in rows(client, [exp], ["lora", "zero-shot"])] == ["lora", "zero-shot"]
    assert table[1]["em_ci"] == pytest.approx((0.16, 0.26)) and same_questions(table)
    text = markdown(table)
    assert "| lora | smollm2 | finetuned (completions) | bm25:traj.json | 100 | 0.210 [0.160, 0.260] | 0.310 [0.260, 0.360] | 0.90 | 3.5 |" in text
    with pytest.raises(ValueError, match="no finished ReAct evaluation run named crashed"):
        rows(client, [exp], ["crashed"])
    react_run(client, exp, "few-shot-50", 0.1, "few-shot", n="50")
    assert not same_questions(rows(client, [exp]))

    out = ringbit("agents", "table", "react", "--experiment", "agents", "--mlflow-uri", uri, "--runs", "lora,zero-shot",
                  "--json")
    assert out.returncode == 0, out.stderr
    assert [r["row"] for r in json.loads(out.stdout)] == ["lora", "zero-shot"]
    bad = ringbit("agents", "table", "react", "--experiment", "nope", "--mlflow-uri", uri)
    assert bad.returncode == 2 and "--experiment nope: no such MLflow experiment" in bad.stderr


def test_a_run_that_logged_no_model_shows_the_endpoint_it_asked(tmp_path):
    """Runs from before the resolved model was logged have llm.model "None": the row names the URL."""
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("agents")
    react_run(client, exp, "old", 0.1, "finetuned", model="None")
    (row,) = rows(client, [exp])
    assert row["model"] == "http://lm:8000" and "| old | http://lm:8000 | finetuned (completions) |" in markdown([row])
    client.set_tag(row["run_id"], "ringbit.llm_model", "models:/smollm2-react-lora@current")  # what evals tag now
    wide = {**row, "search": "bm25:/work/repo/../shared/fireact/hotpotqa_alpaca.json"}
    assert "| bm25:hotpotqa_alpaca.json |" in markdown([wide])  # the table names the file, JSON keeps the path
    assert rows(client, [exp])[0]["model"] == "models:/smollm2-react-lora@current"
