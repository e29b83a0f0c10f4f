"""End to end, as a user: `ringbit up` -> submit real 2-worker ZeRO-2 jobs through the Ray Jobs
API -> read the results back from the MLflow server -> `ringbit down`."""

from __future__ import annotations

import os
import re
import time

import pytest
from mlflow.tracking import MlflowClient

from conftest import free_port, ringbit

TINY = ["--config", "jobs/configs/tiny.yaml"]


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    home = tmp_path_factory.mktemp("ringbit-home")
    env = {"RINGBIT_HOME": str(home), "RINGBIT_RAY_PORT": str(free_port()),
           "RINGBIT_DASHBOARD_PORT": str(free_port()), "RINGBIT_MLFLOW_PORT": str(free_port())}
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


def run_of(client: MlflowClient, experiment: str, name: str):
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], f"tags.`ringbit.job_name` = '{name}'")
    assert len(runs) == 1, f"expected one run for job {name}, found {len(runs)}"
    return runs[0]


def steps(client, run_id, key):
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_status_shows_both_services(platform):
    env, _, url = platform
    proc = ringbit("status", env=env, check=True)
    assert url in proc.stdout and proc.stdout.count("healthy") >= 2


def test_pretrain_job_logs_to_mlflow_and_registers_model(platform, tmp_path):
    env, client, url = platform
    proc = ringbit("submit", "pretrain", *TINY, "--name", "e2e-train", env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "SUCCEEDED" in proc.stdout

    run = run_of(client, "ringbit-tests", "e2e-train")
    assert run.info.status == "FINISHED"
    ppl = steps(client, run.info.run_id, "val_ppl")
    assert [s for s, _ in ppl] == [10, 20, 30]
    assert ppl[-1][1] < ppl[0][1], f"val_ppl did not decrease: {ppl}"
    assert [s for s, _ in steps(client, run.info.run_id, "train_loss")] == list(range(1, 31))
    for key in ("tokens_per_s", "peak_memory_mb", "val_loss"):
        assert steps(client, run.info.run_id, key), key
    params, tags = run.data.params, run.data.tags
    assert params["deepspeed.zero_stage"] == "2" and params["workers.num_workers"] == "2"
    assert {"git.commit", "host", "ray.job_id"} <= set(tags)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "tokenizer.json", "training_curves.png"} <= artifacts

    version = client.get_model_version_by_alias("ringbit-tiny", "current")
    assert version.run_id == run.info.run_id

    text = tmp_path / "eval.txt"
    text.write_text("The for statement is used to iterate over the elements of a sequence. " * 20)
    ev = ringbit("eval-ppl", "--model", "models:/ringbit-tiny@current", "--data", str(text),
                 "--json", env={**env, "MLFLOW_TRACKING_URI": url}, check=True)
    import json

    result = json.loads(ev.stdout.strip().splitlines()[-1])
    assert result["tokens"] > 100 and 1 < result["ppl"] < 512  # better than uniform over the vocab

    import mlflow

    mlflow.set_tracking_uri(url)
    out = mlflow.pyfunc.load_model("models:/ringbit-tiny@current").predict(["The for statement"])
    assert isinstance(out[0], str) and out[0]


def test_sequence_parallel_job_trains_and_logs_val_ppl(platform):
    """2 workers holding halves of each sequence (ring attention, zigzag) under ZeRO-2."""
    env, client, _ = platform
    proc = ringbit("submit", "pretrain", *TINY, "--name", "e2e-ring", "--set", "parallel.sequence_parallel=2",
                   "--set", "parallel.block_size=16", "--set", "deepspeed.zero_stage=2", env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = run_of(client, "ringbit-tests", "e2e-ring")
    assert run.info.status == "FINISHED"
    assert run.data.params["parallel.sequence_parallel"] == "2" and run.data.params["parallel.strategy"] == "ring"
    ppl = steps(client, run.info.run_id, "val_ppl")
    assert [s for s, _ in ppl] == [10, 20, 30] and ppl[-1][1] < ppl[0][1]


def test_crashed_job_leaves_run_failed(platform):
    env, client, _ = platform
    proc = ringbit("submit", "pretrain", *TINY, "--name", "e2e-crash",
                   "--set", "deepspeed.extra.train_batch_size=7", "--set", "workers.max_failures=0",
                   env=env, timeout=600)
    assert proc.returncode == 1
    assert "FAILED" in proc.stdout
    assert run_of(client, "ringbit-tests", "e2e-crash").info.status == "FAILED"


def test_stop_and_resume_continues_the_same_run(platform):
    env, client, _ = platform
    name, total = "e2e-resume", 300
    args = ["submit", "pretrain", *TINY, "--name", name, "--set", f"train.max_steps={total}",
            "--set", "train.checkpoint_interval=20", "--set", "train.eval_interval=20",
            "--set", "train.eval_batches=2"]
    first = ringbit(*args, "--no-follow", env=env, check=True)
    job_id = re.search(r"submitted (\S+)", first.stdout).group(1)

    deadline = time.time() + 300
    run_id = None
    while time.time() < deadline:  # wait until the first checkpoint's metrics are in MLflow
        exp = client.get_experiment_by_name("ringbit-tests")
        runs = exp and client.search_runs([exp.experiment_id], f"tags.`ringbit.job_name` = '{name}'")
        if runs and steps(client, runs[0].info.run_id, "val_ppl"):
            run_id = runs[0].info.run_id
            break
        time.sleep(0.5)
    assert run_id, "the job never reached its first checkpoint"
    ringbit("stop", job_id, env=env, check=True)
    from ray.job_submission import JobStatus

    from ringbit.jobs import job_client

    jc = job_client(f"http://127.0.0.1:{env['RINGBIT_DASHBOARD_PORT']}")
    while jc.get_job_status(job_id) not in (JobStatus.STOPPED, JobStatus.FAILED, JobStatus.SUCCEEDED):
        assert time.time() < deadline
        time.sleep(0.5)
    assert jc.get_job_status(job_id) == JobStatus.STOPPED, "job finished before it could be stopped"
    listed = ringbit("jobs", env=env, check=True).stdout
    assert re.search(rf"{re.escape(job_id)}\s+STOPPED", listed)
    assert "[ringbit] step=" in ringbit("logs", job_id, env=env, check=True).stdout
    assert client.get_run(run_id).info.status == "KILLED"
    logged_before = steps(client, run_id, "train_loss")[-1][0]
    assert logged_before < total

    second = ringbit(*args, env=env, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    resumed = int(re.search(r"resumed from checkpoint at step (\d+)", second.stdout).group(1))
    assert resumed % 20 == 0 and 20 <= resumed <= logged_before + 20

    run = run_of(client, "ringbit-tests", name)
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    # One continuous curve: every step exactly once, nothing skipped or duplicated.
    assert [s for s, _ in steps(client, run_id, "train_loss")] == list(range(1, total + 1))
    assert [s for s, _ in steps(client, run_id, "val_ppl")] == list(range(20, total + 1, 20))
