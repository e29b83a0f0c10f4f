"""The worker loop: a DeepSpeed engine around the model, deterministic batches, validation
perplexity reduced as sums, checkpoints handed to the launcher.

`run_training` knows nothing about Ray: a `Launcher` says who this worker is and where checkpoints
go. `train_loop_per_worker` is the Ray Train adapter; benchmarks/ray_overhead.py runs the very same
loop under torchrun to measure what Ray costs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ringbit.train.config import PretrainConfig
from ringbit.data.loader import TrainBatches, eval_batches
from ringbit.data.prepare import load_split
from ringbit.models import Transformer
from ringbit.models.io import save_model_dir
from ringbit.parallel.sequence import SequenceParallel, setup_sequence_parallel
from ringbit.train.engine import apply_weight_decay_schedule
from ringbit.train.perplexity import all_reduce_sums, perplexity
from ringbit.train.progress import format_progress
from ringbit.train.worker import (  # noqa: F401  (Launcher: benchmarks/ray_overhead.py imports it here)
    IGNORE, Launcher, all_reduce, build_engine, load_checkpoint,
    metric_buffer, peak_memory_mb, ray_launcher, save_checkpoint,
)


def _all_reduce(value: float, op=dist.ReduceOp.SUM, device="cpu") -> float:
    return all_reduce([value], device, op)[0]


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


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry: checkpoints go through ray.train.report and come back on restart/resume."""
    run_training(config, ray_launcher())


def run_training(config: dict[str, Any], launcher: Launcher) -> None:
    cfg = PretrainConfig.model_validate(config["job"])
    rank, world, device = launcher.rank, launcher.world, launcher.device
    torch.manual_seed(cfg.train.seed)
    sp = setup_sequence_parallel(cfg.parallel, cfg.data.seq_len, rank, world)

    model = Transformer(cfg.model, quant=cfg.quant, attend=sp.attend)
    if cfg.init_from:  # continued pretraining: the base's weights, before DeepSpeed wraps them
        from ringbit.train.base import load_base_weights, worker_base_dir

        load_base_weights(model, worker_base_dir(config.get("init_from_dir"), cfg.init_from,
                                                 config.get("tracking_uri")))
    engine, optimizer, scheduler = build_engine(model, cfg.train, cfg.deepspeed, device,
                                                data_parallel=cfg.data_parallel,
                                                sequence_parallel=cfg.parallel.sequence_parallel)
    start = load_checkpoint(engine, launcher)
    if start and rank == 0:
        print(f"[ringbit] resumed from checkpoint at step {start}", flush=True)

    data_dir = Path(config["data_dir"])
    train_rows, val_rows = load_split(data_dir, "train"), load_split(data_dir, "val")
    batches = TrainBatches(train_rows, sp.dp_rank, sp.dp_size, cfg.train.micro_batch_size,
                           cfg.grad_accum_steps, cfg.train.seed)
    buffer = metric_buffer(config, rank)

    def write_model(folder: Path, weights) -> None:
        # an imported base's chat template and special tokens travel with the model
        save_model_dir(folder, cfg.model, weights, (data_dir / "tokenizer.json").read_text(),
                       quant=cfg.quant, tokenizer_config=config.get("tokenizer_config"))

    accum, t = cfg.grad_accum_steps, cfg.train
    tokens_per_step = t.global_batch_size * cfg.data.seq_len
    step_log: list[dict[str, float]] = []  # wall-clock per step, for benchmarks
    eval_at_start = t.eval_at_start if t.eval_at_start is not None else cfg.init_from is not None
    if start == 0 and eval_at_start:  # where a pretrained model starts, before any update
        began = time.perf_counter()
        first: dict[str, float] = {}
        first["val_loss"], first["val_ppl"] = evaluate(engine, val_rows, sp, cfg, device)
        if buffer:
            buffer.add_start(**first)
            buffer.flush()
        if rank == 0:
            print(format_progress(0, t.max_steps, first, note=f"({time.perf_counter() - began:.1f} s)"),
                  flush=True)
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
            print(format_progress(done, t.max_steps, metrics), flush=True)
            if buffer:
                buffer.flush()
        if is_ckpt:
            save_checkpoint(engine, launcher, metrics, done, zero_stage=cfg.deepspeed.zero_stage,
                            write_model=write_model if done == t.max_steps else None)
        elif is_eval:
            launcher.report({**metrics, "step": done}, None)
    if buffer:
        buffer.close()  # what an MLflow outage kept back, retried with backoff
    if rank == 0 and config.get("step_log_path"):
        Path(config["step_log_path"]).write_text(json.dumps(step_log))
