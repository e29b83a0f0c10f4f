"""Submitting and following Ray jobs: the Jobs API client, the entrypoint line, a progress bar."""

from __future__ import annotations

import asyncio
import re
import shlex
import sys
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
EXCLUDES = [".venv", ".git", "**/__pycache__", "*.egg-info", ".pytest_cache", "**/*.pt", "mlruns"]
PROGRESS = re.compile(r"\[ringbit\] step=(\d+)/(\d+)(.*)")


def job_client(address: str):
    import logging

    from ray.job_submission import JobSubmissionClient

    # Ray's packaging and SDK chatter (INFO/WARNING lines) is noise to someone submitting a job.
    for name in ("ray", "ray.dashboard.modules.dashboard_sdk", "ray.dashboard.modules.job.sdk"):
        logging.getLogger(name).setLevel(logging.ERROR)

    from ringbit.services import auth_headers, ensure_client_env

    ensure_client_env()
    return JobSubmissionClient(address, headers=auth_headers() or None)


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
        "env_vars": {"PYTHONPATH": "platform", **env},
    }
    return client.submit_job(
        entrypoint=entry, runtime_env=runtime_env,
        submission_id=f"{name}-{uuid.uuid4().hex[:6]}", metadata={"ringbit.job_name": name},
    )


def parse_progress(line: str) -> tuple[int, int, dict[str, float]] | None:
    m = PROGRESS.search(line)
    if not m:
        return None
    values = {}
    for kv in m.group(3).split():
        k, _, v = kv.partition("=")
        try:
            values[k] = float(v)
        except ValueError:
            pass
    return int(m.group(1)), int(m.group(2)), values


def follow(address: str, job_id: str, log_file: Path, verbose: bool = False) -> str:
    """Stream a job's logs: a progress bar for training steps, ringbit lines printed, everything
    saved to log_file. Returns the job's final status. Ctrl-C detaches (the job keeps running)."""
    from ray.job_submission import JobStatus
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    client = job_client(address)
    console = Console(stderr=False)
    columns = [TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[info]}")]
    log_file.parent.mkdir(parents=True, exist_ok=True)

    async def tail(progress: Progress) -> None:
        task = progress.add_task("train", total=None, info="starting…")
        seen: dict[str, float] = {}
        with log_file.open("a") as out:
            async for chunk in client.tail_job_logs(job_id):
                out.write(chunk)
                out.flush()
                for line in chunk.splitlines():
                    parsed = parse_progress(line)
                    if parsed:
                        step, total, values = parsed
                        seen.update(values)
                        info = "  ".join(
                            f"{k}={seen[k]:.4g}" for k in ("train_loss", "val_ppl", "tokens_per_s") if k in seen
                        )
                        progress.update(task, completed=step, total=total, info=info)
                    elif verbose or "[ringbit]" in line:
                        progress.console.print(line.split("[ringbit] ", 1)[-1] if "[ringbit]" in line else line,
                                               markup=False, highlight=False)

    try:
        with Progress(*columns, console=console, transient=False) as progress:
            asyncio.run(tail(progress))
    except KeyboardInterrupt:
        console.print(f"\ndetached; the job keeps running. Follow: ringbit logs {job_id} --follow; "
                      f"stop: ringbit stop {job_id}")
        return "DETACHED"
    status = client.get_job_status(job_id)
    if status != JobStatus.SUCCEEDED:
        tail_lines = client.get_job_logs(job_id).splitlines()[-25:]
        print("\n".join(tail_lines), file=sys.stderr)
    return str(status.value if hasattr(status, "value") else status)
