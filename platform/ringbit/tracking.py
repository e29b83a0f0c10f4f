"""MLflow glue: one run per job (found again by job name on resume), params from the resolved
config, buffered metrics, FAILED/KILLED on crash, and the model registry."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

JOB_TAG = "ringbit.job_name"
MAX_PARAM_LEN = 6000


def resolve_tracking_uri(explicit: str | None = None) -> str:
    """Explicit value, else $MLFLOW_TRACKING_URI, else the local platform's MLflow server."""
    if explicit:
        return explicit
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    from ringbit.services import PlatformSettings

    return PlatformSettings.from_env().mlflow_url


def git_commit(repo: Path | None = None) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo or Path(__file__).parent, capture_output=True,
            text=True, timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def experiment_id(client: MlflowClient, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    return client.create_experiment(name)


def start_or_resume_run(client: MlflowClient, experiment: str, job_name: str) -> tuple[str, bool]:
    """(run_id, resumed): the run tagged with this job name, else a new one."""
    exp_id = experiment_id(client, experiment)
    found = client.search_runs([exp_id], f"tags.`{JOB_TAG}` = '{job_name}'", max_results=1,
                               order_by=["attributes.start_time DESC"])
    if found:
        run_id = found[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        return run_id, True
    run = client.create_run(exp_id, run_name=job_name, tags={JOB_TAG: job_name})
    return run.info.run_id, False


def log_params(client: MlflowClient, run_id: str, params: dict[str, Any]) -> None:
    """Params are immutable in MLflow: on resume only new keys are logged."""
    existing = client.get_run(run_id).data.params
    items = [Param(k, str(v)[:MAX_PARAM_LEN]) for k, v in params.items() if k not in existing]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i : i + 100])


def set_tags(client: MlflowClient, run_id: str, tags: dict[str, Any]) -> None:
    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def default_tags() -> dict[str, str]:
    tags = {"git.commit": git_commit(), "host": socket.gethostname()}
    job_id = ray_submission_id()
    if job_id:
        tags["ray.job_id"] = job_id
    return tags


def ray_submission_id() -> str | None:
    """The Ray Jobs submission id, which the job supervisor hands its driver in the job config."""
    import json

    from ray._private.runtime_env.constants import RAY_JOB_CONFIG_JSON_ENV_VAR

    try:
        metadata = json.loads(os.environ.get(RAY_JOB_CONFIG_JSON_ENV_VAR, "{}")).get("metadata", {})
    except ValueError:
        return None
    return metadata.get("job_submission_id")


class MetricBuffer:
    """Step metrics sent in batches; on resume, steps the run already has are not sent again; an
    unreachable tracking server never stops training.

    A resumed job re-runs the steps between its last checkpoint and the interruption. Their values
    were already logged (same data, same weights), so skipping them keeps the run's history one
    continuous curve with each step exactly once. While the server cannot be reached, metrics stay
    here and every later flush tries again (`close` retries with backoff at the end); what the run
    already has is read at the first contact, so a worker restarted during an outage still logs
    each step once.
    """

    def __init__(self, client: MlflowClient, run_id: str, key: str = "train_loss", log=print) -> None:
        self.client, self.run_id, self.key, self.log = client, run_id, key, log
        self.pending: list[Metric] = []
        self.start: list[Metric] = []  # step-0 metrics, sent once per run
        self.logged_through: int | None = None  # the run's last logged step, once known
        self.failing_since: float | None = None
        try:
            self._contact()
        except Exception as exc:  # noqa: BLE001  the server may be down right now
            self._failed(exc)

    def _contact(self) -> None:
        if self.logged_through is None:
            history = self.client.get_metric_history(self.run_id, self.key)
            self.logged_through = max((m.step for m in history), default=0)
            self.pending = [m for m in self.pending if m.step > self.logged_through]
        if self.start:
            if not any(m.step == 0 for m in self.client.get_metric_history(self.run_id, self.start[0].key)):
                self.client.log_batch(self.run_id, metrics=self.start)
            self.start = []

    def _failed(self, exc: Exception) -> None:
        if self.failing_since is None:
            self.failing_since = time.monotonic()
            self.log(f"[ringbit] MLflow unreachable ({type(exc).__name__}); training goes on, "
                     "metrics are kept and sent when it answers again")

    def add_start(self, **values: float) -> None:
        """Metrics at step 0 (where a pretrained model starts): once per run, so a job restarted
        before its first checkpoint does not log its start twice."""
        ts = int(time.time() * 1000)
        self.start = [Metric(k, float(v), ts, 0) for k, v in values.items()]

    def add(self, step: int, **values: float) -> None:
        if self.logged_through is not None and step <= self.logged_through:
            return
        ts = int(time.time() * 1000)
        self.pending.extend(Metric(k, float(v), ts, step) for k, v in values.items())

    def flush(self) -> bool:
        """Send what is pending; True when all of it is in MLflow, False (kept) when the server
        could not be reached."""
        try:
            self._contact()
            while self.pending:
                self.client.log_batch(self.run_id, metrics=self.pending[:1000])
                del self.pending[:1000]
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)
            return False
        if self.failing_since is not None:
            self.log(f"[ringbit] MLflow answers again after {time.monotonic() - self.failing_since:.0f} s; "
                     "the kept metrics are logged")
            self.failing_since = None
        return True

    def close(self, timeout_s: float = 300.0) -> bool:
        """The last flush, retried with backoff for up to `timeout_s`; False if metrics were lost
        (said in the log)."""
        deadline, delay = time.monotonic() + timeout_s, 1.0
        while not self.flush():
            if time.monotonic() + delay > deadline:
                self.log(f"[ringbit] MLflow unreachable for {timeout_s:.0f} s at the end: "
                         f"{len(self.pending) + len(self.start)} metric values were not logged")
                return False
            time.sleep(delay)
            delay = min(2 * delay, 30.0)
        return True


