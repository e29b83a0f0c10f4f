"""`ringbit`: local platform services, job submission, evaluation.

This module only builds the app: the commands live in ringbit.commands (one module per group),
each a thin adapter over a library function, and are registered here in the order `--help`
lists them. Errors a user can cause print one clear message (no traceback, ringbit.console):
exit 2 for usage and config errors, 1 for everything else that failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ringbit.commands import agents, evaluator, export, jobs, models, serve, services
from ringbit.commands.jobs import SubmitOptions, submit_job
from ringbit.commands.options import SetOpt, load, settings
from ringbit.k8s.cli import k8s_app  # typer only; kustomize and schemas load per command

app = typer.Typer(
    help="ringbit: pretrain long-context and low-bit LMs on Ray + DeepSpeed, tracked in MLflow.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)


@app.callback()
def platform_options(
    home: Annotated[Optional[Path], typer.Option(help="Platform home: state, logs, MLflow store, data cache (env RINGBIT_HOME; default ~/.ringbit).")] = None,
    ray_port: Annotated[Optional[int], typer.Option(help="Ray GCS port (env RINGBIT_RAY_PORT; default 6379).")] = None,
    dashboard_port: Annotated[Optional[int], typer.Option(help="Ray dashboard + Jobs API port (env RINGBIT_DASHBOARD_PORT; default 8265).")] = None,
    mlflow_port: Annotated[Optional[int], typer.Option(help="MLflow server port (env RINGBIT_MLFLOW_PORT; default 5000).")] = None,
) -> None:
    """Options here apply to every command (they set the matching RINGBIT_* variables)."""
    import os

    for var, value in (("RINGBIT_HOME", home and home.expanduser().resolve()), ("RINGBIT_RAY_PORT", ray_port),
                       ("RINGBIT_DASHBOARD_PORT", dashboard_port), ("RINGBIT_MLFLOW_PORT", mlflow_port)):
        if value is not None:
            os.environ[var] = str(value)
    # Every command is a client of the platform's Ray (token auth): set it before Ray is imported.
    from ringbit.services import ensure_client_env

    ensure_client_env()


def demo(
    config: Annotated[Path, typer.Option("--config", "-c")] = Path("jobs/configs/demo.yaml"),
    overrides: SetOpt = None,
) -> None:
    """Bring the platform up, pretrain the demo model with 2 workers under ZeRO-2, show results."""
    from ringbit.jobs import REPO_ROOT

    config = config if config.exists() else REPO_ROOT / config
    load("pretrain", config, overrides)  # fail fast, before anything starts
    services.up()
    submit_job(SubmitOptions("pretrain", config, list(overrides or [])))
    current = settings()
    typer.echo(f"\nMLflow UI:      {current.mlflow_url}  (experiment ringbit-pretrain, model ringbit-lm)")
    typer.echo(f"Ray dashboard:  {current.dashboard_url}")
    typer.echo("Services keep running; stop them with: ringbit down")


# The commands, in the order `ringbit --help` lists them (the groups after the commands).
services.register(app)  # up, down, status
jobs.register(app)  # submit, sweep, jobs, logs, stop
app.command("eval-ppl")(evaluator.eval_ppl)
app.command("export-bitnet")(export.export_bitnet)
app.command()(demo)
app.add_typer(serve.serve_app, name="serve")
app.add_typer(evaluator.evaluator_app, name="evaluator")
app.add_typer(models.models_app, name="models")
app.add_typer(agents.agents_app, name="agents")
app.add_typer(k8s_app, name="k8s")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
