"""`ringbit up / down / status`: the local platform services (Ray head, MLflow server)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ringbit.commands.options import settings
from ringbit.console import fail


def up() -> None:
    """Start the local Ray head (dashboard + Jobs API) and MLflow server in the background."""
    from ringbit.services import ServiceError, up as start

    current = settings()
    typer.echo(f"starting services (home {current.home}) …")
    try:
        state = start(current)
    except ServiceError as exc:
        raise fail(str(exc)) from None
    print_status(state)


def down() -> None:
    """Stop the services `ringbit up` started (nothing else): running jobs first (their MLflow runs
    end KILLED), then Ray, then MLflow."""
    from ringbit.services import down as stop
    from ringbit.services import status as get_status

    current = settings()
    if get_status(current)["ray"]["healthy"]:
        from ringbit.jobs import stop_all

        stop_all(current.dashboard_url, log=typer.echo)
    stopped = stop(current)
    typer.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


def status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show Ray and MLflow: running, healthy, URL."""
    from ringbit.services import status as get_status

    state = get_status(settings())
    if as_json:
        typer.echo(json.dumps(state, indent=2, default=str))
    else:
        print_status(state)
    if not all(s.get("healthy") for k, s in state.items() if isinstance(s, dict)):
        raise typer.Exit(1)


def print_status(state: dict) -> None:
    for name in ("ray", "mlflow"):
        s = state.get(name, {})
        mark = "healthy" if s.get("healthy") else ("running, not healthy" if s.get("running") else "stopped")
        typer.echo(f"{name:7s} {mark:22s} {s.get('url', '')}")


def register(app: typer.Typer) -> None:
    for command in (up, down, status):
        app.command()(command)
