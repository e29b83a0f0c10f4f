"""The Ray Train + DeepSpeed loop itself, on a private local Ray: every ZeRO stage trains and
exports weights that reproduce the reported validation loss; a killed worker is retried from the
last checkpoint (FailureConfig)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO
from ringbit.config import load_config
from ringbit.train.config import PretrainConfig
from ringbit.data.loader import eval_batches
from ringbit.data.prepare import load_split, prepare
from ringbit.models.io import load_model_dir
from ringbit.train.perplexity import nll_sums, perplexity


@pytest.fixture(scope="module")
def data_dir(local_ray, tmp_path_factory):
    cfg = load_config(PretrainConfig, REPO / "jobs/configs/tiny.yaml")
    return prepare(cfg.data, cfg.model.vocab_size, tmp_path_factory.mktemp("data"))


def fit(cfg: PretrainConfig, data_dir: Path, storage: Path, max_failures: int = 0, **extra):
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from ringbit.train.loop import train_loop_per_worker

    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"job": cfg.model_dump(mode="json"), "data_dir": str(data_dir), **extra},
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5}),
        run_config=RunConfig(name="t", storage_path=str(storage),
                             failure_config=FailureConfig(max_failures=max_failures)),
    ).fit()


@pytest.mark.parametrize("stage, quant", [(0, None), (1, None), (3, None),
                                          (1, "weight_bits: 1"), (3, "weight_bits: 1.58")])
def test_every_zero_stage_trains_and_exports_consistent_weights(stage, quant, data_dir, tmp_path):
    cfg = load_config(PretrainConfig, REPO / "jobs/configs/tiny.yaml", [
        f"deepspeed.zero_stage={stage}", "train.max_steps=20", "train.eval_interval=20",
        "train.checkpoint_interval=20", "train.eval_batches=null",
        *([f"quant={{{quant}}}"] if quant else [])])
    result = fit(cfg, data_dir, tmp_path)
    assert result.metrics["step"] == 20
    with result.checkpoint.as_directory() as ckpt:
        model, _ = load_model_dir(Path(ckpt) / "model")
    # The exported weights give exactly the validation loss the workers reported (all rows).
    val = load_split(data_dir, "val")
    loss, _ = perplexity(*nll_sums(model, eval_batches(val, 0, 1, 16)))
    assert loss == pytest.approx(result.metrics["val_loss"], rel=1e-4)
    assert loss < 6.0  # ln(512) = 6.24 is the uniform guess: it learned something


def test_killed_worker_is_restarted_from_the_last_checkpoint(local_ray, data_dir, tmp_path):
    from ray.util.state import list_actors

    address = local_ray.get_runtime_context().gcs_address  # this test's own cluster only

    cfg = load_config(PretrainConfig, REPO / "jobs/configs/tiny.yaml", [
        "train.max_steps=200", "train.checkpoint_interval=10", "train.eval_interval=50",
        "train.eval_batches=1"])
    killed: list[int] = []

    def kill_one_worker_after_first_checkpoint():
        deadline = time.time() + 240
        # The controller writes this snapshot once a checkpoint is registered (safe to resume from).
        while time.time() < deadline and not (tmp_path / "t" / "checkpoint_manager_snapshot.json").exists():
            time.sleep(0.2)
        workers = list_actors(address=address,
                              filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")])
        if workers:
            os.kill(workers[0].pid, signal.SIGKILL)
            killed.append(workers[0].pid)

    killer = threading.Thread(target=kill_one_worker_after_first_checkpoint, daemon=True)
    killer.start()
    step_log = tmp_path / "steps.json"
    result = fit(cfg, data_dir, tmp_path, max_failures=1, step_log_path=str(step_log))
    killer.join(timeout=5)
    assert killed, "no worker was found to kill"
    assert result.error is None and result.metrics["step"] == 200
    # The restarted worker group began after a checkpoint, not at step 1, and ran to the end.
    import json

    steps_run = [s["step"] for s in json.loads(step_log.read_text())]
    assert steps_run[0] > 1 and (steps_run[0] - 1) % 10 == 0
    assert steps_run == list(range(steps_run[0], 201))
