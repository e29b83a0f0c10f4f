"""Deploy, inspect and remove the serving applications of a serve config on a Ray cluster
(`ringbit serve up|status|down`). The config is Ray Serve's own format (serving/config.yaml)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO / "serving" / "config.yaml"


class ServeConfigError(ValueError):
    """A serve config or --model override the user must fix."""


def parse_arg_overrides(items: list[str]) -> dict[str, Any]:
    """`APP.KEY=VALUE` strings (VALUE read as YAML: 160, true, [a, b]) -> {"APP.KEY": value}."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        app, dot, arg = key.partition(".")
        if not sep or not dot or not app or not arg:
            raise ServeConfigError(f"--set {item!r}: expected APP.ARG=VALUE, e.g. --set evaluator.max_new_tokens=160")
        try:
            out[key] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            out[key] = value
    return out


def load_serve_config(path: Path, models: dict[str, str] | None = None,
                      port: int | None = None, tracking_uri: str | None = None,
                      args: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config as a dict, validated by Serve's own schema, with model overrides (`models`:
    app -> model ref) and argument overrides (`args`: "app.arg[.sub]" -> value) applied."""
    from ray.serve.schema import ServeDeploySchema

    try:
        config = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ServeConfigError(f"--config {path}: {exc}") from None
    apps = {a.get("name"): a for a in config.get("applications", [])}
    for name, model in (models or {}).items():
        if name not in apps:
            raise ServeConfigError(f"--model {name}=…: no application {name!r} in {path} "
                                   f"(applications: {', '.join(map(str, apps))})")
        apps[name].setdefault("args", {})["model"] = model
    for key, value in (args or {}).items():
        name, *keys = key.split(".")
        if name not in apps:
            raise ServeConfigError(f"--set {key}=…: no application {name!r} in {path} "
                                   f"(applications: {', '.join(map(str, apps))})")
        target = apps[name].setdefault("args", {})
        for k in keys[:-1]:
            target = target.setdefault(k, {})
            if not isinstance(target, dict):
                raise ServeConfigError(f"--set {key}=…: {k!r} of application {name!r} is not a mapping")
        target[keys[-1]] = value
    if port:
        config.setdefault("http_options", {})["port"] = port
    http = config.get("http_options", {})
    for app in apps.values():
        args = app.setdefault("args", {})
        if ("model" in args or "mlflow_experiment" in args) and tracking_uri:
            args.setdefault("tracking_uri", tracking_uri)
        for key in [k for k in args if k == "llm_app" or k.endswith("_llm_app")]:
            # another application of this config, through the same proxy (llm_app, react_llm_app)
            target = apps.get(args[key])
            if target is None:
                raise ServeConfigError(f"{path}: application {app.get('name')!r}: args.{key} "
                                       f"{args[key]!r} is not an application of this config "
                                       f"(applications: {', '.join(map(str, apps))})")
            route = target.get("route_prefix", "/").rstrip("/")
            host = http.get("host", "127.0.0.1")
            url_key = key.removesuffix("app") + "url"
            args[url_key] = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{http.get('port', 8000)}{route}"
            del args[key]
    try:
        ServeDeploySchema.model_validate(config)
    except Exception as exc:  # pydantic's message names the field
        raise ServeConfigError(f"{path}: {exc}") from None
    return config


# How to register a registry model the configs name, by registered-model name.
def check_registered_models(config: dict[str, Any]) -> list[str]:
    """ServeConfigError naming the application, the missing registry model and what to run, for
    every models:/ reference that the registry does not have; an application with a
    `fallback_model` serves that one meanwhile (returned: one note per such application).
    Nothing is checked when MLflow does not answer (the replica then reports why it cannot load
    the model)."""
    from ringbit.tracking import missing_registered_model

    missing, notes = [], []
    for app in config.get("applications", []):
        args = app.get("args", {})
        ref, fallback = args.get("model"), args.get("fallback_model")
        if not isinstance(ref, str):
            continue
        why = missing_registered_model(ref, args.get("tracking_uri"))
        if why and isinstance(fallback, str):
            notes.append(f"{app['name']} serves its fallback_model {fallback} until {why}")
            ref, why = fallback, missing_registered_model(fallback, args.get("tracking_uri"))
        if why:
            missing.append(f"application {app['name']!r} serves {why}, then `ringbit serve up` again; "
                           f"or serve another model with --model {app['name']}=FOLDER|models:/NAME@ALIAS")
    if missing:
        raise ServeConfigError("\n".join(missing))
    return notes


def served_model(model: str, fallback: str | None, tracking_uri: str | None) -> tuple[str, str | None]:
    """(the model an LM application loads, why it is the fallback or None): `fallback` while
    `model` is a models:/ reference the registry does not have yet (a fine-tune not run yet)."""
    if not fallback:
        return model, None
    from ringbit.tracking import missing_registered_model

    why = missing_registered_model(model, tracking_uri)
    return (fallback, why) if why else (model, None)


def build_application(app: dict[str, Any]):
    import sys

    if str(REPO) not in sys.path:  # the thin `serving/` builders live in the repository
        sys.path.insert(0, str(REPO))
    module, _, attr = app["import_path"].partition(":")
    target = getattr(importlib.import_module(module), attr)
    return target(app.get("args", {})) if callable(target) else target


def deploy(config: dict[str, Any], log=print) -> dict[str, str]:
    """serve.start + serve.run of every application; returns app -> status (failures included)."""
    from ray import serve

    http = config.get("http_options", {})
    serve.start(http_options={"host": http.get("host", "127.0.0.1"), "port": http.get("port", 8000)})
    outcome = {}
    for app in config["applications"]:
        name = app["name"]
        log(f"deploying {name} at {app.get('route_prefix', '/')} …")
        try:
            serve.run(build_application(app), name=name, route_prefix=app.get("route_prefix", "/"))
            outcome[name] = "RUNNING"
        except Exception as exc:  # a replica that cannot start: DEPLOY_FAILED with its reason
            messages = [d["message"] for d in status().get(name, {}).get("deployments", {}).values()
                        if d["status"] != "HEALTHY" and d["message"]]
            outcome[name] = f"DEPLOY_FAILED: {failure_reason(messages[0] if messages else str(exc))}"
    return outcome


def status() -> dict[str, dict[str, Any]]:
    """app -> {status, message, route_prefix, deployments: {name: {status, message}}}."""
    from ray import serve

    report = {}
    for name, app in serve.status().applications.items():
        report[name] = {
            "status": str(app.status.value if hasattr(app.status, "value") else app.status),
            "message": app.message,
            "deployments": {d: {"status": str(s.status.value if hasattr(s.status, "value") else s.status),
                                "message": s.message} for d, s in app.deployments.items()},
        }
    return report


def failure_reason(message: str) -> str:
    """The line of a Serve failure message that says why: the last `SomethingError: …` line of
    the replica's traceback (Serve wraps it in several lines of its own)."""
    import re

    lines = [line.strip() for line in (message or "").splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[\w.]*(Error|Exception): ", line)]
    return (errors[-1] if errors else lines[-1] if lines else "")[:1000]


def shutdown(apps: list[str] | None = None) -> list[str]:
    from ray import serve

    names = apps or list(serve.status().applications)
    for name in names:
        serve.delete(name)
    if not apps:
        serve.shutdown()
    return names


def llm_url_from_args(args: dict[str, Any], app: str, prefix: str = "") -> str | None:
    """The LM endpoint of an application that calls another: `llm_url`, else `llm_app` through
    this node's Serve proxy. `ringbit serve up` rewrites llm_app into llm_url with the real
    host/port/route; under a RayService (serveConfigV2 deployed as-is) the proxy runs on every
    node at port 8000 and the LM application is at `llm_route` (`ringbit k8s sync` writes it).
    `prefix` ("react_") reads a second endpoint (react_llm_url / react_llm_app), which is optional."""
    if args.get(f"{prefix}llm_url"):
        return args[f"{prefix}llm_url"]
    if args.get(f"{prefix}llm_app"):
        return f"http://127.0.0.1:{args.get('proxy_port', 8000)}{args.get(f'{prefix}llm_route', '/')}"
    if prefix:
        return None
    raise ValueError(f"the {app} app needs args.llm_url (or args.llm_app naming an application of "
                     "the same serve config)")
