"""`ringbit submit / sweep / jobs / logs / stop`: Ray jobs through the Jobs API."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Optional

import typer

from ringbit.commands.options import AddressOpt, ConfigOpt, SetOpt, address, load, settings
from ringbit.config import to_yaml
from ringbit.console import fail
from ringbit.workflows import WORKFLOWS


@dataclass
class SubmitOptions:
    """Everything `ringbit submit` needs: the workflow, its config and `--set` overrides, where to
    submit, and how to follow the job."""

    workflow: str
    config: Path
    overrides: list[str] = field(default_factory=list)
    name: str | None = None
    address: str | None = None
    mlflow_uri: str | None = None
    python: str | None = None
    dry_run: bool = False
    follow_logs: bool = True
    verbose: bool = False


def submit_job(opts: SubmitOptions) -> None:
    """Validate the config, submit it as a Ray job and follow it (exit 1 unless it succeeds)."""
    workflow, config, overrides = opts.workflow, opts.config, list(opts.overrides)
    if opts.name:
        overrides.append(f"name={opts.name}")
    cfg = load(workflow, config, overrides)
    if cfg.name is None:  # fix the name now so the job can be found and resumed by it
        cfg = cfg.model_copy(update={"name": time.strftime(f"{workflow}-%Y%m%d-%H%M%S")})
        overrides.append(f"name={cfg.name}")
    if opts.dry_run:
        typer.echo(to_yaml(cfg), nl=False)
        return
    from ringbit import jobs
    from ringbit.tracking import missing_registered_model, resolve_tracking_uri

    tracking_uri = resolve_tracking_uri(opts.mlflow_uri or cfg.mlflow.tracking_uri)
    for field, ref in _model_refs(workflow, cfg):  # refuse now, not minutes later in the job
        why = missing_registered_model(ref, tracking_uri)
        if why:
            raise fail(f"{field}: {why}", 2)
    platform = settings()
    env = {"MLFLOW_TRACKING_URI": tracking_uri,
           "RAY_AUTH_MODE": "token", "RINGBIT_HOME": str(platform.home),
           # relative data paths in a config mean relative to here (jobs run in a repo copy)
           "RINGBIT_SUBMIT_CWD": str(Path.cwd()),
           # on `ringbit stop`, give the driver time to mark runs KILLED / save Tune's state
           "RAY_JOB_STOP_WAIT_TIME_S": "60"}
    if opts.address is None:
        # Every process of the job (Ray Train's placement-group cleaner included) must find this
        # cluster even when several run on one machine; auto-detection then fails and stopped
        # trials keep their CPUs.
        env["RAY_ADDRESS"] = platform.ray_address
    try:
        entry = jobs.entrypoint(WORKFLOWS[workflow].script, config, overrides, opts.python or sys.executable)
        job_id = jobs.submit(address(opts.address), entry, cfg.name, env)
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    except Exception as exc:  # connection refused, auth: say what to do
        raise fail(f"could not submit to {address(opts.address)}: {exc}\n"
                   "is the platform up? run `ringbit up` (or pass --address)") from None
    typer.echo(f"submitted {job_id} (name {cfg.name})")
    if workflow == "sweep":  # what `ringbit sweep --resume NAME` resubmits
        record = platform.home / "sweeps" / f"{cfg.name}.submit.json"
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"config": str(config.resolve()), "overrides": overrides}))
    if not opts.follow_logs:
        return
    log_file = platform.home / "logs" / f"{job_id}.log"
    if workflow == "sweep":
        final = jobs.follow_sweep(address(opts.address), job_id, log_file, opts.verbose)
    else:
        final = jobs.follow(address(opts.address), job_id, log_file, opts.verbose, unit=WORKFLOWS[workflow].unit)
    typer.echo(f"job {job_id}: {final}")
    if final not in ("SUCCEEDED", "DETACHED"):
        raise typer.Exit(1)


def _model_refs(workflow: str, cfg) -> list[tuple[str, str]]:
    """(field, reference) of the model a job starts from: pretraining's init_from (a sweep's
    base's), a fine-tune's base_model."""
    if workflow == "sweep":
        from ringbit.tune.space import base_config

        return [(f"base {cfg.base}: init_from", ref) for ref in [base_config(cfg).init_from] if ref]
    return [(field, ref) for field in ("init_from", "base_model")
            if isinstance(ref := getattr(cfg, field, None), str)]


SUBMIT_HELP = "\n\n".join(
    ["Submit a job through the Ray Jobs API and follow it with a progress bar.", "Workflows:"]
    + [f"{name}: {wf.description}" for name, wf in WORKFLOWS.items()])


def submit(
    workflow: Annotated[str, typer.Argument(help=f"Workflow to run: {', '.join(WORKFLOWS)}.")],
    config: ConfigOpt,
    overrides: SetOpt = None,
    name: Annotated[Optional[str], typer.Option(help="Job name; the same name resumes that job.")] = None,
    address: AddressOpt = None,
    mlflow_uri: Annotated[Optional[str], typer.Option(help="MLflow URI the job logs to.")] = None,
    python: Annotated[Optional[str], typer.Option(help="Interpreter on the cluster (default: this one).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and print the resolved config only.")] = False,
    follow_logs: Annotated[bool, typer.Option("--follow/--no-follow", help="Show progress until the job ends.")] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print every log line.")] = False,
) -> None:
    submit_job(SubmitOptions(workflow, config, list(overrides or []), name, address, mlflow_uri, python,
                             dry_run, follow_logs, verbose))


def sweep(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="Sweep YAML, e.g. jobs/configs/sweep.yaml.")] = None,
    overrides: SetOpt = None,
    resume: Annotated[Optional[str], typer.Option(help="Resume the sweep of this name (finished trials are kept).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Sweep name; the same name resumes it.")] = None,
    address: AddressOpt = None,
    mlflow_uri: Annotated[Optional[str], typer.Option(help="MLflow URI the sweep logs to.")] = None,
    python: Annotated[Optional[str], typer.Option(help="Interpreter on the cluster (default: this one).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate every trial and print the resolved config.")] = False,
    follow_logs: Annotated[bool, typer.Option("--follow/--no-follow", help="Show the live trial table until the sweep ends.")] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print every log line.")] = False,
) -> None:
    """Ray Tune sweep over context length x weight bits: every trial a real pretraining job,
    ASHA early stopping, one MLflow parent run with a child per trial, a live table here."""
    overrides = list(overrides or [])
    if resume:
        record = settings().home / "sweeps" / f"{resume}.submit.json"
        if config is None:
            if not record.is_file():
                raise fail(f"--resume {resume}: no sweep of that name was submitted from here "
                           f"({record} missing); pass --config with the sweep's YAML too", 2)
            saved = json.loads(record.read_text())
            config = Path(saved["config"])
            overrides = [o for o in saved["overrides"] if not o.startswith("name=")] + overrides
        name = resume
    if config is None:
        raise fail("give --config jobs/configs/<sweep>.yaml (or --resume NAME)", 2)
    submit_job(SubmitOptions("sweep", config, overrides, name, address, mlflow_uri, python, dry_run,
                             follow_logs, verbose))


def list_jobs(address: AddressOpt = None) -> None:
    """List Ray jobs on the cluster."""
    from ringbit.jobs import job_client

    for job in sorted(job_client(_address(address)).list_jobs(), key=lambda j: j.start_time or 0):
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime((job.start_time or 0) / 1000))
        typer.echo(f"{job.submission_id or job.job_id:40s} {str(job.status.value):10s} {started}  {job.entrypoint}")


JobOpt = Annotated[str, typer.Argument(
    help="Submission id (as `ringbit jobs` lists it) or job name (`--name` of submit: its latest submission).")]


def _job_id(client, job: str) -> str:
    from ringbit.jobs import UnknownJob, resolve_job

    try:
        return resolve_job(client, job)
    except UnknownJob as exc:
        raise fail(str(exc), 2) from None


def logs(
    job: JobOpt,
    address: AddressOpt = None,
    follow_logs: Annotated[bool, typer.Option("--follow", "-f", help="Keep streaming until the job ends.")] = False,
) -> None:
    """Print a job's logs."""
    from ringbit import jobs

    client = jobs.job_client(_address(address))
    job_id = _job_id(client, job)
    if follow_logs:
        entry = client.get_job_info(job_id).entrypoint or ""
        unit = next((w.unit for w in WORKFLOWS.values() if w.script in entry), "train steps")
        jobs.follow(_address(address), job_id, settings().home / "logs" / f"{job_id}.log", verbose=True, unit=unit)
    else:
        typer.echo(client.get_job_logs(job_id), nl=False)


def stop(job: JobOpt, address: AddressOpt = None) -> None:
    """Stop a running job (its MLflow run is marked KILLED; resubmit the name to resume)."""
    from ringbit.jobs import job_client

    client = job_client(_address(address))
    job_id = _job_id(client, job)
    stopped = client.stop_job(job_id)
    typer.echo(f"{job_id}: {'stop requested' if stopped else 'was not running'}")


_address = address  # the commands' own `address` parameters shadow it


def register(app: typer.Typer) -> None:
    app.command(help=SUBMIT_HELP)(submit)
    app.command("sweep")(sweep)
    app.command("jobs")(list_jobs)
    app.command()(logs)
    app.command()(stop)
