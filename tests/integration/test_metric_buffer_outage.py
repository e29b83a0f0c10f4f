"""Training metrics through an MLflow outage: a real `mlflow server` (sqlite) is killed while
metrics are logged and started again on the same store. Nothing is lost, nothing is logged twice,
and a worker restarted during the outage still logs each step once."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from helpers import free_port
from mlflow.tracking import MlflowClient

from ringbit.tracking import MetricBuffer


class Server:
    def __init__(self, store: Path):
        self.store, self.port, self.proc = store, free_port(), None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        mlflow = Path(sys.executable).parent / "mlflow"
        self.proc = subprocess.Popen(
            [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{self.store / 'mlflow.db'}",
             "--artifacts-destination", str(self.store / "artifacts")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 300  # slow on 2 busy cores
        while time.time() < deadline:
            try:
                if requests.get(f"{self.url}/health", timeout=1).ok:
                    return
            except requests.RequestException:
                time.sleep(0.5)
        raise RuntimeError("mlflow server did not start")

    def stop(self) -> None:
        import os
        import signal

        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@pytest.fixture
def server(tmp_path, monkeypatch):
    # Fail fast while the server is down (the client's default is 7 retries with backoff); a
    # refused connection fails at once, the read timeout stays at its default for a slow server.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    s = Server(tmp_path)
    s.start()
    yield s
    if s.proc.poll() is None:
        s.stop()


def steps(client, run_id, key="train_loss"):
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_metrics_survive_an_outage_and_a_restart_during_it(server):
    client = MlflowClient(server.url)
    run_id = client.create_run(client.create_experiment("outage")).info.run_id
    lines: list[str] = []
    buffer = MetricBuffer(client, run_id, log=lines.append)
    buffer.add_start(val_loss=3.0, val_ppl=20.0)
    for step in (1, 2, 3):
        buffer.add(step, train_loss=1.0 / step)
    assert buffer.flush()

    server.stop()
    for step in (4, 5, 6):
        buffer.add(step, train_loss=1.0 / step)
    assert not buffer.flush() and not buffer.flush()  # kept, training goes on
    assert sum("MLflow unreachable" in line for line in lines) == 1
    # A worker restarted during the outage resumes from a checkpoint at step 2 and re-runs steps 3..
    restarted = MetricBuffer(client, run_id, log=lines.append)
    restarted.add_start(val_loss=3.0, val_ppl=20.0)  # its start is already in the run
    for step in (3, 4, 5, 6, 7):
        restarted.add(step, train_loss=1.0 / step)
    assert not restarted.flush()

    server.start()
    assert buffer.flush() and restarted.close(timeout_s=30)
    assert any("MLflow answers again" in line for line in lines)
    assert steps(client, run_id) == [1, 2, 3, 4, 5, 6, 7]  # every step once
    assert steps(client, run_id, "val_ppl") == [0]

    # Down at the very end: the last flush retries for its timeout, then says what was lost.
    server.stop()
    buffer.add(8, train_loss=0.125)
    assert not buffer.close(timeout_s=3)
    assert "1 metric values were not logged" in lines[-1]
