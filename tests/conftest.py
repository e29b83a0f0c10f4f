"""Shared fixtures. Nothing here mocks Ray, DeepSpeed or MLflow: they run for real."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RINGBIT = [sys.executable, "-m", "ringbit.cli"]

os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("DS_ACCELERATOR", "cpu")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ringbit(*args: str, env: dict | None = None, timeout: float = 600, check: bool = False):
    """Run the real CLI in a subprocess, as a user would."""
    proc = subprocess.run(
        [*RINGBIT, *args], cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True,
        text=True, timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"ringbit {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def local_ray():
    """A private local Ray instance per test module (Ray Data, Ray Train): a fresh cluster keeps
    modules independent of what earlier ones left behind."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=True, dashboard_port=free_port(),
             log_to_driver=False)
    yield ray
    ray.shutdown()
