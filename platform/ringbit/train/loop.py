"""The worker loop: a DeepSpeed engine around the model, deterministic batches, validation
perplexity reduced as sums, checkpoints handed to the launcher.

`run_training` knows nothing about Ray: a `Launcher` says who this worker is and where checkpoints
go. `train_loop_per_worker` is the Ray Train adapter; benchmarks/ray_overhead.py runs the very same
loop under torchrun to measure what Ray costs.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ringbit.train.config import PretrainConfig
from ringbit.data.loader import TrainBatches, eval_batches
from ringbit.data.prepare import load_split
from ringbit.models import Transformer
from ringbit.models.io import save_model_dir
from ringbit.parallel.sequence import IGNORE, SequenceParallel, setup_sequence_parallel
from ringbit.train.engine import apply_weight_decay_schedule, build_optimizer, deepspeed_config
from ringbit.train.perplexity import all_reduce_sums, perplexity

CHECKPOINT_TAG = "ckpt"
PROGRESS_PREFIX = "[ringbit] step="


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _all_reduce(value: float, op=dist.ReduceOp.SUM, device="cpu") -> float:
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=op)
    return t.item()


def token_nll(engine, rows: torch.Tensor, sp: SequenceParallel) -> tuple[torch.Tensor, int]:
    """Summed NLL of this rank's target tokens (a sequence shard when sequence-parallel)."""
    inputs, targets, positions = sp.shard_batch(rows)
    logits = engine(inputs, positions).float()
    nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
                          ignore_index=IGNORE, reduction="sum")
    return nll, int((targets != IGNORE).sum())


def evaluate(engine, rows, sp: SequenceParallel, cfg: PretrainConfig, device) -> tuple[float, float]:
    """Sums over every rank: data-parallel groups hold disjoint rows, SP ranks disjoint tokens."""
    engine.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in eval_batches(rows, sp.dp_rank, sp.dp_size, cfg.train.micro_batch_size, cfg.train.eval_batches):
            nll, n = token_nll(engine, batch.to(device), sp)
            total, count = total + nll.item(), count + n
    engine.train()
    return perplexity(*all_reduce_sums(total, count, device=device))


def full_state_dict(engine, zero_stage: int) -> dict[str, torch.Tensor] | None:
    """The whole model's weights on rank 0 (ZeRO-3 shards gathered; every rank must call this)."""
    if zero_stage == 3:
        sd = engine._zero3_consolidated_16bit_state_dict()
    else:
        sd = {k: v.detach().cpu().clone() for k, v in engine.module.state_dict().items()}
    if sd is not None and "lm_head.weight" not in sd and "embed.weight" in sd:
        sd["lm_head.weight"] = sd["embed.weight"]  # tied weights may be listed once
    return sd


def log_step_zero(client, run_id: str, metrics: dict[str, float]) -> None:
    """Metrics at step 0 (MetricBuffer only sends steps after what the run has): once per run,
    so a job restarted before its first checkpoint does not log its start twice."""
    from mlflow.entities import Metric

    if any(m.step == 0 for m in client.get_metric_history(run_id, "val_ppl")):
        return
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])


