"""The agents application on a real Ray Serve (the local platform), thinking with the platform's
own tiny LM through its OpenAI-compatible endpoint: each agent end to end over REST (202 + id,
polling with the trajectory so far, the MLflow record), and the 4xx/5xx cases."""

from __future__ import annotations

import shutil
import time

import pytest
import requests
import torch

from conftest import ringbit
from helpers import free_port
from ringbit.models.config import ModelConfig

# A long context: agent prompts (screens, trajectories, summaries) are hundreds of tokens.
CFG = ModelConfig(vocab_size=512, d_model=64, n_layers=2, n_heads=4, max_seq_len=4096)
CHROMIUM = shutil.which("chromium") and shutil.which("chromedriver")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from ringbit.data.corpus import builtin_documents
    from ringbit.data.tokenizer import train_tokenizer
    from ringbit.models import Transformer
    from ringbit.models.io import save_model_dir

    torch.manual_seed(0)
    tok = train_tokenizer(builtin_documents("builtin:python-topics"), CFG.vocab_size)
    return save_model_dir(tmp_path_factory.mktemp("lm"), CFG, Transformer(CFG).state_dict(), tok.to_str())


@pytest.fixture(scope="module")
def served(platform, model_dir, tmp_path_factory):
    """lm + agents (+ an agents app whose LLM endpoint is down) on one Serve proxy."""
    env, client, mlflow_url = platform
    env = {**env, "MLFLOW_TRACKING_URI": mlflow_url}
    port, dead = free_port(), free_port()
    config = tmp_path_factory.mktemp("serve") / "serve.yaml"
    config.write_text(
        "applications:\n"
        "  - name: lm\n    route_prefix: /\n    import_path: serving.lm:app\n"
        f"    args: {{model: '{model_dir}', max_batch_size: 4}}\n"
        "  - name: agents\n    route_prefix: /v1/agents\n    import_path: serving.agents:app\n"
        "    args: {llm_app: lm, browsers: 1, cpus_per_browser: 0.25, search: 'bm25:builtin:python-topics',\n"
        "           mlflow_experiment: ringbit-tests-agents}\n"
        "  - name: agents-dead-llm\n    route_prefix: /dead\n    import_path: serving.agents:app\n"
        f"    args: {{llm_url: 'http://127.0.0.1:{dead}', mlflow_experiment: ringbit-tests-agents}}\n")
    up = ringbit("serve", "up", "--config", str(config), "--port", str(port), env=env, timeout=300)
    assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
    yield f"http://127.0.0.1:{port}", client
    ringbit("serve", "down", env=env, timeout=120)


def poll(url: str, timeout: float = 240) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        run = requests.get(url, timeout=30).json()
        if run["status"] != "running":
            return run
        time.sleep(0.5)
    raise AssertionError(f"{url} still running after {timeout} s")


def start(url: str, path: str, body: dict) -> dict:
    r = requests.post(f"{url}/v1/agents/{path}", json=body, timeout=60)
    assert r.status_code == 202, r.text
    out = r.json()
    assert out["status"] == "running" and out["poll"] == f"/v1/agents/{path}/{out['id']}"
    return out


def check_mlflow(client, run: dict, agent: str) -> None:
    assert run["mlflow_run_id"], run
    rec = client.get_run(run["mlflow_run_id"])
    assert rec.info.status == ("FINISHED" if run["status"] == "succeeded" else "FAILED")
    assert rec.data.tags["ringbit.agent"] == agent and rec.data.tags["ringbit.agent_run"] == run["id"]
    assert rec.data.metrics["llm_calls"] >= 1 and rec.data.metrics["prompt_tokens"] > 0
    assert "trajectory.jsonl" in [a.path for a in client.list_artifacts(run["mlflow_run_id"])]


