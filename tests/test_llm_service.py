"""The LM service on a real Ray Serve app on the local platform: OpenAI request/response shapes
over plain HTTP (streaming included), the shared client, 422s, and a model that cannot load."""

from __future__ import annotations

import json

import pytest
import requests
import torch

from conftest import free_port, ringbit
from ringbit.config import ModelConfig
from ringbit.llm.client import LLMClient, LLMError

CFG = ModelConfig(vocab_size=512, d_model=64, n_layers=2, n_heads=4, max_seq_len=64)


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
    env, _, _ = platform
    port = free_port()
    up = ringbit("serve", "up", "--model", f"lm={model_dir}", "--port", str(port), env=env, timeout=300)
    assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
    yield env, f"http://127.0.0.1:{port}"
    down = ringbit("serve", "down", env=env, timeout=120)
    assert down.returncode == 0, down.stderr


def sse_events(resp) -> list:
    events = [line.removeprefix("data: ") for line in resp.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_models_and_completion_shape(served, model_dir):
    _, url = served
    models = requests.get(f"{url}/v1/models", timeout=30).json()
    assert models["object"] == "list" and models["data"][0]["object"] == "model"
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
    _, url = served
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
])
def test_bad_requests_are_422_naming_the_field(served, path, body, param):
    _, url = served
    r = requests.post(f"{url}{path}", json=body, timeout=60)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["param"] == param and param in error["message"]


def test_shared_client_against_the_service(served):
    _, url = served
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
    env, _ = served
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
