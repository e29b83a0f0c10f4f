"""The LLM client tells a slow endpoint (connected, no answer in time) from an unreachable one."""

from __future__ import annotations

import socket

import pytest

from ringbit.llm.client import LLMClient, LLMError


def test_a_read_timeout_says_the_endpoint_was_slow_and_which_setting_to_raise():
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)  # accepts connections (the kernel completes them) and never answers
    port = silent.getsockname()[1]
    try:
        client = LLMClient(f"http://127.0.0.1:{port}", timeout_s=0.5, retries=0)
        with pytest.raises(LLMError, match=r"did not answer within 0.5 s") as err:
            client.complete("hi")
        assert "llm.timeout_s" in str(err.value) and "unreachable" not in str(err.value)
    finally:
        silent.close()

    closed = LLMClient(f"http://127.0.0.1:{port}", timeout_s=0.5, retries=0)  # nothing listens now
    with pytest.raises(LLMError, match="unreachable"):
        closed.complete("hi")
