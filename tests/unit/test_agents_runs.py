"""Agent evaluation jobs end their MLflow run KILLED when stopped (SIGTERM from `ringbit stop`),
FAILED on an error, never left RUNNING (real MLflow, sqlite store, a real child process)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import sys, time
    from ringbit.agents.runs import mlflow_run
    with mlflow_run("agents-test", "job", {{"n": 1}}, tracking_uri=sys.argv[1], log=lambda line: None) as (c, rid):
        print(rid, flush=True)
        {body}
""")


def run_child(uri: str, body: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD.format(body=body), uri], cwd=REPO,
                            env={"PYTHONPATH": str(REPO / "platform"), "PATH": "/usr/bin:/bin"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_id = proc.stdout.readline().strip()
    assert run_id, proc.stderr.read()
    return proc, run_id


@pytest.mark.parametrize("body, stop, expected", [
    ("time.sleep(60)", True, "KILLED"),
    ("raise RuntimeError('boom')", False, "FAILED"),
    ("pass", False, "FINISHED"),
])
def test_a_stopped_agent_job_is_killed_a_crashed_one_failed(tmp_path, body, stop, expected):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc, run_id = run_child(uri, body)
    if stop:
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0 if expected != "FINISHED" else proc.returncode == 0
    assert MlflowClient(uri).get_run(run_id).info.status == expected