def run_url(tracking_uri: str, client: MlflowClient, run_id: str) -> str:
    run = client.get_run(run_id)
    return f"{tracking_uri.rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{run_id}"


def log_and_register_model(
    tracking_uri: str, run_id: str, model_dir: Path, registered_name: str | None, alias: str
) -> str | None:
    """Log the model folder as a models-from-code pyfunc, register it, point the alias at it.

    Returns the `models:/name@alias` URI (None when registration is off).
    """
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    code = Path(__file__).parent / "llm" / "mlflow_pyfunc.py"
    # Leaving this context marks the run FINISHED: call it as the job's last step.
    with mlflow.start_run(run_id=run_id, log_system_metrics=False):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(code),
            artifacts={"model_dir": str(model_dir)},
            code_paths=[str(Path(__file__).parent)],
            pip_requirements=["torch", "tokenizers", "safetensors", "pydantic", "mlflow"],
        )
    if not registered_name:
        return None
    version = mlflow.register_model(info.model_uri, registered_name)
    client = MlflowClient(tracking_uri)
    client.set_registered_model_alias(registered_name, alias, version.version)
    client.set_model_version_tag(registered_name, version.version, "ringbit.run_id", run_id)
    return f"models:/{registered_name}@{alias}"


def _download_once(uri: str, client: MlflowClient) -> Path:
    """The artifacts at `uri`, downloaded once per immutable version into the platform's cache
    ($RINGBIT_HOME/cache/…): every replica start and job used to download a fresh copy of the
    model (~0.5 GB for SmolLM2) into a temporary folder that nothing removed. The folder is
    published by an atomic rename, so replicas starting together never read a partial copy."""
    import shutil
    import uuid

    import mlflow

    parsed = parse_models_uri(uri)
    if parsed:  # pin the version now: an alias may move while we download
        name, alias, version = parsed
        mv = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
        uri = f"models:/{name}/{mv.version}"
        # the run id tells apart two registries' "version 1" (another server, a recreated store)
        key = Path("models") / name / f"v{mv.version}-{mv.run_id or mv.creation_timestamp}"
    else:  # runs:/RUN_ID/PATH: a run's artifacts do not change once logged
        key = Path("runs") / uri.removeprefix("runs:/").strip("/")
    from ringbit.services import PlatformSettings

    dest = PlatformSettings.from_env().home / "cache" / key
    if dest.is_dir():
        return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.parent / f".{dest.name}.{uuid.uuid4().hex}.partial"
        # runs:/ID/PATH lands in partial/<last part of PATH>, a model version in partial itself
        got = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(partial)))
    except OSError:  # a read-only home (some containers): a temporary copy as before
        return Path(mlflow.artifacts.download_artifacts(uri))
    try:
        got.rename(dest)
    except OSError:  # another replica published it first
        pass
    shutil.rmtree(partial, ignore_errors=True)
    return dest


def resolve_model_ref(ref: str, tracking_uri: str | None = None) -> Path:
    """A local model folder for a path, an MLflow run id, runs:/ or models:/ URI."""
    path = Path(ref).expanduser()
    if path.exists():
        return path
    import mlflow

    uri_of_server = resolve_tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(uri_of_server)
    if ref.startswith(("models:/", "runs:/")):
        uri = ref
    elif len(ref) == 32 and all(c in "0123456789abcdef" for c in ref):
        uri = f"runs:/{ref}/model"
    else:
        raise FileNotFoundError(
            f"--model {ref!r} is not a folder, an MLflow run id, runs:/... or models:/name@alias"
        )
    local = _download_once(uri, MlflowClient(uri_of_server))
    # A pyfunc model keeps our folder under artifacts/<name>.
    for candidate in (local, local / "artifacts" / "model_dir", *local.glob("artifacts/*")):
        if (candidate / "config.json").is_file():
            return candidate
    raise FileNotFoundError(f"{uri} holds no ringbit model folder (config.json not found)")


