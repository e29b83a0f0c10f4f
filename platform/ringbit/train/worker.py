"""What every training worker does around its loop, shared by pretraining (train/loop.py) and
fine-tuning (train/sft.py): who this worker is (`Launcher`, Ray Train's or torchrun's), the
DeepSpeed engine, checkpoint resume and save (one tag, one layout), the rank-0 metric buffer to
MLflow, and the full model's weights for the saved model folder."""

from __future__ import annotations

import contextlib
import os
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager

import torch
import torch.distributed as dist

from ringbit.parallel.sequence import IGNORE  # cross_entropy's ignore_index, the one definition
from ringbit.train.config import DeepSpeedConfig, TrainConfig
from ringbit.train.engine import build_optimizer, deepspeed_config

__all__ = ["CHECKPOINT_TAG", "IGNORE", "Launcher", "all_reduce", "build_engine", "full_state_dict",
           "load_checkpoint", "metric_buffer", "peak_memory_mb", "ray_launcher",
           "save_checkpoint"]

CHECKPOINT_TAG = "ckpt"  # DeepSpeed's tag inside every checkpoint folder


@dataclass
class Launcher:
    """What the loop needs from whoever started the worker processes."""

    rank: int
    world: int
    device: torch.device
    latest_checkpoint: Callable[[], ContextManager[str | None]]  # yields a folder or None
    report: Callable[[dict[str, float], str | None], None]  # metrics, checkpoint folder or None


def ray_launcher() -> Launcher:
    """Inside a Ray Train worker: checkpoints go through ray.train.report and come back on
    restart/resume."""
    import ray.train
    import ray.train.torch
    from ray.train import Checkpoint

    @contextlib.contextmanager
    def latest():
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            yield None
        else:
            with checkpoint.as_directory() as d:
                yield d

    def report(metrics, folder):
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(folder) if folder else None)

    ctx = ray.train.get_context()
    return Launcher(ctx.get_world_rank(), ctx.get_world_size(), ray.train.torch.get_device(), latest, report)


def build_engine(model: torch.nn.Module, train: TrainConfig, ds: DeepSpeedConfig, device: torch.device, *,
                 data_parallel: int, sequence_parallel: int = 1):
    """(engine, optimizer, scheduler): torch's AdamW and the LR schedule inside DeepSpeed."""
    # Choose DeepSpeed's accelerator before it is imported (it decides once, at import).
    os.environ.setdefault("DS_ACCELERATOR", "cuda" if device.type == "cuda" else "cpu")
    import deepspeed

    from ringbit.extensions import clear_stale_build_locks

    clear_stale_build_locks()  # DeepSpeed's CPU op is loaded (or built) under a file lock

    optimizer, scheduler = build_optimizer(model, train)
    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler,
        config=deepspeed_config(train, ds, device.type == "cuda", data_parallel=data_parallel,
                                sequence_parallel=sequence_parallel),
    )
    return engine, optimizer, scheduler


def load_checkpoint(engine, launcher: Launcher) -> int:
    """The step to start from: the latest checkpoint's (restored into the engine), else 0."""
    with launcher.latest_checkpoint() as d:
        if d is None:
            return 0
        _, client_state = engine.load_checkpoint(d, tag=CHECKPOINT_TAG)
        return int(client_state["step"])


def full_state_dict(engine, zero_stage: int) -> dict[str, torch.Tensor] | None:
    """The whole model's weights on rank 0 (ZeRO-3 shards gathered; every rank must call this)."""
    if zero_stage == 3:
        sd = engine._zero3_consolidated_16bit_state_dict()
    else:
        sd = {k: v.detach().cpu().clone() for k, v in engine.module.state_dict().items()}
    if sd is not None and "lm_head.weight" not in sd and "embed.weight" in sd:
        sd["lm_head.weight"] = sd["embed.weight"]  # tied weights may be listed once
    return sd


def save_checkpoint(engine, launcher: Launcher, metrics: dict[str, float], step: int, *, zero_stage: int,
                    write_model: Callable[[Path, dict[str, torch.Tensor]], None] | None = None) -> None:
    """Save the engine at `step` and report it with `metrics`. With `write_model` (the last step),
    the full weights are gathered (every rank) and rank 0 writes the model folder `model/` inside
    the checkpoint: write_model(folder, weights)."""
    weights = full_state_dict(engine, zero_stage) if write_model is not None else None
    with tempfile.TemporaryDirectory() as tmp:
        engine.save_checkpoint(tmp, tag=CHECKPOINT_TAG, client_state={"step": step})
        if weights is not None and launcher.rank == 0:
            write_model(Path(tmp) / "model", weights)
        launcher.report({**metrics, "step": step}, tmp)


def metric_buffer(config: dict[str, Any], rank: int):
    """Rank 0's MetricBuffer for the job's MLflow run (None elsewhere, or without a run)."""
    if rank != 0 or not config.get("run_id"):
        return None
    from mlflow.tracking import MlflowClient

    from ringbit.tracking import MetricBuffer

    return MetricBuffer(MlflowClient(config["tracking_uri"]), config["run_id"])


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def all_reduce(values: list[float], device, op=dist.ReduceOp.SUM) -> list[float]:
    """Sum (or `op`) of each value over every rank, in float64."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=op)
    return t.tolist()
