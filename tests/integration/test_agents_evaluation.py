"""Agent evaluation jobs and FireAct fine-tuning as a user runs them: `ringbit agents eval …` and
`ringbit submit finetune-react` submitted to the local platform (real Ray, MLflow, Serve, Chromium),
thinking with the platform's own tiny LM through its OpenAI-compatible endpoint.

Config and CLI-input checks that start no services are in tests/unit/test_agents_evaluation_config.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import requests
import torch

from conftest import REPO, ringbit
from helpers import free_port
from ringbit.models.config import ModelConfig

FIREACT = REPO.parent / "shared" / "fireact" / "hotpotqa_alpaca.json"
needs_fireact = pytest.mark.skipif(not FIREACT.exists(), reason=f"FireAct trajectories not found at {FIREACT}")
needs_chromium = pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")),
                                    reason="chromium/chromedriver not installed: run `make system-deps`")
CFG = ModelConfig(vocab_size=512, d_model=64, n_layers=2, n_heads=4, max_seq_len=4096)


# ------------------------------------------------------------------ jobs on the platform


@pytest.fixture(scope="module")
def served(platform, tmp_path_factory):
    from ringbit.data.corpus import builtin_documents
    from ringbit.data.tokenizer import train_tokenizer
    from ringbit.models import Transformer
    from ringbit.models.io import save_model_dir

    env, client, mlflow_url = platform
    env = {**env, "MLFLOW_TRACKING_URI": mlflow_url}
    torch.manual_seed(0)
    tok = train_tokenizer(builtin_documents("builtin:python-topics"), CFG.vocab_size)
    model_dir = save_model_dir(tmp_path_factory.mktemp("lm"), CFG, Transformer(CFG).state_dict(), tok.to_str())
    port = free_port()
    models = [a for app in ("lm", "evaluator-lm", "react-lm") for a in ("--model", f"{app}={model_dir}")]
    up = ringbit("serve", "up", *models, "--port", str(port), env=env, timeout=300)
    assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
    yield env, client, f"http://127.0.0.1:{port}", model_dir
    ringbit("serve", "down", env=env, timeout=120)


def finished_run(client, name: str):
    exp = client.get_experiment_by_name("ringbit-tests-agents")
    runs = client.search_runs([exp.experiment_id], f"attributes.run_name = '{name}'")
    assert len(runs) == 1
    assert runs[0].info.status == "FINISHED"
    return runs[0]


def artifact_rows(client, run_id: str, name: str) -> list[dict]:
    path = client.download_artifacts(run_id, name)
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def assert_fine_tune_learned(client, job_name: str, registered_model: str) -> None:
    """A 4-step fine-tune finished, its held-out val_ppl fell from step 2 to 4, and its model is @current."""
    exp = client.get_experiment_by_name("ringbit-tests-agents")
    run = client.search_runs([exp.experiment_id], f"tags.`ringbit.job_name` = '{job_name}'")[0]
    assert run.info.status == "FINISHED"
    ppl = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val_ppl"))
    assert [s for s, _ in ppl] == [2, 4] and ppl[1][1] < ppl[0][1], ppl
    assert client.get_model_version_by_alias(registered_model, "current").run_id == run.info.run_id


COMMON = ("--set", "mlflow.experiment=ringbit-tests-agents")


@needs_fireact
def test_react_eval_job(served, fluent_mlflow):
    env, client, url, _ = served
    proc = ringbit("agents", "eval", "react", "--questions", str(FIREACT), "--split", "all", "--n", "3", "--llm-url", url,
                   "--name", "t-react", "--set", "max_iterations=2", "--set", "max_tokens=24", *COMMON,
                   env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = finished_run(client, "t-react")
    assert run.data.metrics["n"] == 3 and 0 <= run.data.metrics["em"] <= run.data.metrics["f1"] <= 1
    assert run.data.metrics["llm_calls"] >= 3
    # the run names the endpoint and the model it asked (the config's llm.model was None)
    asked = requests.get(f"{url}/v1/models", timeout=30).json()["data"][0]["id"]
    assert run.data.params["llm.url"] == url and run.data.params["llm.model"] == asked
    assert run.data.tags["ringbit.llm_model"] == asked
    rows = artifact_rows(client, run.info.run_id, "predictions.jsonl")
    gold = json.loads(FIREACT.read_text())[:3]
    # Gold answers are the released trajectories' finish[] answers, in order.
    assert [r["gold"] for r in rows] == [g["output"].rsplit("finish[", 1)[1].split("]")[0] for g in gold]

    # one MLflow trace per question under the run: an LLM span per call (tokens), a TOOL span per search
    mlflow = fluent_mlflow
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    traces = mlflow.search_traces(locations=[run.info.experiment_id], run_id=run.info.run_id, return_type="list")
    assert len(traces) == 3
    llm_spans = [s for t in traces for s in t.data.spans if s.span_type == "LLM"]
    assert len(llm_spans) == run.data.metrics["llm_calls"]
    assert all(s.attributes["mlflow.chat.tokenUsage"]["output_tokens"] >= 0 and s.inputs["prompt"] for s in llm_spans)
    steps = sum(1 for r in rows for step in r["steps"] if step["action"].lower().startswith("search["))
    assert len([s for t in traces for s in t.data.spans if s.span_type == "TOOL"]) == steps
    roots = sorted((s for t in traces for s in t.data.spans if s.parent_id is None), key=lambda s: s.outputs["gold"])
    assert len(roots) == 3 and {s.span_type for s in roots} == {"AGENT"}
    assert sorted(r["gold"] for r in rows) == [s.outputs["gold"] for s in roots]


def test_memwalker_eval_job(served):
    env, client, url, _ = served
    proc = ringbit("agents", "eval", "memwalker", "--docs", "2", "--words", "200,400", "--segment-words", "60",
                   "--llm-url", url, "--name", "t-memwalker", "--set", "max_steps=3", "--set", "window_words=150",
                   *COMMON, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = finished_run(client, "t-memwalker")
    m = run.data.metrics
    assert m["n"] == 4 and 0 <= m["accuracy"] <= 1  # 2 documents of each length
    for method in ("truncate.", "retrieve.", ""):  # the baselines beside MemWalker, per length
        assert {f"{method}accuracy.200", f"{method}accuracy.400"} <= set(m)
    assert m["truncate.llm_calls_per_question"] == m["retrieve.llm_calls_per_question"] == 1
    assert m["llm_calls_per_question"] > 1  # the tree's summaries and the walk
    walks = artifact_rows(client, run.info.run_id, "walks.jsonl")
    assert sorted(w["n_words"] for w in walks) == [200, 200, 400, 400]
    for w in walks:
        assert w["memwalker"]["steps"] <= 3
        assert w["truncate"]["kept_fraction"] <= 150 / 200 + 1e-9  # the window cut the text
        assert 0 < len(w["retrieve"]["segments"]) <= 3  # BM25 segments that fit 150 words
    names = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert {"accuracy_by_depth.png", "accuracy_by_length.png", "accuracy_table.csv"} <= set(names)
    assert "retrieve" in proc.stdout and "accuracy" in proc.stdout  # the printed table
    # one trace per document: a span per reader, LLM spans inside (summaries, navigation, answers)
    import mlflow

    mlflow.set_tracking_uri(client.tracking_uri)
    traces = mlflow.search_traces(locations=[run.info.experiment_id], run_id=run.info.run_id, return_type="list")
    assert len(traces) == 4
    spans = traces[0].data.spans
    assert {s.name for s in spans if s.span_type == "CHAIN"} == {"memwalker", "truncate", "retrieve"}
    assert sum(s.span_type == "LLM" for s in spans) == sum(
        w[m]["llm_calls"] for w in walks if str(w["id"]) == traces[0].info.tags["ringbit.document"]
        for m in ("memwalker", "truncate", "retrieve"))


@needs_chromium
def test_computer_eval_job_on_two_browsers(served):
    env, client, url, _ = served
    proc = ringbit("agents", "eval", "computer", "--tasks", "click-button", "--seeds", "0-1", "--trials", "2",
                   "--browsers", "2", "--llm-url", url, "--name", "t-computer", "--set", "max_steps=3",
                   "--ablation", "--set", "cpus_per_browser=0.25", *COMMON, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = finished_run(client, "t-computer")
    m = run.data.metrics
    assert m["episodes"] == 4 and 0 <= m["success_rate"] <= 1 and "success_rate.click-button" in m
    assert 0 <= m["no_reflection.success_rate"] <= 1  # the ablation: the same seeds without reflection
    assert m["reflection_gain"] == pytest.approx(m["success_rate"] - m["no_reflection.success_rate"])
    assert "no refl." in proc.stdout  # the per-task table
    history = client.get_metric_history(run.info.run_id, "success_rate_by_trial")
    assert sorted(h.step for h in history) == [1, 2]
    rates = [h.value for h in sorted(history, key=lambda h: h.step)]
    assert rates[0] <= rates[1]  # success after k trials never falls with k
    episodes = artifact_rows(client, run.info.run_id, "trajectories.jsonl")
    assert sorted((e["reflection"], e["seed"]) for e in episodes) == [(False, 0), (False, 1), (True, 0), (True, 1)]
    twins = {(e["task"], e["seed"]): e for e in episodes if e["reflection"]}
    for e in episodes:
        if not e["reflection"]:  # no reflection call and nothing replayed from memory
            assert all(t["reflection"] is None for t in e["trials"])
            # reused only where its twin was solved at trial 1 (greedy: the same trial again)
            twin = twins[(e["task"], e["seed"])]
            assert bool(e.get("reused_trial_1")) == (twin["success"] and len(twin["trials"]) == 1)
        assert 1 <= len(e["trials"]) <= 2 and not e.get("error"), e.get("error")
        plans = [ev for ev in e["events"] if ev["type"] == "plan"]
        # The trajectory keeps every screen the planner saw, as leaf-element lines of the real page.
        assert plans and any("<button id=" in line for line in plans[0]["screen"]), plans[:1]
        assert e["trials"][0]["reason"]
    names = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert {"trajectories.jsonl", "results.csv", "success_table.csv", "success_by_trial.png"} <= set(names)
    # every episode is a trace under the run: planning (LLM) and action (TOOL) spans with the screens
    import mlflow

    mlflow.set_tracking_uri(client.tracking_uri)
    traces = mlflow.search_traces(locations=[run.info.experiment_id], run_id=run.info.run_id, return_type="list")
    episodes = [e for e in episodes if not e.get("reused_trial_1")]  # a reused episode is traced once
    assert len(traces) == len(episodes) == 4 - m["episodes_reused"]
    spans = [s for t in traces for s in t.data.spans]
    assert all([s.span_type for s in t.data.spans].count("AGENT") == 1 for t in traces)
    # one LLM span per planning call (with the screen it saw), one TOOL span per recorded step
    plan_spans = [s for s in spans if s.name == "plan"]
    assert len(plan_spans) == sum(ev["type"] == "plan" for e in episodes for ev in e["events"])
    assert all("<button id=" in s.inputs["screen"] for s in plan_spans)
    assert sum(s.span_type == "TOOL" for s in spans) == sum(len(t["steps"]) for e in episodes for t in e["trials"])


@pytest.fixture(scope="module")
def computer_demos(platform):
    """`ringbit agents demos computer` on two tasks x two training seeds: (CLI process, MLflow run)."""
    env, client, _ = platform
    proc = ringbit("agents", "demos", "computer", "--tasks", "click-button,login-user", "--seeds", "1000-1001",
                   "--browsers", "2", "--name", "t-demos", "--set", "cpus_per_browser=0.25", *COMMON,
                   env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, finished_run(client, "t-demos")


@needs_chromium
def test_computer_demos_job_records_examples_in_the_agents_format(platform, computer_demos):
    from ringbit.agents.computer.demos import check_example

    _, client, _ = platform
    proc, run = computer_demos
    m = run.data.metrics
    assert m["episodes"] == 8 and m["plan_usable_rate"] == 1.0 and m["errors"] == 0
    rows = artifact_rows(client, run.info.run_id, "demos.jsonl")
    assert len(rows) == m["examples"] == m["plan_examples"] + m["reflection_examples"]
    assert {(r["task"], r["seed"]) for r in rows if r["kind"] == "plan"} == {
        (t, s) for t in ("click-button", "login-user") for s in (1000, 1001)}
    for row in rows:
        check_example(row)
    assert "yield_by_task.csv" in [a.path for a in client.list_artifacts(run.info.run_id)]
    assert "login-user" in proc.stdout and "reflections" in proc.stdout  # the per-task yield table


@needs_chromium
def test_finetune_computer_job_learns_the_demonstrations(served, computer_demos):
    env, client, _, model_dir = served
    _, demos = computer_demos
    proc = ringbit("submit", "finetune-computer", "-c", "jobs/configs/finetune-computer-smollm2.yaml",
                   "--name", "t-computer-sft", "--set", f"base_model={model_dir}",
                   "--set", f"data.demos=runs:/{demos.info.run_id}/demos.jsonl", "--set", "data.val_fraction=0.25",
                   "--set", "max_seq_len=4096", "--set", "train.max_steps=4", "--set", "train.eval_interval=2",
                   "--set", "train.checkpoint_interval=4", "--set", "train.warmup_steps=1",
                   "--set", "train.lr=3e-3", "--set", "train.micro_batch_size=1", "--set", "train.global_batch_size=2",
                   "--set", "mlflow.experiment=ringbit-tests-agents", "--set", "workers.cpus_per_worker=0.5",
                   "--set", "mlflow.registered_model=tiny-computer-agent", env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert_fine_tune_learned(client, "t-computer-sft", "tiny-computer-agent")


def test_finetune_memwalker_job_learns_the_teachers_traces(served):
    env, client, _, model_dir = served
    proc = ringbit("submit", "finetune-memwalker", "-c", "jobs/configs/finetune-memwalker-smollm2.yaml",
                   "--name", "t-memwalker-sft", "--set", f"base_model={model_dir}",
                   "--set", "data.n_docs=4", "--set", "data.n_words=[400]", "--set", "data.segment_words=60",
                   "--set", "data.fanout=3", "--set", "data.val_fraction=0.25",
                   "--set", "train.max_steps=4", "--set", "train.eval_interval=2",
                   "--set", "train.checkpoint_interval=4", "--set", "train.warmup_steps=1",
                   "--set", "train.lr=3e-3", "--set", "train.global_batch_size=2",
                   "--set", "mlflow.experiment=ringbit-tests-agents", "--set", "workers.cpus_per_worker=0.5",
                   "--set", "mlflow.registered_model=tiny-memwalker-reader", env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "teacher traces:" in proc.stdout and "navigate" in proc.stdout  # what it learns, counted
    assert_fine_tune_learned(client, "t-memwalker-sft", "tiny-memwalker-reader")


def test_unreachable_llm_fails_the_job_clearly(served):
    env, _, _, _ = served
    proc = ringbit("agents", "eval", "memwalker", "--docs", "1", "--words", "200",
                   "--llm-url", f"http://127.0.0.1:{free_port()}", "--set", "llm.retries=0", *COMMON,
                   env=env, timeout=300)
    assert proc.returncode == 1
    assert "not usable" in proc.stdout + proc.stderr


@needs_fireact
def test_finetune_react_job(served):
    env, client, _, model_dir = served
    proc = ringbit("submit", "finetune-react", "-c", "jobs/configs/finetune-react.yaml", "--name", "t-react-sft",
                   "--set", f"base_model={model_dir}", "--set", f"data.trajectories={FIREACT}",
                   "--set", "data.n_val=4", "--set", "data.max_train=32", "--set", "max_seq_len=512",
                   "--set", "train.max_steps=6", "--set", "train.eval_interval=3",
                   "--set", "train.checkpoint_interval=6", "--set", "train.warmup_steps=1",
                   "--set", "train.lr=3e-3", "--set", "mlflow.experiment=ringbit-tests-agents",
                   # the served lm/evaluator/agents replicas hold 0.7 of the 2 CPUs
                   "--set", "workers.cpus_per_worker=0.5",
                   "--set", "lora.r=4", "--set", "lora.alpha=8",  # FireAct's LoRA (full FT: evaluator test)
                   "--set", "mlflow.registered_model=tiny-react", env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    exp = client.get_experiment_by_name("ringbit-tests-agents")
    run = client.search_runs([exp.experiment_id], "tags.`ringbit.job_name` = 't-react-sft'")[0]
    assert run.info.status == "FINISHED"
    ppl = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val_ppl"))
    assert [s for s, _ in ppl] == [3, 6] and ppl[1][1] < ppl[0][1], ppl
    assert client.get_model_version_by_alias("tiny-react", "current").run_id == run.info.run_id
    assert "lora r=4 alpha=8: 14 projections" in proc.stdout
    # The registered model is a plain one: adapters merged into the weights, no LoRA keys.
    from safetensors.torch import load_file

    from ringbit.tracking import resolve_model_ref

    folder = resolve_model_ref("models:/tiny-react@current", client.tracking_uri)
    weights = load_file(str(folder / "model.safetensors"))
    assert not [k for k in weights if "lora" in k or ".base." in k]
    base = load_file(str(Path(model_dir) / "model.safetensors"))
    changed = [k for k in base if not torch.equal(base[k], weights[k])]
    assert changed and all(k.endswith(("wq.weight", "wk.weight", "wv.weight", "wo.weight", "w_gate.weight",
                                       "w_up.weight", "w_down.weight")) for k in changed), changed
