"""End to end, as a user: `ringbit up` -> submit real 2-worker ZeRO-2 jobs through the Ray Jobs
API -> read the results back from the MLflow server -> `ringbit down`."""

from __future__ import annotations

import re
import time

import pytest
from mlflow.tracking import MlflowClient

from conftest import ringbit

TINY = ["--config", "jobs/configs/tiny.yaml"]


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
    log = ringbit("logs", name, env=env, check=True).stdout  # a job name finds its latest submission
    step_lines = [line.split("[ringbit] ", 1)[1] for line in log.splitlines() if "[ringbit] step=" in line]
    assert step_lines and len(step_lines) == len(set(step_lines)), "each worker line once in the job log"
    unknown = ringbit("logs", "no-such-job", env=env)
    assert unknown.returncode == 2 and "ringbit jobs" in unknown.stderr, unknown.stderr
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


def test_bitnet_jobs_train_and_packed_export_keeps_perplexity(platform, tmp_path):
    """1-bit and 1.58-bit models trained by 2-worker DeepSpeed jobs, the ternary one exported
    packed, registered, and scored by eval-ppl like the model it came from."""
    import json

    env, client, url = platform
    env = {**env, "MLFLOW_TRACKING_URI": url}
    for bits, tag in ((1, "1bit"), (1.58, "b158")):
        proc = ringbit("submit", "pretrain", *TINY, "--name", f"e2e-bitnet-{tag}",
                       "--set", f"quant.weight_bits={bits}",
                       "--set", f"mlflow.registered_model=tiny-bitnet-{tag}", env=env, timeout=900)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        run = run_of(client, "ringbit-tests", f"e2e-bitnet-{tag}")
        assert run.info.status == "FINISHED" and float(run.data.params["quant.weight_bits"]) == bits
        ppl = steps(client, run.info.run_id, "val_ppl")
        assert [s for s, _ in ppl] == [10, 20, 30] and ppl[-1][1] < ppl[0][1], ppl

    packed_dir = tmp_path / "packed"
    exp = ringbit("export-bitnet", "--model", "models:/tiny-bitnet-b158@current",
                  "--out", str(packed_dir), "--json", env=env, timeout=300)
    assert exp.returncode == 0, exp.stdout[-3000:] + exp.stderr[-3000:]
    report = json.loads(exp.stdout.strip().splitlines()[-1])
    assert report["format"] == "i2" and report["linear_ratio"] >= 7.5
    assert report["registered"] == "models:/tiny-bitnet-b158-packed@current"

    text = tmp_path / "eval.txt"
    text.write_text("The while statement is used for repeated execution as long as an expression "
                    "is true. " * 30)
    scores = {}
    for ref in ("models:/tiny-bitnet-b158@current", "models:/tiny-bitnet-b158-packed@current",
                str(packed_dir)):
        ev = ringbit("eval-ppl", "--model", ref, "--data", str(text), "--json", env=env, check=True)
        scores[ref] = json.loads(ev.stdout.strip().splitlines()[-1])["ppl"]
    unpacked = scores.pop("models:/tiny-bitnet-b158@current")
    for ref, ppl in scores.items():
        assert ppl == pytest.approx(unpacked, rel=1e-4), ref

    again = ringbit("export-bitnet", "--model", str(packed_dir), "--out", str(tmp_path / "x"), env=env)
    assert again.returncode == 2 and "no BitLinear layers" in again.stderr
    missing = ringbit("export-bitnet", "--model", "models:/no-such-model@current",
                      "--out", str(tmp_path / "y"), env=env)
    assert missing.returncode == 2 and "no-such-model" in missing.stderr
    assert "Traceback" not in missing.stderr