REGISTER_HINTS = {"ringbit-lm": "`make demo` trains the demo model and registers it as models:/ringbit-lm@current"}
# The SmolLM2 fine-tunes that serving/config.yaml serves by alias: the job config that registers each.
REGISTER_HINTS.update({
    f"{name}{suffix}": (f"`ringbit submit {job} -c jobs/configs/{job}-smollm2{suffix}.yaml` fine-tunes "
                        f"SmolLM2 and registers it as models:/{name}{suffix}@current")
    for name, job in (("smollm2-react", "finetune-react"), ("smollm2-instructscore", "finetune-evaluator"))
    for suffix in ("", "-lora")})


def register_hint(name: str) -> str:
    """What to run so that registered model `name` exists."""
    try:
        from ringbit.models.catalog import CATALOG
    except Exception:  # the catalog is optional here: without it the generic hint stands
        CATALOG = {}
    if name in CATALOG:
        return f"run `ringbit models import {name}` (it registers models:/{name}@base)"
    if name in REGISTER_HINTS:
        return REGISTER_HINTS[name]
    return (f"register it first (`ringbit models import SOURCE --name {name}`, or a training job with "
            f"mlflow.registered_model: {name})")


def parse_models_uri(uri: str) -> tuple[str, str | None, str | None] | None:
    """models:/NAME@ALIAS or models:/NAME/VERSION -> (name, alias, version); None otherwise."""
    if not uri.startswith("models:/"):
        return None
    rest = uri.removeprefix("models:/")
    if "@" in rest:
        name, _, alias = rest.partition("@")
        return (name, alias, None) if name and alias and "/" not in name else None
    name, _, version = rest.partition("/")
    return (name, None, version) if name and version.isdigit() else None


def _mlflow_answers(uri: str) -> bool:
    import urllib.request

    if not uri.startswith("http"):
        return True  # a local store: MLflow itself says what is missing
    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=3).read()
        return True
    except Exception:
        return False


def missing_registered_model(ref: str, tracking_uri: str | None = None) -> str | None:
    """For a models:/ reference the registry lacks: "REF, which is not registered in MLflow (URI):
    what to run". None when it is registered, is not a models:/ reference, or MLflow does not
    answer (whoever loads the model then reports why), so callers can refuse up front."""
    from mlflow.exceptions import MlflowException

    parsed = parse_models_uri(ref)
    if parsed is None:
        return None
    uri = resolve_tracking_uri(tracking_uri)
    if not _mlflow_answers(uri):
        return None
    name, alias, version = parsed
    try:
        client = MlflowClient(uri)
        if alias:
            client.get_model_version_by_alias(name, alias)
        else:
            client.get_model_version(name, version)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" not in str(exc.error_code) and "not found" not in str(exc).lower():
            raise
        return f"{ref}, which is not registered in MLflow ({uri}): {register_hint(name)}"
    return None


def log_benchmark_run(
    run_name: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    files: list[Path] = (),
    experiment: str = "ringbit-benchmarks",
) -> str | None:
    """One FINISHED run per benchmark invocation; None (and a note) when no server answers,
    since the benchmark's JSON file is the record either way."""
    try:
        uri = resolve_tracking_uri()
        if not _mlflow_answers(uri):  # fail fast instead of waiting out MLflow's retries
            raise ConnectionError(uri)
        client = MlflowClient(uri)
        run = client.create_run(experiment_id(client, experiment), run_name=run_name,
                                tags=default_tags())
    except Exception as exc:
        print(f"(MLflow not reachable, not logged: {type(exc).__name__})")
        return None
    rid, now = run.info.run_id, int(time.time() * 1000)
    client.log_batch(rid, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
    batch = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
    for i in range(0, len(batch), 500):
        client.log_batch(rid, metrics=batch[i:i + 500])
    for f in files:
        try:
            client.log_artifact(rid, str(f))
        except Exception as exc:  # the artifact store may not be reachable from here
            print(f"(artifact {Path(f).name} not logged: {type(exc).__name__})")
    client.set_terminated(rid)
    return rid


def mark_failed(client, run_id: str, log: Callable[[str], None] = print) -> None:
    """FAILED unless the run already ended KILLED (stopped) or FINISHED; never raises (it runs
    while an error is on its way out, which must not be replaced by the tracking server's)."""
    try:
        status = client.get_run(run_id).info.status
    except Exception as exc:  # noqa: BLE001  the server may be what failed
        log(f"[ringbit] could not read the MLflow run's status ({type(exc).__name__}: {exc})")
        status = None
    if status in ("KILLED", "FINISHED"):
        return
    try:
        client.set_terminated(run_id, "FAILED")
    except Exception as exc:  # noqa: BLE001
        log(f"[ringbit] could not mark the MLflow run FAILED ({type(exc).__name__}: {exc})")
