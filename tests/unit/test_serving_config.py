"""The serving config's `--set APP.ARG=VALUE` overrides, resolved without starting Ray Serve.

Moved from tests/integration/test_llm_service.py (the LM service on real Serve stays there)."""

from __future__ import annotations

import pytest


def test_set_overrides_application_args_and_names_mistakes():
    from ringbit.serving import DEFAULT_CONFIG, ServeConfigError, load_serve_config, parse_arg_overrides

    sets = parse_arg_overrides(["evaluator.max_new_tokens=160", "lm.autoscaling_config.max_replicas=1",
                                "agents.api=chat"])
    cfg = load_serve_config(DEFAULT_CONFIG, {"lm": "/some/folder"}, 8123, None, sets)
    apps = {a["name"]: a["args"] for a in cfg["applications"]}
    assert apps["evaluator"]["max_new_tokens"] == 160 and apps["agents"]["api"] == "chat"
    assert apps["lm"]["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 1, "target_ongoing_requests": 8}
    assert apps["lm"]["model"] == "/some/folder" and apps["evaluator"]["llm_url"] == "http://127.0.0.1:8123"
    with pytest.raises(ServeConfigError, match="APP.ARG=VALUE"):
        parse_arg_overrides(["evaluator"])
    with pytest.raises(ServeConfigError, match="no application 'nosuch'"):
        load_serve_config(DEFAULT_CONFIG, args={"nosuch.x": 1})