def test_react_run_over_rest(served):
    url, client = served
    out = start(url, "react/runs", {"question": "What does the for statement iterate over?",
                                     "max_iterations": 3})
    run = poll(url + out["poll"])
    assert run["status"] == "succeeded", (run["error"], run["trajectory"][-3:])
    result = run["result"]
    # The untrained LM rarely writes a parsable action: the loop retries, then finishes with [].
    assert result["iterations"] <= 3 and result["llm_calls"] >= 1
    assert isinstance(result["answer"], str)
    assert len(run["trajectory"]) == result["steps"]
    check_mlflow(client, run, "react")
    # the run is also an MLflow trace linked to its MLflow run: one LLM span per call
    mlflow_run = client.get_run(run["mlflow_run_id"])
    traces = client.search_traces(locations=[mlflow_run.info.experiment_id], run_id=mlflow_run.info.run_id)
    assert len(traces) == 1 and traces[0].info.tags["ringbit.agent_run"] == run["id"]
    assert len([s for s in traces[0].data.spans if s.span_type == "LLM"]) == result["llm_calls"]
    listed = requests.get(f"{url}/v1/agents/runs", params={"agent": "react"}, timeout=30).json()["runs"]
    assert run["id"] in [r["id"] for r in listed]


def test_memwalker_query_over_rest(served):
    url, client = served
    from ringbit.agents.longdoc import make_eval_set

    ex = make_eval_set(1, 400, seed=3)[0]
    body = {"document": ex["document"], "question": ex["question"], "segment_words": 100, "fanout": 2,
            "max_steps": 4}
    run = poll(url + start(url, "memwalker/queries", body)["poll"])
    assert run["status"] == "succeeded", (run["error"], run["trajectory"][-3:])
    tree_events = [e for e in run["trajectory"] if e["type"] == "tree"]
    walk_events = [e for e in run["trajectory"] if e["type"] == "walk"]
    # 400 words in 100-word segments: 4+ leaves summarised, then their parents, up to one root.
    assert sum(e.get("event") == "summary" for e in tree_events) == run["result"]["tree_nodes"] >= 7
    # at most max_steps moves, plus one best-effort answer when the walk found none
    assert 1 <= len(walk_events) <= 5 and run["result"]["steps"] <= 4
    assert run["result"]["answered"] or walk_events[-1]["action"] == "best_effort"
    check_mlflow(client, run, "memwalker")
    # The same document again: the tree is reused, nothing is summarised twice.
    again = poll(url + start(url, "memwalker/queries", body)["poll"])
    assert not [e for e in again["trajectory"] if e["type"] == "tree"]


@pytest.mark.skipif(not CHROMIUM, reason="chromium/chromedriver not installed: run `make system-deps`")
def test_computer_episode_over_rest(served):
    url, client = served
    run = poll(url + start(url, "computer/episodes", {"task": "click-button", "seed": 1, "trials": 2,
                                                        "max_steps": 3})["poll"], timeout=300)
    assert run["status"] == "succeeded", (run["error"], run["trajectory"][-3:])
    result = run["result"]
    assert result["task"] == "click-button" and 1 <= len(result["trials"]) <= 2
    first = result["trials"][0]
    # The planner saw the real MiniWoB++ page: leaf elements with ids and 3x3 grid positions.
    screens = [s["screen"] for s in first["steps"] if s.get("screen")]
    events = run["trajectory"]
    assert events and all("type" in e for e in events)
    if screens:
        assert any("<button id=" in line and 'pos="' in line for line in screens[0])
    check_mlflow(client, run, "computer")


