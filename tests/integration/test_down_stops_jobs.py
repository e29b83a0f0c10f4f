"""`ringbit down` while a job runs: the job is stopped first and its MLflow run ends KILLED (it
was left RUNNING when Ray and MLflow were stopped at once), then Ray, then MLflow. Its own
platform: the module stops it mid-way."""

from __future__ import annotations

import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from conftest import ringbit


def test_down_during_a_job_ends_its_run_killed(platform):
    env, client, _ = platform
    name = "down-mid-job"
    ringbit("submit", "pretrain", "--config", "jobs/configs/tiny.yaml", "--name", name,
            "--set", "train.max_steps=100000", "--set", "train.log_interval=1", "--no-follow",
            env=env, check=True)
    deadline = time.time() + 300
    run_id = None
    while time.time() < deadline and run_id is None:  # until the job has logged a training step
        exp = client.get_experiment_by_name("ringbit-tests")
        runs = exp and client.search_runs([exp.experiment_id], f"tags.`ringbit.job_name` = '{name}'")
        if runs and client.get_metric_history(runs[0].info.run_id, "train_loss"):
            run_id = runs[0].info.run_id
        time.sleep(0.5)
    assert run_id, "the job never logged a step"

    down = ringbit("down", env=env, timeout=240)
    assert down.returncode == 0, down.stdout + down.stderr
    assert f"stopping job {name}-" in down.stdout
    # MLflow is down now: read its store directly.
    store = Path(env["RINGBIT_HOME"]).resolve() / "mlflow" / "mlflow.db"
    assert MlflowClient(f"sqlite:///{store}").get_run(run_id).info.status == "KILLED"