@dataclass
class Launcher:
    """What the loop needs from whoever started the worker processes."""

    rank: int
    world: int
    device: torch.device
    latest_checkpoint: Callable[[], ContextManager[str | None]]  # yields a folder or None
    report: Callable[[dict[str, float], str | None], None]  # metrics, checkpoint folder or None


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry: checkpoints go through ray.train.report and come back on restart/resume."""
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
    run_training(config, Launcher(ctx.get_world_rank(), ctx.get_world_size(),
                                  ray.train.torch.get_device(), latest, report))


def run_training(config: dict[str, Any], launcher: Launcher) -> None:
    cfg = PretrainConfig.model_validate(config["job"])
    # Choose DeepSpeed's accelerator before it is imported (it decides once, at import).
    os.environ.setdefault("DS_ACCELERATOR", "cuda" if cfg.workers.use_gpu else "cpu")
    import deepspeed

    rank, world, device = launcher.rank, launcher.world, launcher.device
    torch.manual_seed(cfg.train.seed)
    sp = setup_sequence_parallel(cfg.parallel, cfg.data.seq_len, rank, world)

    model = Transformer(cfg.model, quant=cfg.quant, attend=sp.attend)
    if cfg.init_from:  # continued pretraining: the base's weights, before DeepSpeed wraps them
        from ringbit.train.base import load_base_weights, worker_base_dir

        load_base_weights(model, worker_base_dir(config.get("init_from_dir"), cfg.init_from,
                                                 config.get("tracking_uri")))
    optimizer, scheduler = build_optimizer(model, cfg.train)
    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler,
        config=deepspeed_config(cfg, device.type == "cuda"),
    )

    start = 0
    with launcher.latest_checkpoint() as d:
        if d is not None:
            _, client_state = engine.load_checkpoint(d, tag=CHECKPOINT_TAG)
            start = int(client_state["step"])
            if rank == 0:
                print(f"[ringbit] resumed from checkpoint at step {start}", flush=True)

    data_dir = Path(config["data_dir"])
    train_rows, val_rows = load_split(data_dir, "train"), load_split(data_dir, "val")
    batches = TrainBatches(train_rows, sp.dp_rank, sp.dp_size, cfg.train.micro_batch_size,
                           cfg.grad_accum_steps, cfg.train.seed)
    buffer = None
    if rank == 0 and config.get("run_id"):
        from mlflow.tracking import MlflowClient

        from ringbit.tracking import MetricBuffer

        buffer = MetricBuffer(MlflowClient(config["tracking_uri"]), config["run_id"])

    accum, t = cfg.grad_accum_steps, cfg.train
    tokens_per_step = t.global_batch_size * cfg.data.seq_len
    step_log: list[dict[str, float]] = []  # wall-clock per step, for benchmarks
    eval_at_start = t.eval_at_start if t.eval_at_start is not None else cfg.init_from is not None
    if start == 0 and eval_at_start:  # where a pretrained model starts, before any update
        began = time.perf_counter()
        first: dict[str, float] = {}
        first["val_loss"], first["val_ppl"] = evaluate(engine, val_rows, sp, cfg, device)
        if buffer:
            log_step_zero(buffer.client, buffer.run_id, first)
        if rank == 0:
            print(f"{PROGRESS_PREFIX}0/{t.max_steps} val_loss={first['val_loss']:.6g} "
                  f"val_ppl={first['val_ppl']:.6g} ({time.perf_counter() - began:.1f} s)", flush=True)
        launcher.report({**first, "step": 0}, None)
    for step in range(start, t.max_steps):
        began = time.perf_counter()
        nll_sum = 0.0
        apply_weight_decay_schedule(optimizer, t, step)
        for micro in range(accum):
            rows = batches.batch(step, micro).to(device)
            nll, _ = token_nll(engine, rows, sp)
            # DeepSpeed averages gradients over all `world` ranks. Scaling the summed NLL by the SP
            # degree over the micro-batch's real tokens makes that average the exact gradient of
            # the mean token loss: SP ranks hold disjoint tokens of the same sequences.
            engine.backward(nll * sp.size / (rows.shape[0] * cfg.data.seq_len))
            engine.step()
            nll_sum += nll.item()
        done = step + 1
        metrics: dict[str, float] = {
            "train_loss": _all_reduce(nll_sum, device=device) / (t.global_batch_size * cfg.data.seq_len),
            "lr": scheduler.get_last_lr()[0],
            "tokens_per_s": tokens_per_step / (time.perf_counter() - began),
            "peak_memory_mb": _all_reduce(peak_memory_mb(device), dist.ReduceOp.MAX, device),
        }
        is_eval = done % t.eval_interval == 0 or done == t.max_steps
        is_ckpt = done % t.checkpoint_interval == 0 or done == t.max_steps
        step_log.append({"step": done, "end": time.time(), "seconds": time.perf_counter() - began,
                         "train_loss": metrics["train_loss"]})
        if is_eval:
            metrics["val_loss"], metrics["val_ppl"] = evaluate(engine, val_rows, sp, cfg, device)
        if buffer:
            buffer.add(done, **metrics)
        if rank == 0 and (is_eval or is_ckpt or done % t.log_interval == 0 or done == start + 1):
            shown = " ".join(f"{k}={v:.6g}" for k, v in metrics.items())
            print(f"{PROGRESS_PREFIX}{done}/{t.max_steps} {shown}", flush=True)
            if buffer:
                buffer.flush()
        if is_ckpt:
            final_weights = full_state_dict(engine, cfg.deepspeed.zero_stage) if done == t.max_steps else None
            with tempfile.TemporaryDirectory() as tmp:
                engine.save_checkpoint(tmp, tag=CHECKPOINT_TAG, client_state={"step": done})
                if final_weights is not None and rank == 0:
                    tok = (data_dir / "tokenizer.json").read_text()
                    # an imported base's chat template and special tokens travel with the model
                    save_model_dir(Path(tmp) / "model", cfg.model, final_weights, tok,
                                   quant=cfg.quant, tokenizer_config=config.get("tokenizer_config"))
                launcher.report({**metrics, "step": done}, tmp)
        elif is_eval:
            launcher.report({**metrics, "step": done}, None)
    if rank == 0 and config.get("step_log_path"):
        Path(config["step_log_path"]).write_text(json.dumps(step_log))