def test_bad_input_is_422_naming_the_field(served):
    url, _ = served
    cases = [("computer/episodes", {"task": "click-buton"}, "task"),
             ("computer/episodes", {"task": "click-button", "seed": -1}, "seed"),
             ("computer/episodes", {"task": "click-button", "trials": 11}, "trials"),
             ("react/runs", {"question": "   "}, "question"),
             ("react/runs", {}, "question"),
             ("memwalker/queries", {"document": "", "question": "where?"}, "document"),
             ("memwalker/queries", {"document": "text", "question": "q", "fanout": 1}, "fanout"),
             ("memwalker/queries", {"document": "text", "question": "q", "segment_words": 6001}, "segment_words"),
             # 50,000 words at 20 a segment: 2,500 leaf summaries, each an LLM call (at most 2,000)
             ("memwalker/queries", {"document": "word " * 50_000, "question": "q", "segment_words": 20},
              "segment_words")]
    for path, body, field in cases:
        r = requests.post(f"{url}/v1/agents/{path}", json=body, timeout=30)
        assert r.status_code == 422, (path, body, r.text)
        error = r.json()["error"]
        assert field in error["param"] and field in error["message"], (body, error)
    if CHROMIUM:
        r = requests.post(f"{url}/v1/agents/computer/episodes", json={"task": "click-buton"}, timeout=30)
        assert "click-button" in r.json()["error"]["message"]  # the close match is suggested
    too_many = requests.get(f"{url}/v1/agents/runs", params={"limit": 100_000}, timeout=30)
    assert too_many.status_code == 422 and too_many.json()["error"]["param"].endswith("limit"), too_many.text
    missing = requests.get(f"{url}/v1/agents/react/runs/nope", timeout=30)
    assert missing.status_code == 404 and "nope" in missing.json()["error"]["message"]


def test_unreachable_llm_is_503_at_once(served):
    url, _ = served
    began = time.time()
    r = requests.post(f"{url}/dead/react/runs", json={"question": "anything?"}, timeout=60)
    assert r.status_code == 503, r.text
    assert "not usable" in r.json()["error"]["message"] and r.json()["error"]["code"] == "llm_unavailable"
    assert time.time() - began < 30  # a clear error, not a hung request


def deploy_refused(url: str, env: dict, tmp_path, name: str, args: str) -> str:
    """Deploy one more agents app (`args` in YAML flow style) that must fail its deployment:
    `serve up` exits 1; returns its line of the `serve up` output."""
    config = tmp_path / f"{name}.yaml"
    config.write_text("applications:\n"
                      f"  - name: {name}\n    route_prefix: /{name}\n    import_path: serving.agents:app\n"
                      f"    args: {{llm_url: '{url}', {args}}}\n")
    up = ringbit("serve", "up", "--config", str(config), "--port", url.rsplit(":", 1)[1], env=env, timeout=300)
    assert up.returncode == 1, up.stdout + up.stderr
    line = next(x for x in up.stdout.splitlines() if x.startswith(name))
    assert "DEPLOY_FAILED" in line, line
    return line


def test_a_prompt_budget_beyond_the_models_context_is_refused_at_deploy(served, platform, tmp_path):
    """prompt_tokens 4000 + 2 x max_tokens 256 exceed the 4096-token model: the app fails its
    deployment with the reason and the args that fit; the other agents apps keep running."""
    url, _ = served
    env, _, _ = platform
    try:
        line = deploy_refused(url, env, tmp_path, "agents-big", "prompt_tokens: 4000")
        assert "needs a 4512-token context" in line and "4096-token context" in line
        assert "--set agents-big.prompt_tokens=3584" in line, line
        status = ringbit("serve", "status", env=env, timeout=60)
        assert "needs a 4512-token context" in status.stdout
        assert requests.get(f"{url}/v1/agents/", timeout=30).status_code == 200
    finally:
        ringbit("serve", "down", "agents-big", env=env, timeout=120)


def test_a_search_file_the_replica_cannot_read_is_refused_at_deploy(served, platform, tmp_path):
    """A relative search file is made absolute by `serve up` (it exists where the user runs it);
    one that exists nowhere fails the deployment naming the file, not the first ReAct run."""
    url, _ = served
    env, _, _ = platform
    try:
        line = deploy_refused(url, env, tmp_path, "agents-search", "search: 'bm25:no/such/passages.jsonl'")
        assert "no file no/such/passages.jsonl" in line and "absolute path" in line, line
    finally:
        ringbit("serve", "down", "agents-search", env=env, timeout=120)
