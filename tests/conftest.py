"""Shared fixtures. Nothing here mocks Ray, DeepSpeed or MLflow: they run for real."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import free_port  # also importable as `from conftest import free_port`

REPO = Path(__file__).resolve().parents[1]
RINGBIT = [sys.executable, "-m", "ringbit.cli"]

os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("DS_ACCELERATOR", "cpu")


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


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """`ringbit up` on private ports and home (real Ray head + MLflow server), `down` after."""
    home = tmp_path_factory.mktemp("ringbit-home")
    env = {"RINGBIT_HOME": str(home), "RINGBIT_RAY_PORT": str(free_port()),
           "RINGBIT_DASHBOARD_PORT": str(free_port()), "RINGBIT_MLFLOW_PORT": str(free_port())}
    from mlflow.tracking import MlflowClient

    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    ringbit("up", env=env, timeout=300, check=True)
    url = f"http://127.0.0.1:{env['RINGBIT_MLFLOW_PORT']}"
    try:
        yield env, MlflowClient(url), url
    finally:
        down = ringbit("down", env=env, timeout=120)
        if saved:
            os.environ["MLFLOW_TRACKING_URI"] = saved
        assert down.returncode == 0, down.stderr
