"""Submitting and following Ray jobs: the Jobs API client, the entrypoint line, a progress bar."""

from __future__ import annotations

import asyncio
import re
import shlex
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from ringbit.train.progress import PROGRESS, parse_progress  # noqa: F401  (the line jobs print)

REPO_ROOT = Path(__file__).resolve().parents[2]
EXCLUDES = [".venv", ".git", "**/__pycache__", "*.egg-info", ".pytest_cache", "**/*.pt", "mlruns"]


def job_client(address: str):
    import logging

    from ray.job_submission import JobSubmissionClient

    # Ray's packaging and SDK chatter (INFO/WARNING lines) is noise to someone submitting a job.
    for name in ("ray", "ray.dashboard.modules.dashboard_sdk", "ray.dashboard.modules.job.sdk"):
        logging.getLogger(name).setLevel(logging.ERROR)

    from ringbit.services import auth_headers, ensure_client_env

    ensure_client_env()
    return JobSubmissionClient(address, headers=auth_headers() or None)


class UnknownJob(LookupError):
    """No job by that submission id or name; the message says where to look."""


def resolve_job(client, id_or_name: str) -> str:
    """The submission id for `id_or_name`: a submission id as `ringbit jobs` lists it, or a job
    name as given to `ringbit submit --name` (its latest submission)."""
    jobs = client.list_jobs()
    if any(j.submission_id == id_or_name for j in jobs):
        return id_or_name
    named = [j for j in jobs if (j.metadata or {}).get("ringbit.job_name") == id_or_name and j.submission_id]
    if named:
        return max(named, key=lambda j: j.start_time or 0).submission_id
    raise UnknownJob(f"no job {id_or_name!r} on this cluster: give a submission id or a job name "
                     "as `ringbit jobs` lists them")


def stop_all(address: str, timeout_s: float = 60.0, log=print) -> list[str]:
    """Stop every pending or running job and wait (up to `timeout_s`) until each has ended: a
    stopped job's driver marks its MLflow run KILLED, which needs MLflow still up. Returns the
    submission ids stopped."""
    from ray.job_submission import JobStatus

    client = job_client(address)
    active = [j.submission_id for j in client.list_jobs()
              if j.submission_id and j.status in (JobStatus.PENDING, JobStatus.RUNNING)]
    for job_id in active:
        log(f"stopping job {job_id} …")
        client.stop_job(job_id)
    deadline = time.monotonic() + timeout_s
    left = set(active)
    while left and time.monotonic() < deadline:
        left = {j for j in left if not client.get_job_status(j).is_terminal()}
        if left:
            time.sleep(0.5)
    if left:
        log(f"still stopping after {timeout_s:.0f} s: {', '.join(sorted(left))} (Ray will end them)")
    return active


def entrypoint(script: str, config: Path, overrides: list[str], python: str) -> str:
    try:
        rel = config.resolve().relative_to(REPO_ROOT)
    except ValueError:
        raise ValueError(
            f"--config {config} is outside the repository {REPO_ROOT}: the repository is the job's "
            "working directory, so put the YAML under jobs/configs/"
        ) from None
    parts = [python, script, "--config", str(rel)]
    for item in overrides:
        parts += ["--set", item]
    return shlex.join(parts)


def submit(address: str, entry: str, name: str, env: dict[str, str]) -> str:
    client = job_client(address)
    runtime_env: dict[str, Any] = {
        "working_dir": str(REPO_ROOT),
        "excludes": EXCLUDES,
        # The uploaded copy of the library wins over any installed one, on the driver and workers.
        # Ray Train's print patch tees a worker's print to stdout *and* to a logger writing to
        # stderr when anything has wrapped sys.stdout, so every line showed twice in the job log.
        "env_vars": {"PYTHONPATH": "platform", "RAY_TRAIN_ENABLE_PRINT_PATCH": "0", **env},
    }
    return client.submit_job(
        entrypoint=entry, runtime_env=runtime_env,
        submission_id=f"{name}-{uuid.uuid4().hex[:6]}", metadata={"ringbit.job_name": name},
    )


def _transient_errors() -> tuple[type[BaseException], ...]:
    """What a busy or restarting dashboard raises: requests' errors are OSErrors, aiohttp's are not."""
    import aiohttp

    return (OSError, aiohttp.ClientError, asyncio.TimeoutError)


