"""`ringbit`: local platform services, job submission, evaluation.

Errors a user can cause print one clear message (no traceback): exit 2 for usage and config
errors, 1 for everything else that failed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from ringbit.config import ConfigError, to_yaml
from ringbit.console import fail
from ringbit.workflows import WORKFLOWS, load_workflow_config

app = typer.Typer(
    help="ringbit: pretrain long-context and low-bit LMs on Ray + DeepSpeed, tracked in MLflow.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Job YAML, e.g. jobs/configs/demo.yaml.")]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help="Dotted override, repeatable: --set train.lr=3e-4 --set workers.num_workers=2."),
]
AddressOpt = Annotated[
    Optional[str], typer.Option("--address", help="Ray dashboard / Jobs API URL (default: the local platform).")
]


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


def _settings():
    from ringbit.services import PlatformSettings

    return PlatformSettings.from_env()


def _load(workflow: str, config: Path, overrides: list[str] | None):
    if workflow not in WORKFLOWS:
        raise fail(f"unknown workflow {workflow!r}; choose one of: {', '.join(WORKFLOWS)}", 2)
    try:
        return load_workflow_config(workflow, config, overrides)
    except ConfigError as exc:
        raise fail(f"invalid config {config}:\n{exc}", 2) from None


# ---------------------------------------------------------------------------------- services


@app.command()
def up() -> None:
    """Start the local Ray head (dashboard + Jobs API) and MLflow server in the background."""
    from ringbit.services import ServiceError, up as start

    settings = _settings()
    typer.echo(f"starting services (home {settings.home}) …")
    try:
        state = start(settings)
    except ServiceError as exc:
        raise fail(str(exc)) from None
    _print_status(state)


@app.command()
def down() -> None:
    """Stop the services `ringbit up` started (nothing else)."""
    from ringbit.services import down as stop

    stopped = stop(_settings())
    typer.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show Ray and MLflow: running, healthy, URL."""
    from ringbit.services import status as get_status

    state = get_status(_settings())
    if as_json:
        typer.echo(json.dumps(state, indent=2, default=str))
    else:
        _print_status(state)
    if not all(s.get("healthy") for k, s in state.items() if isinstance(s, dict)):
        raise typer.Exit(1)


def _print_status(state: dict) -> None:
    for name in ("ray", "mlflow"):
        s = state.get(name, {})
        mark = "healthy" if s.get("healthy") else ("running, not healthy" if s.get("running") else "stopped")
        typer.echo(f"{name:7s} {mark:22s} {s.get('url', '')}")


# ---------------------------------------------------------------------------------- jobs


def _address(address: str | None) -> str:
    return address or _settings().dashboard_url


@app.command()
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
    """Submit a job through the Ray Jobs API and follow it with a progress bar."""
    _submit(workflow, config, list(overrides or []), name, address, mlflow_uri, python, dry_run,
            follow_logs, verbose)


def _submit(workflow: str, config: Path, overrides: list[str], name: str | None, address: str | None,
            mlflow_uri: str | None, python: str | None, dry_run: bool, follow_logs: bool,
            verbose: bool) -> None:
    if name:
        overrides.append(f"name={name}")
    cfg = _load(workflow, config, overrides)
    if cfg.name is None:  # fix the name now so the job can be found and resumed by it
        cfg = cfg.model_copy(update={"name": time.strftime(f"{workflow}-%Y%m%d-%H%M%S")})
        overrides.append(f"name={cfg.name}")
    if dry_run:
        typer.echo(to_yaml(cfg), nl=False)
        return
    from ringbit import jobs
    from ringbit.tracking import resolve_tracking_uri

    settings = _settings()
    env = {"MLFLOW_TRACKING_URI": resolve_tracking_uri(mlflow_uri or cfg.mlflow.tracking_uri),
           "RAY_AUTH_MODE": "token", "RINGBIT_HOME": str(settings.home),
           # relative data paths in a config mean relative to here (jobs run in a repo copy)
           "RINGBIT_SUBMIT_CWD": str(Path.cwd()),
           # on `ringbit stop`, give the driver time to mark runs KILLED / save Tune's state
           "RAY_JOB_STOP_WAIT_TIME_S": "60"}
    if address is None:
        # Every process of the job (Ray Train's placement-group cleaner included) must find this
        # cluster even when several run on one machine; auto-detection then fails and stopped
        # trials keep their CPUs.
        env["RAY_ADDRESS"] = settings.ray_address
    try:
        entry = jobs.entrypoint(WORKFLOWS[workflow][1], config, overrides, python or sys.executable)
        job_id = jobs.submit(_address(address), entry, cfg.name, env)
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    except Exception as exc:  # connection refused, auth: say what to do
        raise fail(f"could not submit to {_address(address)}: {exc}\n"
                   "is the platform up? run `ringbit up` (or pass --address)") from None
    typer.echo(f"submitted {job_id} (name {cfg.name})")
    if workflow == "sweep":  # what `ringbit sweep --resume NAME` resubmits
        record = settings.home / "sweeps" / f"{cfg.name}.submit.json"
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"config": str(config.resolve()), "overrides": overrides}))
    if not follow_logs:
        return
    show = jobs.follow_sweep if workflow == "sweep" else jobs.follow
    final = show(_address(address), job_id, settings.home / "logs" / f"{job_id}.log", verbose)
    typer.echo(f"job {job_id}: {final}")
    if final not in ("SUCCEEDED", "DETACHED"):
        raise typer.Exit(1)


