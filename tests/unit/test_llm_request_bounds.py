"""Every field of an OpenAI-style request is bounded before any tokenization or generation:
a request over a bound is a validation error naming the field (the service answers 422)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ringbit.llm.openai_api import (MAX_MESSAGES, MAX_PROMPT_CHARS, MAX_SEED, MAX_STOP_CHARS,
                                    ChatCompletionRequest, CompletionRequest)


def field_of(exc: ValidationError) -> str:
    return ".".join(str(x) for x in exc.errors()[0]["loc"])


@pytest.mark.parametrize("body, field", [
    ({"prompt": "x", "seed": 2**70}, "seed"),
    ({"prompt": "x", "seed": -1}, "seed"),
    ({"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, "prompt"),
    ({"prompt": ["x", "y" * (MAX_PROMPT_CHARS + 1)]}, "prompt"),
    ({"prompt": "x", "stop": "s" * (MAX_STOP_CHARS + 1)}, "stop"),
    ({"prompt": "x", "stop": ["a", ""]}, "stop"),
    ({"prompt": "x", "stop": list("abcde")}, "stop"),
    ({"prompt": "x", "max_tokens": 4097}, "max_tokens"),
])
def test_completion_bounds(body, field):
    with pytest.raises(ValidationError) as err:
        CompletionRequest.model_validate(body)
    assert field_of(err.value) == field


def test_the_largest_accepted_values_pass():
    req = CompletionRequest.model_validate({"prompt": "x" * MAX_PROMPT_CHARS, "seed": MAX_SEED,
                                            "stop": ["s" * MAX_STOP_CHARS] * 4, "max_tokens": 4096})
    assert req.seed == MAX_SEED and len(req.stop_list) == 4


@pytest.mark.parametrize("messages, field", [
    ([{"role": "user", "content": "x"}] * (MAX_MESSAGES + 1), "messages"),
    ([{"role": "user", "content": "x" * (MAX_PROMPT_CHARS + 1)}], "messages.0.content"),
    ([{"role": "user", "content": "x" * (MAX_PROMPT_CHARS // 2 + 1)}] * 2, "messages"),
])
def test_chat_bounds(messages, field):
    with pytest.raises(ValidationError) as err:
        ChatCompletionRequest.model_validate({"messages": messages})
    assert field_of(err.value) == field