def _tail(address: str, job_id: str, log_file: Path, on_line, display, retry_s: float = 5.0,
          give_up_after_s: float = 300.0) -> str:
    """Stream a job's logs into log_file, calling on_line per line inside the `display` context;
    returns the final status. Ctrl-C detaches (the job keeps running). A dropped connection to the
    dashboard (a loaded head node drops them) is retried every `retry_s` seconds for up to
    `give_up_after_s`; the log stream restarts from the beginning, so what was seen is skipped."""
    from ray.job_submission import JobStatus

    transient = _transient_errors()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    seen = 0  # characters of the job's log already written and parsed

    async def tail() -> None:
        nonlocal seen
        with log_file.open("a") as out:
            skip = seen
            async for chunk in client.tail_job_logs(job_id):
                if skip:
                    cut = min(skip, len(chunk))
                    chunk, skip = chunk[cut:], skip - cut
                    if not chunk:
                        continue
                seen += len(chunk)
                out.write(chunk)
                out.flush()
                for line in chunk.splitlines():
                    on_line(line)

    def with_retries(call):
        waited = 0.0
        while True:
            try:
                return call()
            except (*transient, RuntimeError) as exc:
                # Ray's log tail reports a dropped websocket as a RuntimeError ("WebSocket
                # connection closed unexpectedly with close code 1006"); other RuntimeErrors are real.
                if isinstance(exc, RuntimeError) and "WebSocket connection closed" not in str(exc):
                    raise
                if waited >= give_up_after_s:
                    raise SystemExit(f"lost the Ray dashboard at {address} for {give_up_after_s:.0f} s "
                                     f"({type(exc).__name__}); the job may still run: ringbit logs {job_id} "
                                     "--follow") from None
                print(f"\nno answer from the Ray dashboard at {address} ({type(exc).__name__}); "
                      f"retrying in {retry_s:g} s", file=sys.stderr)
                time.sleep(retry_s)
                waited += retry_s

    client = with_retries(lambda: job_client(address))
    try:
        with display:
            with_retries(lambda: asyncio.run(tail()))
    except KeyboardInterrupt:
        print(f"\ndetached; the job keeps running. Follow: ringbit logs {job_id} --follow; "
              f"stop: ringbit stop {job_id}")
        return "DETACHED"
    status = with_retries(lambda: client.get_job_status(job_id))
    if status != JobStatus.SUCCEEDED:
        tail_lines = with_retries(lambda: client.get_job_logs(job_id)).splitlines()[-25:]
        print("\n".join(tail_lines), file=sys.stderr)
    return str(status.value if hasattr(status, "value") else status)


TRAIN_INFO = ("train_loss", "val_ppl", "tokens_per_s")


def follow(address: str, job_id: str, log_file: Path, verbose: bool = False, unit: str = "train steps") -> str:
    """A progress bar of `unit` (train steps, questions, episodes) with the latest values beside
    it; ringbit lines printed; everything saved to log_file."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn(f"[bold]{unit}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[info]}")]
    progress = Progress(*columns, console=Console(stderr=False), transient=False)
    task = progress.add_task(unit, total=None, info="starting…")
    seen: dict[str, float] = {}

    def on_line(line: str) -> None:
        parsed = parse_progress(line)
        if parsed:
            step, total, values = parsed
            seen.update(values)
            keys = [k for k in TRAIN_INFO if k in seen] or list(seen)  # an evaluation's running scores
            info = "  ".join(f"{k}={seen[k]:.4g}" for k in keys)
            progress.update(task, completed=step, total=total, info=info)
        elif verbose or "[ringbit]" in line:
            progress.console.print(line.split("[ringbit] ", 1)[-1] if "[ringbit]" in line else line,
                                   markup=False, highlight=False)

    return _tail(address, job_id, log_file, on_line, progress)


TRIAL = re.compile(r"\[ringbit\] trial (\S+) (\S+)(.*)")


def parse_trial(line: str) -> tuple[str, str, dict[str, str]] | None:
    """`[ringbit] trial ID STATUS k=v …` -> (ID, STATUS, {k: v})."""
    m = TRIAL.search(line)
    if not m:
        return None
    return m.group(1), m.group(2), dict(kv.split("=", 1) for kv in m.group(3).split() if "=" in kv)


def follow_sweep(address: str, job_id: str, log_file: Path, verbose: bool = False) -> str:
    """A live table of the sweep's trials (status, step, val_ppl); other ringbit lines printed."""
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    trials: dict[str, tuple[str, dict[str, str]]] = {}
    console = Console(stderr=False)

    def render() -> Table:
        table = Table(title="sweep trials", expand=False)
        keys = [k for k in dict.fromkeys(k for _, v in trials.values() for k in v) if k not in ("step", "val_ppl")]
        for col in ("trial", "status", *keys, "step", "val_ppl"):
            table.add_column(col, justify="right" if col in ("step", "val_ppl") else "left")
        styles = {"RUNNING": "cyan", "FINISHED": "green", "STOPPED": "yellow", "FAILED": "red"}
        for tid, (status, values) in trials.items():
            table.add_row(tid, f"[{styles.get(status, 'white')}]{status}", *(values.get(k, "") for k in keys),
                          values.get("step", ""), values.get("val_ppl", ""))
        return table

    live = Live(render(), console=console, refresh_per_second=2, transient=False)

    def on_line(line: str) -> None:
        parsed = parse_trial(line)
        if parsed:
            tid, status, values = parsed
            merged = {**trials.get(tid, ("", {}))[1], **values}
            trials[tid] = (status, merged)
            live.update(render())
        elif verbose or ("[ringbit]" in line and "step=" not in line):
            console.print(line.split("[ringbit] ", 1)[-1] if "[ringbit]" in line else line,
                          markup=False, highlight=False)

    return _tail(address, job_id, log_file, on_line, live)
