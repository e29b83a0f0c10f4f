"""`ringbit serve up / status / down`: Ray Serve applications on the platform's Ray."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ringbit.commands.options import settings
from ringbit.console import fail

serve_app = typer.Typer(help="Ray Serve applications (serving/config.yaml) on the platform's Ray.",
                        no_args_is_help=True)


def _connect_ray(address: str | None) -> None:
    from ringbit.services import ensure_client_env

    ensure_client_env()
    import ray

    try:
        ray.init(address=address or settings().ray_address, log_to_driver=False,
                 namespace="serve", logging_level="ERROR")
    except Exception as exc:
        raise fail(f"cannot reach Ray at {address or settings().ray_address}: {exc}\n"
                   "is the platform up? run `ringbit up` (or pass --ray-address)") from None

RayAddressOpt = Annotated[Optional[str], typer.Option("--ray-address", help="Ray cluster (default: the local platform).")]


@serve_app.command("up")
def serve_up(
    config: Annotated[Path, typer.Option("--config", "-c", help="Serve config (Ray Serve format).")] = Path("serving/config.yaml"),
    model: Annotated[Optional[list[str]], typer.Option("--model", help="APP=MODEL_REF, repeatable: which model an application serves.")] = None,
    set_args: Annotated[Optional[list[str]], typer.Option("--set", help="APP.ARG=VALUE, repeatable: an application's args, e.g. --set evaluator.max_new_tokens=160.")] = None,
    port: Annotated[Optional[int], typer.Option(help="HTTP port of the Serve proxy (default: the config's).")] = None,
    mlflow_uri: Annotated[Optional[str], typer.Option(help="MLflow URI for models:/ references.")] = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Deploy every application of the serve config (idempotent: a redeploy updates in place)."""
    from ringbit import serving
    from ringbit.tracking import resolve_tracking_uri

    config = config if config.exists() else serving.REPO / config
    overrides = {}
    for item in model or []:
        name, sep, ref = item.partition("=")
        if not sep or not name or not ref:
            raise fail(f"--model {item!r}: expected APP=MODEL_REF, e.g. --model lm=models:/ringbit-lm@current", 2)
        overrides[name] = ref
    try:
        arg_overrides = serving.parse_arg_overrides(set_args or [])
        cfg = serving.load_serve_config(config, overrides, port, resolve_tracking_uri(mlflow_uri), arg_overrides)
        notes = serving.check_registered_models(cfg)  # a missing models:/ ref: what to run, before deploying
    except serving.ServeConfigError as exc:
        raise fail(str(exc), 2) from None
    for note in notes:
        typer.echo(f"note: {note}")
    _connect_ray(ray_address)
    outcome = serving.deploy(cfg, log=typer.echo)
    http = cfg.get("http_options", {})
    base = f"http://{http.get('host', '127.0.0.1')}:{http.get('port', 8000)}"
    for name, state in outcome.items():
        route = next(a.get("route_prefix", "/") for a in cfg["applications"] if a["name"] == name)
        typer.echo(f"{name:<12} {state:<10} {base}{route}")
    if any(s != "RUNNING" for s in outcome.values()):
        raise typer.Exit(1)


@serve_app.command("status")
def serve_status(
    as_json: Annotated[bool, typer.Option("--json")] = False, ray_address: RayAddressOpt = None
) -> None:
    """Each application's state and, when unhealthy, why (exit 1 unless all are RUNNING)."""
    from ringbit import serving

    _connect_ray(ray_address)
    report = serving.status()
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    elif not report:
        typer.echo("no applications deployed (ringbit serve up)")
    for name, app_state in ({} if as_json else report).items():
        typer.echo(f"{name:<12} {app_state['status']}")
        for dep, d in app_state["deployments"].items():
            typer.echo(f"  {dep:<22} {d['status']}")
            if d["status"] not in ("HEALTHY", "UPDATING") and d["message"]:
                typer.echo(f"    reason: {serving.failure_reason(d['message'])}")
    if not report or any(a["status"] != "RUNNING" for a in report.values()):
        raise typer.Exit(1)


@serve_app.command("down")
def serve_down(
    apps: Annotated[Optional[list[str]], typer.Argument(help="Applications to remove (default: all, and Serve itself).")] = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Remove serving applications."""
    from ringbit import serving

    _connect_ray(ray_address)
    removed = serving.shutdown(apps or None)
    typer.echo(f"removed: {', '.join(removed) if removed else 'nothing was deployed'}")
