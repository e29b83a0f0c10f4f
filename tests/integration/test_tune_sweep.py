"""Sweeps end to end on the local platform: real Tune trials, each a 2-worker Ray Train +
DeepSpeed job, tracked in MLflow; interrupt and resume; ASHA stops a bad trial."""

from __future__ import annotations

import csv
import io
import re
import time

from conftest import ringbit

SWEEP = ["--config", "jobs/configs/sweep-tiny.yaml"]


def children(client, parent_id: str):
    exp = client.get_experiment_by_name("ringbit-tests")
    return client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'")


def parent_of(client, name: str):
    exp = client.get_experiment_by_name("ringbit-tests")
    runs = client.search_runs([exp.experiment_id], f"tags.`ringbit.sweep` = '{name}' and "
                              "tags.`ringbit.kind` = 'sweep'")
    assert len(runs) == 1
    return runs[0]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def test_2x2_sweep_interrupted_and_resumed_tracks_every_trial(platform):
    env, client, url = platform
    env = {**env, "MLFLOW_TRACKING_URI": url}
    name = "t-sweep"
    first = ringbit("sweep", *SWEEP, "--name", name, "--no-follow", env=env, check=True)
    job_id = re.search(r"submitted (\S+)", first.stdout).group(1)

    def finished_children():
        try:
            parent = parent_of(client, name)
        except (AssertionError, AttributeError):
            return None
        done = [r for r in children(client, parent.info.run_id) if r.info.status == "FINISHED"]
        return done or None

    done_before = wait_for(finished_children, 600, "a first finished trial")
    time.sleep(8)  # Tune records the completion in its experiment state
    ringbit("stop", job_id, env=env, check=True)
    from ray.job_submission import JobStatus

    from ringbit.jobs import job_client

    jc = job_client(f"http://127.0.0.1:{env['RINGBIT_DASHBOARD_PORT']}")
    wait_for(lambda: jc.get_job_status(job_id) in (JobStatus.STOPPED, JobStatus.FAILED,
                                                   JobStatus.SUCCEEDED), 180, "the sweep to stop")
    parent = parent_of(client, name)
    if jc.get_job_status(job_id) != JobStatus.SUCCEEDED:
        assert parent.info.status == "KILLED"
    finished = {r.data.tags["ringbit.job_name"]: r.info.end_time
                for r in children(client, parent.info.run_id) if r.info.status == "FINISHED"}
    assert len(finished) >= len(done_before)

    second = ringbit("sweep", "--resume", name, env=env, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    job2 = re.search(r"submitted (\S+)", second.stdout).group(1)
    log = ringbit("logs", job2, env=env, check=True).stdout
    assert "resuming sweep t-sweep" in log
    for job_name in finished:  # finished trials were not run again
        trial_id = job_name.removeprefix(f"{name}-")
        assert not re.search(rf"\[ringbit\] trial {trial_id} RUNNING", log), trial_id

    parent = parent_of(client, name)
    assert parent.info.status == "FINISHED"
    runs = children(client, parent.info.run_id)
    assert len(runs) == 4
    for run in runs:
        assert run.info.status == "FINISHED" and run.data.tags["ringbit.trial_status"] == "finished"
        history = client.get_metric_history(run.info.run_id, "val_ppl")
        assert sorted(m.step for m in history) == [5, 10, 15, 20]
        assert {"data.seq_len", "quant.weight_bits", "trial.seq_len"} <= set(run.data.params)
        if run.data.tags["ringbit.job_name"] in finished:
            assert run.info.end_time == finished[run.data.tags["ringbit.job_name"]]
    grid = {(r.data.params["data.seq_len"], r.data.params["quant.weight_bits"]) for r in runs}
    assert grid == {("32", "1.0"), ("32", "1.58"), ("64", "1.0"), ("64", "1.58")}

    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"sweep_summary.csv", "val_ppl_heatmap.png", "val_ppl_curves.png",
            "val_ppl_vs_bits.png"} <= artifacts
    import mlflow

    mlflow.set_tracking_uri(url)
    text = mlflow.artifacts.load_text(f"runs:/{parent.info.run_id}/sweep_summary.csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"finished"}
    assert all(float(r["best_val_ppl"]) < 512 for r in rows)


def test_asha_stops_a_clearly_worse_trial_and_marks_its_run(platform):
    env, client, url = platform
    env = {**env, "MLFLOW_TRACKING_URI": url}
    proc = ringbit("sweep", *SWEEP, "--name", "t-asha", "--set", "space.seq_len=[32]",
                   "--set", "space.lr=[3e-3, 1e-7]", "--set", "asha.enabled=true",
                   "--set", "asha.grace_period=5", "--set", "max_concurrent_trials=1",
                   env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    parent = parent_of(client, "t-asha")
    runs = children(client, parent.info.run_id)
    assert len(runs) == 4
    stopped = [r for r in runs if r.data.tags.get("ringbit.trial_status") == "stopped_early"]
    assert stopped, [(r.data.params.get("train.lr"), r.data.tags.get("ringbit.trial_status")) for r in runs]
    for run in stopped:
        assert run.info.status == "KILLED"
        assert max(m.step for m in client.get_metric_history(run.info.run_id, "val_ppl")) < 20
    # One trial at a time, so the outcome does not race: the first trial (lr 3e-3) reaches every
    # rung first and is never stopped; the hopeless ones (lr 1e-7 barely leaves the uniform
    # guess) are worse than every record at the first rung.
    assert all(r.data.tags["ringbit.trial_status"] == "stopped_early"
               for r in runs if r.data.params["train.lr"] == "1e-07")
    assert any(r.info.status == "FINISHED" and r.data.params["train.lr"] == "0.003" for r in runs)


def test_optuna_search_draws_trials_from_the_space(platform):
    env, client, url = platform
    env = {**env, "MLFLOW_TRACKING_URI": url}
    proc = ringbit("sweep", *SWEEP, "--name", "t-optuna", "--set", "search=optuna",
                   "--set", "num_samples=2", "--set", "space.seq_len=[32]",
                   "--set", "space.lr=[1e-3, 3e-3]", "--set", "overrides.train.max_steps=10",
                   env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = children(client, parent_of(client, "t-optuna").info.run_id)
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    for run in runs:
        assert run.data.params["quant.weight_bits"] in ("1.0", "1.58")
        assert run.data.params["train.lr"] in ("0.001", "0.003")
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_ppl")] == [5, 10]