@app.command("sweep")
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
        record = _settings().home / "sweeps" / f"{resume}.submit.json"
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
    _submit("sweep", config, overrides, name, address, mlflow_uri, python, dry_run, follow_logs, verbose)


@app.command("jobs")
def list_jobs(address: AddressOpt = None) -> None:
    """List Ray jobs on the cluster."""
    from ringbit.jobs import job_client

    for job in sorted(job_client(_address(address)).list_jobs(), key=lambda j: j.start_time or 0):
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime((job.start_time or 0) / 1000))
        typer.echo(f"{job.submission_id or job.job_id:40s} {str(job.status.value):10s} {started}  {job.entrypoint}")


@app.command()
def logs(
    job_id: str,
    address: AddressOpt = None,
    follow_logs: Annotated[bool, typer.Option("--follow", "-f", help="Keep streaming until the job ends.")] = False,
) -> None:
    """Print a job's logs."""
    from ringbit import jobs

    if follow_logs:
        jobs.follow(_address(address), job_id, _settings().home / "logs" / f"{job_id}.log", verbose=True)
    else:
        typer.echo(jobs.job_client(_address(address)).get_job_logs(job_id), nl=False)


@app.command()
def stop(job_id: str, address: AddressOpt = None) -> None:
    """Stop a running job (its MLflow run is marked KILLED; resubmit the name to resume)."""
    from ringbit.jobs import job_client

    stopped = job_client(_address(address)).stop_job(job_id)
    typer.echo(f"{job_id}: {'stop requested' if stopped else 'was not running'}")


# ---------------------------------------------------------------------------------- serving

serve_app = typer.Typer(help="Ray Serve applications (serving/config.yaml) on the platform's Ray.",
                        no_args_is_help=True)
app.add_typer(serve_app, name="serve")


