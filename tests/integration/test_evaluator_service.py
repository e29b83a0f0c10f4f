"""The InstructScore evaluator as a real Serve app: a tiny LLaMA-architecture model created from
a config and saved as a Hugging Face folder (the path real InstructScore weights take) behind the
LM service, the evaluator in front of it; response shape and the 422 cases."""

from __future__ import annotations

import pytest
import requests

from conftest import ringbit
from helpers import free_port


@pytest.fixture(scope="module")
def hf_llama(tmp_path_factory):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from ringbit.data.corpus import builtin_documents
    from ringbit.data.tokenizer import train_tokenizer

    out = tmp_path_factory.mktemp("tiny-llama")
    tok = train_tokenizer(builtin_documents("builtin:python-topics"), 512)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>")
    fast.save_pretrained(out)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, eos_token_id=fast.eos_token_id,
                         pad_token_id=fast.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def evaluator(platform, hf_llama, tmp_path_factory):
    env, _, _ = platform
    port = free_port()
    config = tmp_path_factory.mktemp("serve") / "serve.yaml"
    config.write_text(
        "http_options: {host: 127.0.0.1, port: 8000}\n"
        "applications:\n"
        "  - name: instructscore-lm\n    route_prefix: /instructscore\n    import_path: serving.lm:app\n"
        f"    args: {{model: {hf_llama}, name: instructscore}}\n"
        "  - name: evaluator\n    route_prefix: /v1/evaluate\n    import_path: serving.evaluator:app\n"
        "    args: {llm_app: instructscore-lm, max_new_tokens: 24, max_items: 4, max_input_chars: 300}\n")
    up = ringbit("serve", "up", "--config", str(config), "--port", str(port), env=env, timeout=300)
    assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
    yield f"http://127.0.0.1:{port}"
    ringbit("serve", "down", env=env, timeout=120)


def test_one_item_is_scored_from_the_models_report(evaluator):
    item = {"reference": "The cat sat on the mat.", "candidate": "The cat sit on mat.", "task": "zh-en"}
    r = requests.post(f"{evaluator}/v1/evaluate", json=item, timeout=120, allow_redirects=False)
    assert r.status_code == 200, r.text  # the path itself, no redirect to /v1/evaluate/
    out = r.json()
    from ringbit.evaluator.report import is_well_formed, parse_report, score

    assert isinstance(out["raw"], str)
    # The score is exactly what the parser and the formula make of the model's raw report; a
    # report that is not well formed (the tiny model's may not be) has no score, never 0.
    errors = parse_report(out["raw"])
    assert out["errors"] == [e.to_dict() for e in errors]
    assert out["parsed"] == is_well_formed(out["raw"], errors)
    if out["parsed"]:
        assert out["score"] == score(errors) and -25 <= out["score"] <= 0
    else:
        assert out["score"] is None


def test_the_index_says_which_lm_writes_the_reports(evaluator):
    info = requests.get(f"{evaluator}/v1/evaluate", timeout=30).json()
    # a Hugging Face folder without a chat template: "auto" asks it through completions
    assert info["llm"] == {"url": f"{evaluator}/instructscore", "model": None, "api": "completions"}
    assert info["max_items"] == 4 and info["max_new_tokens"] == 24 and "zh-en" in info["tasks"]


def test_many_items_and_a_source_task(evaluator):
    items = [{"reference": "a b c", "candidate": "a c", "task": "caption"},
             {"reference": "x y", "candidate": "x", "source": "x | y", "task": "data2text"}]
    r = requests.post(f"{evaluator}/v1/evaluate", json={"items": items}, timeout=120)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 2 and all({"score", "parsed", "errors", "raw"} <= set(x) for x in results)
    greedy = requests.post(f"{evaluator}/v1/evaluate", json={"items": items}, timeout=120).json()
    assert greedy["results"] == results  # greedy decoding: the same report twice


@pytest.mark.parametrize("body, param", [
    ({"candidate": "x"}, "items.0.reference"),
    ({"reference": "", "candidate": "x"}, "items.0.reference"),
    ({"reference": "a", "candidate": "b", "task": "poetry"}, "task"),
    ({"reference": "a", "candidate": "b", "task": "data2text"}, "source"),
    ({"items": [{"reference": "a", "candidate": "b"}] * 5}, "items"),
    ({"reference": "a" * 301, "candidate": "b"}, "reference"),
    ({"items": []}, "items"),
])
def test_bad_input_is_422_naming_the_field(evaluator, body, param):
    r = requests.post(f"{evaluator}/v1/evaluate", json=body, timeout=60)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["param"] == param


