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
    assert apps["lm"]["model"] == "/some/folder" and apps["agents"]["llm_url"] == "http://127.0.0.1:8123"
    # the evaluator and ReAct call the fine-tuned LM apps by their routes
    assert apps["evaluator"]["llm_url"] == "http://127.0.0.1:8123/models/evaluator"
    assert apps["agents"]["react_llm_url"] == "http://127.0.0.1:8123/models/react"
    assert not [k for a in apps.values() for k in a if k.endswith("llm_app")]
    with pytest.raises(ServeConfigError, match="APP.ARG=VALUE"):
        parse_arg_overrides(["evaluator"])
    with pytest.raises(ServeConfigError, match="no application 'nosuch'"):
        load_serve_config(DEFAULT_CONFIG, args={"nosuch.x": 1})


def test_a_second_llm_app_must_name_an_application_and_is_optional_in_the_builder(tmp_path):
    from ringbit.serving import ServeConfigError, llm_url_from_args, load_serve_config

    config = tmp_path / "c.yaml"
    config.write_text("applications:\n  - {name: lm, route_prefix: /, import_path: serving.lm:app, args: {model: x}}\n"
                      "  - {name: agents, route_prefix: /v1/agents, import_path: serving.agents:app,\n"
                      "     args: {llm_app: lm, react_llm_app: nosuch}}\n")
    with pytest.raises(ServeConfigError, match="args.react_llm_app 'nosuch' is not an application"):
        load_serve_config(config)
    # under a RayService the file is deployed as it is: the builder finds the LM by its route
    args = {"llm_app": "lm", "react_llm_app": "react-lm", "react_llm_route": "/models/react"}
    assert llm_url_from_args(args, "agents") == "http://127.0.0.1:8000/"
    assert llm_url_from_args(args, "agents", "react_") == "http://127.0.0.1:8000/models/react"
    assert llm_url_from_args({"llm_url": "http://h:1"}, "agents", "react_") is None  # ReAct shares llm_url
    with pytest.raises(ValueError, match="needs args.llm_url"):
        llm_url_from_args({}, "agents")


def test_a_relative_search_file_becomes_absolute_for_the_replicas(tmp_path, monkeypatch):
    """The agents app's builder (run by `serve up`, in the user's directory) resolves its search file."""
    from ringbit.agents.react.tools import absolute_search, search_file

    (tmp_path / "passages.jsonl").write_text('{"text": "x"}\n')
    monkeypatch.chdir(tmp_path)
    for spec, expected in (("bm25:passages.jsonl", f"bm25:{tmp_path / 'passages.jsonl'}"),
                           ("bm25:builtin:python-docs", "bm25:builtin:python-docs"),
                           ("cache:missing.json", "cache:missing.json")):  # left for the replica to refuse
        assert absolute_search(spec) == expected
    assert (search_file("bm25:builtin:python-docs"), search_file("cache"), search_file("cache:a.json")) == \
        (None, None, "a.json")
