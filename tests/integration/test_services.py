"""ringbit.services with real processes: a Ray head and an MLflow server on private ports and home.

One up/down cycle for the module (~10 s up, ~3 s down on 2 cores). Nothing is mocked. The token is
the default one (~/.ray/auth_token): Ray caches the token it first reads for the whole process, so
a per-test token file would clash with the other tests in the same pytest process.

PlatformSettings alone (no processes) is tested in tests/unit/test_services_settings.py.
"""

from __future__ import annotations

import json
import shutil
import socket
import time

import psutil
import pytest
import requests

from helpers import free_port
from ringbit import services
from ringbit.services import PlatformSettings, ServiceError


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def private_settings(home) -> PlatformSettings:
    return PlatformSettings(  # "": free on every interface, as Ray binds them
        home=home, ray_port=free_port(""), dashboard_port=free_port(""), mlflow_port=free_port("")
    )


@pytest.fixture(scope="module")
def ray_auth(tmp_path_factory):
    """RAY_AUTH_MODE unset so that ensure_client_env() is what sets it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("RAY_AUTH_MODE", raising=False)
        yield mp


@pytest.fixture(scope="module")
def platform(ray_auth, tmp_path_factory):
    settings = private_settings(tmp_path_factory.mktemp("ringbit-home"))
    try:
        yield settings
    finally:
        services.down(settings)  # also when a test failed half-way
        # Ray's session logs for this throwaway home; a real home keeps them for debugging.
        shutil.rmtree(services._ray_temp_dir(settings), ignore_errors=True)


def test_up_is_healthy_idempotent_and_serves_clients(platform):
    started = time.monotonic()
    state = services.up(platform)
    print(f"up took {time.monotonic() - started:.1f} s")

    for name, url in (("ray", platform.dashboard_url), ("mlflow", platform.mlflow_url)):
        assert state[name]["running"] and state[name]["healthy"], state
        assert state[name]["started_by_ringbit"] and state[name]["pid"]
        assert state[name]["url"] == url
    assert state["ray"]["address"] == platform.ray_address
    assert state["home"] == str(platform.home)
    assert (platform.home / "logs" / "ray.log").exists()

    again = services.up(platform)
    assert again["ray"]["pid"] == state["ray"]["pid"]
    assert again["mlflow"]["pid"] == state["mlflow"]["pid"]

    services.ensure_client_env()
    from ray.job_submission import JobSubmissionClient

    assert JobSubmissionClient(platform.dashboard_url).list_jobs() == []

    resp = requests.get(
        f"{platform.mlflow_url}/api/2.0/mlflow/experiments/search?max_results=10", timeout=10
    )
    assert resp.status_code == 200, resp.text
    assert "experiments" in resp.json()


def test_down_stops_everything_it_started(platform):
    state = services.up(platform)  # no-op after the test above; lets this test run alone
    pids = [state["ray"]["pid"], state["mlflow"]["pid"]]
    # gcs_server, raylet, dashboard, workers, uvicorn: all descendants of the two recorded pids
    family = [child.pid for pid in pids for child in psutil.Process(pid).children(recursive=True)]
    assert len(family) > 5

    started = time.monotonic()
    stopped = services.down(platform)
    print(f"down took {time.monotonic() - started:.1f} s: {stopped}")

    assert set(stopped) == {"ray", "mlflow"}
    assert all(gone(pid) for pid in pids + family)
    assert port_free(platform.ray_port, "") and port_free(platform.dashboard_port)
    assert port_free(platform.mlflow_port)
    assert json.loads((platform.home / "services.json").read_text()) == {}
    after = services.status(platform)
    assert not after["ray"]["running"] and not after["mlflow"]["running"]
    assert services.down(platform) == {}


def test_port_taken_by_someone_else_is_named_and_nothing_starts(ray_auth, tmp_path):
    settings = private_settings(tmp_path / "home")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", settings.mlflow_port))
        squatter.listen()
        try:
            with pytest.raises(ServiceError) as excinfo:
                services.up(settings, wait_timeout=30)
        finally:
            services.down(settings)  # only matters if up wrongly started something

    message = str(excinfo.value)
    assert str(settings.mlflow_port) in message and "RINGBIT_MLFLOW_PORT" in message
    state_file = settings.home / "services.json"
    assert not state_file.exists() or json.loads(state_file.read_text()) == {}
    assert port_free(settings.ray_port, "") and port_free(settings.dashboard_port)