def test_meta_evaluation_job_logs_correlations_and_a_scatter_plot(evaluator, platform, tmp_path):
    env, client, url = platform
    data = tmp_path / "synth.jsonl"
    ringbit("evaluator", "synth", "--out", str(data), "--n", "6", "--corpus", "builtin:python-topics",
            env=env, check=True)
    proc = ringbit("evaluator", "meta-eval", "--data", str(data), "--evaluator-url", evaluator,
                   "--batch", "3", "--sample", "5", "--seed", "3", "--json",
                   env={**env, "MLFLOW_TRACKING_URI": url}, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    import json

    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["n"] == 5
    run = client.get_run(result["mlflow_run"])
    assert run.info.status == "FINISHED" and run.data.params["segments"] == "5"
    assert (run.data.params["sample"], run.data.params["seed"]) == ("5", "3")
    assert {"kendall_tau", "pearson", "parse_rate", "kendall_tau_parsed"} <= set(run.data.metrics)
    assert run.data.metrics["parse_rate"] == result["parse_rate"] and 0 <= result["parse_rate"] <= 1
    # synthetic rows carry their injected errors: explanation agreement over the parsed reports
    assert {"span_precision", "span_recall"} <= set(run.data.metrics)
    assert result["spans_reported"] >= 0 and result["spans_injected"] >= 0
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"scatter.png", "predictions.jsonl"}
    bad = ringbit("evaluator", "meta-eval", "--data", str(tmp_path / "none.tsv"), env=env)
    assert bad.returncode == 2 and "no such file" in bad.stderr
    one = ringbit("evaluator", "meta-eval", "--data", str(data), "--sample", "1", env=env)
    assert one.returncode == 2 and "--sample 1" in one.stderr and "Traceback" not in one.stderr


def test_a_model_too_small_for_the_settings_is_refused_at_deploy_with_the_fix(platform, evaluator, tmp_path):
    """The default settings (max_input_chars 2000, max_new_tokens 512) need more than the tiny
    LLaMA's 1024 tokens: DEPLOY_FAILED with the reason and the --set that fits; with it, it runs."""
    from ringbit.evaluator.service import max_input_chars_that_fit, prompt_tokens_needed

    env, _, _ = platform
    config = tmp_path / "long.yaml"
    config.write_text(
        "applications:\n"
        "  - name: evaluator-long\n    route_prefix: /long/v1/evaluate\n    import_path: serving.evaluator:app\n"
        f"    args: {{llm_url: '{evaluator}/instructscore', max_input_chars: 2000, max_new_tokens: 512}}\n")
    port = evaluator.rsplit(":", 1)[1]
    try:
        up = ringbit("serve", "up", "--config", str(config), "--port", port, env=env, timeout=300)
        assert up.returncode == 1, up.stdout + up.stderr
        line = next(x for x in up.stdout.splitlines() if x.startswith("evaluator-long"))
        fits = max_input_chars_that_fit(1024, 512)
        assert "DEPLOY_FAILED" in line and f"needs a {prompt_tokens_needed(2000) + 512}-token context" in line
        assert "serves instructscore with a 1024-token context" in line
        assert f"--set evaluator-long.max_input_chars={fits}" in line, line
        assert prompt_tokens_needed(fits) + 512 <= 1024 < prompt_tokens_needed(fits + 1) + 512

        up = ringbit("serve", "up", "--config", str(config), "--port", port,
                     "--set", f"evaluator-long.max_input_chars={fits}", env=env, timeout=300)
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        item = {"reference": "The cat sat on the mat.", "candidate": "The cat sit on mat.", "task": "zh-en"}
        r = requests.post(f"{evaluator}/long/v1/evaluate", json=item, timeout=120)
        assert r.status_code == 200, r.text
    finally:
        ringbit("serve", "down", "evaluator-long", env=env, timeout=120)


def test_instructscore_is_an_mlflow_genai_scorer(evaluator, platform, fluent_mlflow):
    """`mlflow.genai.evaluate(..., scorers=[instructscore(URL)])` asks the served evaluator: each row
    gets exactly what /v1/evaluate says (its score, or an error when the report does not parse)."""
    from ringbit.evaluator.genai_scorer import instructscore

    mlflow = fluent_mlflow
    env, client, url = platform
    rows = [{"inputs": {"question": "translate"}, "outputs": "The cat sit on mat.",
             "expectations": {"expected_response": "The cat sat on the mat."}},
            {"inputs": {"question": "translate"}, "outputs": "A dog barks.",
             "expectations": {"expected_response": "A dog barks."}}]
    direct = [requests.post(f"{evaluator}/v1/evaluate", timeout=120, json={
        "reference": r["expectations"]["expected_response"], "candidate": r["outputs"], "task": "zh-en"}).json()
        for r in rows]
    mlflow.set_tracking_uri(url)
    mlflow.set_experiment("ringbit-tests-genai")
    result = mlflow.genai.evaluate(data=rows, scorers=[instructscore(evaluator)])
    assert client.get_run(result.run_id).info.status == "FINISHED"
    traces = mlflow.search_traces(run_id=result.run_id, return_type="list",
                                  locations=[client.get_run(result.run_id).info.experiment_id])
    assert len(traces) == 2
    by_candidate = {}
    for t in traces:
        feedback = [a for a in t.info.assessments if a.name == "instructscore"]
        assert len(feedback) == 1
        by_candidate[t.data.spans[0].outputs if isinstance(t.data.spans[0].outputs, str) else
                     str(t.data.spans[0].outputs)] = feedback[0]
    for row, want in zip(rows, direct):
        got = next(f for out, f in by_candidate.items() if row["outputs"] in out)
        if want["parsed"]:
            assert got.value == want["score"] and got.error is None
        else:
            assert got.value is None and "did not parse" in got.error.error_message
