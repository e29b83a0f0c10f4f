"""Synthetic data -> fine-tuning job (prompt masked, Ray Train + DeepSpeed) -> the fine-tuned
model behind the evaluator -> meta-evaluation, at tiny scale, every step's run in MLflow.

Prompt masking of the fine-tuning rows (no Ray) is tested in tests/unit/test_evaluator_finetune_rows.py."""

from __future__ import annotations

import json

from conftest import ringbit
from helpers import free_port


def test_synthetic_finetune_then_meta_evaluation(platform, base_model, tmp_path):
    env, client, url = platform
    env = {**env, "MLFLOW_TRACKING_URI": url}
    proc = ringbit("submit", "finetune-evaluator", "-c", "jobs/configs/finetune-evaluator.yaml",
                   "--name", "t-sft", "--set", f"base_model={base_model}", "--set", "max_seq_len=640",
                   "--set", "data.corpus=builtin:python-topics", "--set", "data.n_train=48",
                   "--set", "data.n_val=8", "--set", "train.max_steps=12", "--set", "train.eval_interval=6",
                   "--set", "train.checkpoint_interval=12", "--set", "train.global_batch_size=8",
                   "--set", "train.micro_batch_size=4", "--set", "train.warmup_steps=2",
                   "--set", "train.lr=3e-3", "--set", "mlflow.experiment=ringbit-tests",
                   "--set", "mlflow.registered_model=tiny-instructscore", env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    exp = client.get_experiment_by_name("ringbit-tests")
    run = client.search_runs([exp.experiment_id], "tags.`ringbit.job_name` = 't-sft'")[0]
    assert run.info.status == "FINISHED"
    ppl = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val_ppl"))
    assert [s for s, _ in ppl] == [6, 12] and ppl[1][1] < ppl[0][1], ppl
    assert client.get_model_version_by_alias("tiny-instructscore", "current").run_id == run.info.run_id

    port = free_port()
    config = tmp_path / "serve.yaml"
    config.write_text(
        "applications:\n"
        "  - name: lm\n    route_prefix: /\n    import_path: serving.lm:app\n"
        "    args: {model: 'models:/tiny-instructscore@current'}\n"
        "  - name: evaluator\n    route_prefix: /v1/evaluate\n    import_path: serving.evaluator:app\n"
        # a 640-token model: inputs up to 400 characters fit with 32 new tokens (checked at deploy)
        "    args: {llm_app: lm, max_new_tokens: 32, max_items: 4, max_input_chars: 400}\n")
    up = ringbit("serve", "up", "--config", str(config), "--port", str(port), env=env, timeout=300)
    assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
    try:
        heldout = tmp_path / "heldout.jsonl"
        ringbit("evaluator", "synth", "--out", str(heldout), "--n", "6", "--seed", "7",
                "--corpus", "builtin:python-topics", env=env, check=True)
        meta = ringbit("evaluator", "meta-eval", "--data", str(heldout), "--evaluator-url",
                       f"http://127.0.0.1:{port}", "--batch", "3", "--experiment", "ringbit-tests",
                       "--json", env=env, timeout=600)
        assert meta.returncode == 0, meta.stdout[-2000:] + meta.stderr[-2000:]
        result = json.loads(meta.stdout.strip().splitlines()[-1])
        assert result["n"] == 6
        assert {"kendall_tau", "pearson"} <= set(client.get_run(result["mlflow_run"]).data.metrics)
    finally:
        ringbit("serve", "down", env=env, timeout=120)


def test_stopped_finetune_job_leaves_its_run_killed(platform, base_model):
    """`ringbit stop` of a running fine-tuning job: the driver's SIGTERM handler marks the MLflow
    run KILLED and the error path does not overwrite it with FAILED (ringbit.train.driver)."""
    import re
    import time

    from ray.job_submission import JobStatus

    from ringbit.jobs import job_client

    env, client, url = platform
    env = {**env, "MLFLOW_TRACKING_URI": url}
    name = "t-sft-stop"
    first = ringbit("submit", "finetune-evaluator", "-c", "jobs/configs/finetune-evaluator.yaml",
                    "--name", name, "--no-follow", "--set", f"base_model={base_model}",
                    "--set", "max_seq_len=640", "--set", "data.corpus=builtin:python-topics",
                    "--set", "data.n_train=16", "--set", "data.n_val=4", "--set", "train.max_steps=2000",
                    "--set", "train.eval_interval=1000", "--set", "train.checkpoint_interval=1000",
                    "--set", "train.global_batch_size=4", "--set", "train.micro_batch_size=2",
                    "--set", "train.warmup_steps=2", "--set", "mlflow.experiment=ringbit-tests",
                    "--set", "mlflow.registered_model=null", env=env, check=True)
    job_id = re.search(r"submitted (\S+)", first.stdout).group(1)
    deadline, run_id = time.time() + 600, None
    while time.time() < deadline:  # wait until the workers train (SFT logs every step)
        exp = client.get_experiment_by_name("ringbit-tests")
        runs = exp and client.search_runs([exp.experiment_id], f"tags.`ringbit.job_name` = '{name}'")
        if runs and client.get_metric_history(runs[0].info.run_id, "train_loss"):
            run_id = runs[0].info.run_id
            break
        time.sleep(0.5)
    assert run_id, "the job never logged a training step"
    ringbit("stop", job_id, env=env, check=True)
    jc = job_client(f"http://127.0.0.1:{env['RINGBIT_DASHBOARD_PORT']}")
    while jc.get_job_status(job_id) not in (JobStatus.STOPPED, JobStatus.FAILED, JobStatus.SUCCEEDED):
        assert time.time() < deadline
        time.sleep(0.5)
    assert jc.get_job_status(job_id) == JobStatus.STOPPED, "job finished before it could be stopped"
    assert client.get_run(run_id).info.status == "KILLED"