def _connect_ray(address: str | None) -> None:
    from ringbit.services import ensure_client_env

    ensure_client_env()
    import ray

    try:
        ray.init(address=address or _settings().ray_address, log_to_driver=False,
                 namespace="serve", logging_level="ERROR")
    except Exception as exc:
        raise fail(f"cannot reach Ray at {address or _settings().ray_address}: {exc}\n"
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
        serving.check_registered_models(cfg)  # a missing models:/ ref: what to run, before deploying
    except serving.ServeConfigError as exc:
        raise fail(str(exc), 2) from None
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


# ---------------------------------------------------------------------------------- evaluator

evaluator_app = typer.Typer(help="InstructScore evaluator: synthetic training data, meta-evaluation.",
                            no_args_is_help=True)
app.add_typer(evaluator_app, name="evaluator")


@evaluator_app.command("synth")
def evaluator_synth(
    out: Annotated[Path, typer.Option(help="JSONL file to write.")],
    n: Annotated[int, typer.Option(help="Examples to write.")] = 1000,
    corpus: Annotated[str, typer.Option(help="builtin:python-docs, builtin:python-topics or a text file.")] = "builtin:python-docs",
    seed: Annotated[int, typer.Option(help="Random seed (deterministic output).")] = 0,
) -> None:
    """SEScore-style synthetic (reference, candidate, report, score) examples from a corpus:
    1-5 insert / delete / replace / swap errors per sentence, minor or major."""
    from ringbit.data.corpus import BUILTINS, builtin_documents
    from ringbit.evaluator.synthetic import make_examples, write_jsonl

    if corpus in BUILTINS:
        texts = builtin_documents(corpus)
    elif Path(corpus).is_file():
        texts = [Path(corpus).read_text(errors="replace")]
    else:
        raise fail(f"--corpus {corpus!r}: not a file nor one of {', '.join(BUILTINS)}", 2)
    if n < 1:
        raise fail("--n must be at least 1", 2)
    try:
        examples = make_examples(texts, n, seed=seed)
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    write_jsonl(examples, out)
    errors = sum(len(e.errors) for e in examples)
    typer.echo(f"wrote {len(examples)} examples ({errors} errors) to {out}")


@evaluator_app.command("meta-eval")
def evaluator_meta_eval(
    data: Annotated[Path, typer.Option(help="Gold segments: synthetic .jsonl or a human-score .tsv (system, source, reference, candidate, score[, task]).")],
    evaluator_url: Annotated[str, typer.Option(help="The evaluator service, e.g. http://127.0.0.1:8000.")] = "http://127.0.0.1:8000",
    limit: Annotated[Optional[int], typer.Option(help="Use the first N segments.")] = None,
    batch: Annotated[int, typer.Option(help="Items per request (at most the evaluator's max_items).")] = 8,
    experiment: Annotated[str, typer.Option(help="MLflow experiment.")] = "ringbit-evaluator",
    mlflow_uri: Annotated[Optional[str], typer.Option(help="MLflow URI (default: the local platform's).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Segment-level Kendall tau and Pearson between the evaluator's scores and gold scores,
    logged to MLflow with a scatter plot and the predictions."""
    import tempfile

    from mlflow.tracking import MlflowClient
    from tqdm import tqdm

    from ringbit import tracking
    from ringbit.evaluator.metaeval import correlations, read_segments, scatter_plot, score_segments

    if not data.is_file():
        raise fail(f"--data {data}: no such file", 2)
    try:
        segments = read_segments(data)[:limit]
    except (ValueError, json.JSONDecodeError) as exc:
        raise fail(f"--data {data}: {exc}", 2) from None
    if len(segments) < 2:
        raise fail(f"--data {data}: need at least 2 segments, found {len(segments)}", 2)
    with tqdm(total=len(segments), unit="seg", desc="meta-eval", disable=as_json) as bar:
        try:
            results = score_segments(segments, evaluator_url, batch=max(1, batch), progress=bar.update)
        except Exception as exc:
            raise fail(f"--evaluator-url {evaluator_url}: {exc}") from None
    predicted, gold = [r["score"] for r in results], [s.gold for s in segments]
    stats = correlations(predicted, gold)
    uri = tracking.resolve_tracking_uri(mlflow_uri)
    client = MlflowClient(uri)
    run = client.create_run(tracking.experiment_id(client, experiment), run_name=f"meta-eval-{data.stem}",
                            tags=tracking.default_tags())
    rid = run.info.run_id
    tracking.log_params(client, rid, {"data": str(data), "evaluator_url": evaluator_url, "segments": len(segments)})
    for key in ("kendall_tau", "pearson"):
        client.log_metric(rid, key, stats[key])
    with tempfile.TemporaryDirectory() as tmp:
        png = scatter_plot(predicted, gold, Path(tmp) / "scatter.png",
                           f"tau {stats['kendall_tau']:.3f}  r {stats['pearson']:.3f}  (n={len(gold)})")
        preds = Path(tmp) / "predictions.jsonl"
        preds.write_text("".join(json.dumps({**s.item(), "gold": s.gold, **r}) + "\n"
                                 for s, r in zip(segments, results)))
        client.log_artifact(rid, str(png))
        client.log_artifact(rid, str(preds))
    client.set_terminated(rid)
    result = {**stats, "mlflow_run": rid}
    typer.echo(json.dumps(result) if as_json else
               f"Kendall tau {stats['kendall_tau']:.4f}   Pearson {stats['pearson']:.4f}   "
               f"({stats['n']} segments; MLflow run {rid})")


# ---------------------------------------------------------------------------------- models

from ringbit.models.catalog import CATALOG as _MODEL_CATALOG  # noqa: E402 (standard library only)
_CATALOG_HELP = "; ".join(f"{n} ({e.license}, from {e.upstream})" for n, e in _MODEL_CATALOG.items())
models_app = typer.Typer(
    help="Pretrained models in the platform's MLflow registry: import (catalog name, GGUF file or Hugging "
         f"Face folder) and list. Catalog: {_CATALOG_HELP}.",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")


def _registry_call(fn: Callable[[], Any]) -> Any:
    """Run a registry operation; user errors exit 2, an unreachable MLflow exits 1."""
    from ringbit.registry import RegistryUnavailable

    try:
        return fn()
    except RegistryUnavailable as exc:
        raise fail(str(exc), 1) from None
    except ValueError as exc:  # the classes are imported here: ringbit.models brings torch
        from ringbit.models.catalog import CatalogError
        from ringbit.models.convert import ModelImportError
        from ringbit.registry import NameClash

        if isinstance(exc, (CatalogError, ModelImportError, NameClash)):
            raise fail(str(exc), 2) from None
        raise
    except Exception as exc:
        from mlflow.exceptions import MlflowException

        if isinstance(exc, MlflowException):
            raise fail(f"MLflow: {exc.message}; is the platform up? run `ringbit up`", 1) from None
        raise


@models_app.command("import")
def models_import(
    source: Annotated[str, typer.Argument(help=f"A catalog name ({', '.join(_MODEL_CATALOG)}), a Llama-architecture .gguf file, or a Hugging Face folder (config.json, *.safetensors, tokenizer.json).", show_default=False)],
    name: Annotated[Optional[str], typer.Option(help="Registered model name (default: the catalog name, or a slug of the file/folder name).")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="If NAME exists: add a new version and move @base to it.")] = False,
    mlflow_uri: Annotated[Optional[str], typer.Option(help="MLflow URI (default: $MLFLOW_TRACKING_URI or the local platform's).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON (progress goes to stderr).")] = False,
) -> None:
    """Import a pretrained model and register it as models:/NAME@base.

    Converts SOURCE into a ringbit model folder, checks that it loads and runs, and only then logs
    it to MLflow (experiment ringbit-models; license, source sha256, parameters and context as
    tags). Use it wherever a model is taken, e.g. eval-ppl --model models:/NAME@base or
    serve up --model lm=models:/NAME@base."""
    from ringbit.registry import import_model

    def log(msg: str) -> None:
        typer.echo(msg, err=as_json)

    result = _registry_call(lambda: import_model(source, name=name, tracking_uri=mlflow_uri, replace=replace,
                                                 log=log))
    if as_json:
        typer.echo(json.dumps(result))


@models_app.command("list")
def models_list(
    mlflow_uri: Annotated[Optional[str], typer.Option(help="MLflow URI (default: $MLFLOW_TRACKING_URI or the local platform's).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
) -> None:
    """Registered model versions: name, version, aliases, parameters, context, source, license."""
    from ringbit.registry import human_count, list_models

    rows = _registry_call(lambda: list_models(mlflow_uri))
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo("no registered models; import one with: ringbit models import "
                   f"{next(iter(_MODEL_CATALOG), 'SOURCE')}")
        return
    header = ("NAME", "VERSION", "ALIASES", "PARAMETERS", "CONTEXT", "LICENSE", "SOURCE")
    table = [header] + [
        (r["name"], str(r["version"]), ",".join("@" + a for a in r["aliases"]) or "-", human_count(r["parameters"]),
         str(r["context"] or "-"), r["license"], r["source"]) for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])


# ---------------------------------------------------------------------------------- evaluation


@app.command("eval-ppl")
def eval_ppl(
    model: Annotated[str, typer.Option(help="Model folder, MLflow run id, runs:/… or models:/name@alias.")],
    data: Annotated[str, typer.Option(help="Text file to score (or builtin:python-topics / builtin:python-docs).")],
    context: Annotated[Optional[int], typer.Option(help="Window length (default: the model's max_seq_len).")] = None,
    stride: Annotated[Optional[int], typer.Option(help="Window step (default: context // 2).")] = None,
    mlflow_uri: Annotated[Optional[str], typer.Option(help="MLflow URI for run/registry models.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Log-perplexity of a model on a text, with a sliding window for long texts."""
    import torch
    from tqdm import tqdm

    from ringbit.data.corpus import BUILTINS, builtin_documents
    from ringbit.data.tokenizer import EOS
    from ringbit.models.io import load_model_dir
    from ringbit.tracking import resolve_model_ref
    from ringbit.train.perplexity import perplexity, sliding_window_nll

    if data not in BUILTINS and not Path(data).is_file():
        raise fail(f"--data {data!r}: no such file", 2)
    try:
        lm, tok = load_model_dir(resolve_model_ref(model, mlflow_uri))
    except FileNotFoundError as exc:
        raise fail(str(exc), 2) from None
    if data in BUILTINS:
        text = EOS.join(builtin_documents(data))
    else:
        text = Path(data).read_text(errors="replace")
    ids = torch.tensor(tok.encode(text).ids)
    ctx = context or lm.cfg.max_seq_len
    if ctx > lm.cfg.max_seq_len:
        raise fail(f"--context {ctx} exceeds the model's max_seq_len {lm.cfg.max_seq_len}", 2)
    step = stride or max(1, ctx // 2)
    if not 0 < step <= ctx:
        raise fail(f"--stride must be between 1 and the context ({ctx})", 2)
    with tqdm(total=len(ids), unit="tok", desc="eval-ppl", disable=as_json) as bar:
        total, count = sliding_window_nll(lm, ids, ctx, step, progress=lambda n: bar.update(n - bar.n))
    if count == 0:
        raise fail("the text has fewer than 2 tokens", 2)
    loss, ppl = perplexity(total, count)
    result = {"log_ppl": loss, "ppl": ppl, "tokens": count, "context": ctx, "stride": step}
    typer.echo(json.dumps(result) if as_json else
               f"log-perplexity {loss:.4f}   perplexity {ppl:.3f}   ({count} tokens, context {ctx}, stride {step})")


@app.command("export-bitnet")
def export_bitnet(
    model: Annotated[str, typer.Option(help="BitNet model: folder, MLflow run id, runs:/… or models:/name@alias.")],
    out: Annotated[Path, typer.Option(help="Folder to write the packed model to.")],
    ternary_format: Annotated[str, typer.Option(help="Ternary/2-bit packing: i2 (2-bit codes, 4 per byte) or t3 (base 3, 5 per byte).")] = "i2",
    high_precision: Annotated[str, typer.Option(help="dtype kept for embeddings, norms and LM head: float32 or bfloat16.")] = "float32",
    register: Annotated[Optional[str], typer.Option(help="Register the packed model under this name (default for models:/NAME@…: NAME-packed; none for a folder).")] = None,
    alias: Annotated[str, typer.Option(help="Registry alias to point at the packed version.")] = "current",
    mlflow_uri: Annotated[Optional[str], typer.Option(help="MLflow URI (registry source and target).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the size report as JSON.")] = False,
) -> None:
    """Pack a trained BitNet model (1-bit: 8 weights per byte; ternary: 4 or 5 per byte) into
    safetensors that PackedBitLinear runs directly; eval-ppl and generation load it as any model."""
    from ringbit import tracking
    from ringbit.quant.export import export_packed
    from ringbit.quant.packing import TERNARY_FORMATS

    if ternary_format not in TERNARY_FORMATS:
        raise fail(f"--ternary-format {ternary_format!r}: choose one of {', '.join(TERNARY_FORMATS)}", 2)
    if high_precision not in ("float32", "bfloat16"):
        raise fail(f"--high-precision {high_precision!r}: choose float32 or bfloat16", 2)
    if alias == "latest":
        raise fail("--alias latest is reserved by MLflow; pick another name", 2)
    if out.exists() and any(out.iterdir()):
        raise fail(f"--out {out} exists and is not empty; choose a new folder", 2)
    from mlflow.exceptions import MlflowException

    try:
        src = tracking.resolve_model_ref(model, mlflow_uri)
        report = export_packed(src, out, ternary_format, high_precision)
    except (FileNotFoundError, ValueError, MlflowException) as exc:
        raise fail(f"--model {model}: {exc}", 2) from None
    if register is None and model.startswith("models:/"):
        register = model.removeprefix("models:/").split("@")[0].split("/")[0] + "-packed"
    if register:
        from mlflow.tracking import MlflowClient

        uri = tracking.resolve_tracking_uri(mlflow_uri)
        client = MlflowClient(uri)
        run = client.create_run(tracking.experiment_id(client, "ringbit-export"),
                                run_name=f"export-bitnet-{register}",
                                tags={"ringbit.source_model": model, **tracking.default_tags()})
        tracking.log_params(client, run.info.run_id, {"format": report["format"],
                                                      "weight_bits": report["weight_bits"],
                                                      "high_precision": high_precision,
                                                      "source": model})
        for key in ("linear_ratio", "checkpoint_ratio", "linear_packed_bytes", "checkpoint_packed_bytes"):
            client.log_metric(run.info.run_id, key, report[key])
        report["registered"] = tracking.log_and_register_model(uri, run.info.run_id, out, register, alias)
    if as_json:
        typer.echo(json.dumps(report))
        return
    mb = 1 / 2**20
    typer.echo(f"packed {report['weight_bits']:g}-bit weights as {report['format']} into {out}")
    typer.echo(f"  projections: {report['linear_packed_bytes'] * mb:.2f} MiB packed vs "
               f"{report['linear_bf16_bytes'] * mb:.2f} MiB bf16 ({report['linear_ratio']:.1f}x smaller)")
    typer.echo(f"  whole model: {report['checkpoint_packed_bytes'] * mb:.2f} MiB vs "
               f"{report['checkpoint_bf16_bytes'] * mb:.2f} MiB bf16 ({report['checkpoint_ratio']:.2f}x; "
               f"embeddings and LM head kept in {high_precision})")
    if report.get("registered"):
        typer.echo(f"  registered as {report['registered']}")


# ---------------------------------------------------------------------------------- demo


@app.command()
def demo(
    config: Annotated[Path, typer.Option("--config", "-c")] = Path("jobs/configs/demo.yaml"),
    overrides: SetOpt = None,
) -> None:
    """Bring the platform up, pretrain the demo model with 2 workers under ZeRO-2, show results."""
    from ringbit.jobs import REPO_ROOT

    config = config if config.exists() else REPO_ROOT / config
    _load("pretrain", config, overrides)  # fail fast, before anything starts
    up()
    _submit("pretrain", config, list(overrides or []), name=None, address=None, mlflow_uri=None,
            python=None, dry_run=False, follow_logs=True, verbose=False)
    settings = _settings()
    typer.echo(f"\nMLflow UI:      {settings.mlflow_url}  (experiment ringbit-pretrain, model ringbit-lm)")
    typer.echo(f"Ray dashboard:  {settings.dashboard_url}")
    typer.echo("Services keep running; stop them with: ringbit down")


# ---------------------------------------------------------------------------------- entrypoints


# ---------------------------------------------------------------------------------- agents

agents_app = typer.Typer(help="Language agents: evaluation jobs (MiniWoB++ computer control, ReAct, "
                              "MemWalker); REST runs go through `ringbit serve up`.", no_args_is_help=True)
app.add_typer(agents_app, name="agents")
eval_app = typer.Typer(help="Evaluate an agent as a Ray job; results, plots and trajectories in MLflow.",
                       no_args_is_help=True)
agents_app.add_typer(eval_app, name="eval")
LLMUrlOpt = Annotated[Optional[str], typer.Option("--llm-url", help="OpenAI-compatible endpoint (default: the platform's LM service, `ringbit serve up`).")]
LLMModelOpt = Annotated[Optional[str], typer.Option("--model", help="Model name sent to the endpoint (default: its first).")]
LLMApiOpt = Annotated[Optional[str], typer.Option("--api", help="completions (prompts as-is) or chat (one user message).")]
NameOpt = Annotated[Optional[str], typer.Option(help="Run name in MLflow and the Jobs API.")]
FollowOpt = Annotated[bool, typer.Option("--follow/--no-follow", help="Show progress until the job ends.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Validate and print the resolved config only.")]


def _eval(workflow: str, config: Path | None, default: str, options: dict[str, Any], overrides: list[str] | None,
          name: str | None, address: str | None, dry_run: bool, follow_logs: bool) -> None:
    from ringbit.jobs import REPO_ROOT

    sets = [f"{k}={v}" for k, v in options.items() if v is not None]
    _submit(workflow, config or REPO_ROOT / "jobs" / "configs" / default, sets + list(overrides or []), name, address, None,
            None, dry_run, follow_logs, False)


@eval_app.command("computer")
def eval_computer(
    tasks: Annotated[Optional[str], typer.Option(help="Comma-separated MiniWoB++ tasks, e.g. click-button,enter-text.")] = None,
    seeds: Annotated[Optional[str], typer.Option(help="Seeds: 0-9, or 0,3,7.")] = None,
    trials: Annotated[Optional[int], typer.Option(help="Trials per episode (reflection between them), 1-10.")] = None,
    browsers: Annotated[Optional[int], typer.Option(help="Browser actors running episodes in parallel.")] = None,
    llm_url: LLMUrlOpt = None, model: LLMModelOpt = None, api: LLMApiOpt = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="Default: jobs/configs/agents-computer.yaml.")] = None,
    overrides: SetOpt = None, name: NameOpt = None, address: AddressOpt = None,
    dry_run: DryRunOpt = False, follow_logs: FollowOpt = True,
) -> None:
    """Structured-reflection computer-control agent on real MiniWoB++ (headless Chromium): success
    rate per task and per trial, trajectories (screens, plans, actions, reflections) in MLflow."""
    opts = {"tasks": f"[{tasks}]" if tasks else None, "seeds": f"'{seeds}'" if seeds else None,
            "trials": trials, "browsers": browsers, "llm.url": llm_url, "llm.model": model, "llm.api": api}
    _eval("eval-computer", config, "agents-computer.yaml", opts, overrides, name, address, dry_run, follow_logs)


@eval_app.command("react")
def eval_react(
    questions: Annotated[Optional[str], typer.Option(help="FireAct trajectories (gold = finish answers) or JSONL of {question, answer}.")] = None,
    n: Annotated[Optional[int], typer.Option(help="Questions to evaluate.")] = None,
    split: Annotated[Optional[str], typer.Option(help="all, or heldout (the fine-tuning job's held-out questions).")] = None,
    search: Annotated[Optional[str], typer.Option(help="cache (the trajectories' recorded results), cache:FILE or bm25:PASSAGES.jsonl.")] = None,
    llm_url: LLMUrlOpt = None, model: LLMModelOpt = None, api: LLMApiOpt = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="Default: jobs/configs/agents-react.yaml.")] = None,
    overrides: SetOpt = None, name: NameOpt = None, address: AddressOpt = None,
    dry_run: DryRunOpt = False, follow_logs: FollowOpt = True,
) -> None:
    """FireAct ReAct agent on HotpotQA questions with an offline search tool: EM / F1 in MLflow."""
    opts = {"questions": questions, "n": n, "split": split, "search": search, "llm.url": llm_url,
            "llm.model": model, "llm.api": api}
    _eval("eval-react", config, "agents-react.yaml", opts, overrides, name, address, dry_run, follow_logs)


@eval_app.command("memwalker")
def eval_memwalker(
    docs: Annotated[Optional[int], typer.Option(help="Synthetic documents (one planted-fact question each).")] = None,
    words: Annotated[Optional[int], typer.Option(help="Words per document.")] = None,
    segment_words: Annotated[Optional[int], typer.Option(help="Words per leaf segment.")] = None,
    llm_url: LLMUrlOpt = None, model: LLMModelOpt = None, api: LLMApiOpt = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="Default: jobs/configs/agents-memwalker.yaml.")] = None,
    overrides: SetOpt = None, name: NameOpt = None, address: AddressOpt = None,
    dry_run: DryRunOpt = False, follow_logs: FollowOpt = True,
) -> None:
    """MemWalker on synthetic long documents with planted facts: accuracy in MLflow."""
    opts = {"n_docs": docs, "n_words": words, "segment_words": segment_words, "llm.url": llm_url,
            "llm.model": model, "llm.api": api}
    _eval("eval-memwalker", config, "agents-memwalker.yaml", opts, overrides, name, address, dry_run, follow_logs)


# ---------------------------------------------------------------------------------- kubernetes

from ringbit.k8s.cli import k8s_app  # noqa: E402  (typer only; kustomize and schemas load per command)

app.add_typer(k8s_app, name="k8s")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
