"""Sequence parallelism inside the training loop: training parity (the same model and data with
sequence_parallel 1 and 2 give the same losses) under Ray Train + DeepSpeed.

Batch sharding alone (no Ray) is tested in tests/unit/test_parallel_sequence_shard.py."""

from __future__ import annotations

import json

import pytest

from conftest import REPO
from ringbit.config import load_config
from ringbit.train.config import PretrainConfig


@pytest.fixture(scope="module")
def data_dir(local_ray, tmp_path_factory):
    from ringbit.data.prepare import prepare

    cfg = load_config(PretrainConfig, REPO / "jobs/configs/tiny.yaml")
    return prepare(cfg.data, cfg.model.vocab_size, tmp_path_factory.mktemp("data"))


def train_losses(overrides: list[str], data_dir, tmp_path, workers: int = 2) -> list[float]:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from ringbit.train.loop import train_loop_per_worker

    cfg = load_config(PretrainConfig, REPO / "jobs/configs/tiny.yaml", [
        "train.max_steps=20", "train.eval_interval=20", "train.checkpoint_interval=20",
        "train.global_batch_size=8", "train.micro_batch_size=4", f"workers.num_workers={workers}",
        "parallel.block_size=16", *overrides])
    log = tmp_path / "steps.json"
    TorchTrainer(train_loop_per_worker,
                 train_loop_config={"job": cfg.model_dump(mode="json"), "data_dir": str(data_dir),
                                    "step_log_path": str(log)},
                 scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": 2 / workers}),
                 run_config=RunConfig(name="sp", storage_path=str(tmp_path))).fit()
    return [s["train_loss"] for s in json.loads(log.read_text())]


@pytest.fixture(scope="module")
def baseline(data_dir, tmp_path_factory):
    return train_losses(["parallel.sequence_parallel=1", "train.micro_batch_size=4"], data_dir,
                        tmp_path_factory.mktemp("sp1"))


@pytest.mark.parametrize("strategy, layout", [("ring", "zigzag"), ("ring", "contiguous"), ("ulysses", "striped")])
def test_sequence_parallel_training_matches_data_parallel(baseline, strategy, layout, data_dir, tmp_path):
    losses = train_losses(["parallel.sequence_parallel=2", f"parallel.strategy={strategy}",
                           f"parallel.layout={layout}"], data_dir, tmp_path)
    assert len(losses) == len(baseline) == 20
    assert losses[-1] < losses[0]
    for step, (a, b) in enumerate(zip(baseline, losses), 1):
        assert abs(a - b) / abs(a) < 1e-3, f"step {step}: sp1 {a} vs sp2 {b}"


def test_hybrid_over_four_workers_matches_data_parallel(baseline, data_dir, tmp_path):
    """Ulysses groups of 2 inside, ring across: 4 workers share each sequence."""
    losses = train_losses(["parallel.sequence_parallel=4", "parallel.strategy=hybrid", "parallel.ulysses_size=2",
                           "parallel.layout=zigzag"], data_dir, tmp_path, workers=4)
    for step, (a, b) in enumerate(zip(baseline, losses), 1):
        assert abs(a - b) / abs(a) < 1e-3, f"step {step}: sp1 {a} vs hybrid {b}"
