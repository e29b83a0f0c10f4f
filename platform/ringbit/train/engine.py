"""DeepSpeed config and the optimizer/LR schedule handed to it (no Ray here)."""

from __future__ import annotations

import math
from typing import Any

import torch

from ringbit.train.config import DeepSpeedConfig, TrainConfig


def use_bf16(precision: str, on_gpu: bool) -> bool:
    if precision == "bf16":
        return True
    return precision == "auto" and on_gpu and torch.cuda.is_bf16_supported()


def deepspeed_config(train: TrainConfig, ds: DeepSpeedConfig, on_gpu: bool, *, data_parallel: int,
                     sequence_parallel: int = 1) -> dict[str, Any]:
    """DeepSpeed sees every worker as data-parallel (ZeRO partitions over all of them). With
    sequence parallelism the workers of one SP group share sequences, so DeepSpeed's batch is
    global_batch_size * sequence_parallel "shards"; the loss scaling in the loop keeps the
    averaged gradient exact (see train/loop.py). `data_parallel` is the number of groups that
    hold different sequences (the workers, for a job without sequence parallelism)."""
    bf16 = use_bf16(ds.precision, on_gpu)
    config: dict[str, Any] = {
        "train_batch_size": train.global_batch_size * sequence_parallel,
        "train_micro_batch_size_per_gpu": train.micro_batch_size,
        "gradient_accumulation_steps": train.global_batch_size // (train.micro_batch_size * data_parallel),
        "gradient_clipping": train.grad_clip,
        "zero_optimization": {"stage": ds.zero_stage},
        "bf16": {"enabled": bf16},
        "fp16": {"enabled": ds.precision == "fp16"},
        # The optimizer is torch's AdamW (no compiled DeepSpeed op needed on CPU).
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    config.update(ds.extra)
    return config


def lr_multiplier(t: TrainConfig):
    """Linear warmup, then decay to min_lr_ratio: cosine, linear, polynomial, two_stage (the
    linear curve, times stage2_lr_ratio from half way on) or constant."""

    def f(step: int) -> float:
        if step < t.warmup_steps:
            return (step + 1) / t.warmup_steps
        if t.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - t.warmup_steps) / max(1, t.max_steps - t.warmup_steps))
        if t.schedule == "cosine":
            shape = 0.5 * (1 + math.cos(math.pi * progress))
        elif t.schedule == "polynomial":
            shape = (1 - progress) ** t.poly_power
        else:
            shape = 1 - progress
        lr = t.min_lr_ratio + (1 - t.min_lr_ratio) * shape
        if t.schedule == "two_stage" and in_second_stage(step, t):
            lr = max(t.min_lr_ratio, lr * t.stage2_lr_ratio)
        return lr

    return f


def in_second_stage(step: int, t: TrainConfig) -> bool:
    """BitNet b1.58's two-stage recipe switches at half of the run."""
    return step >= t.max_steps // 2


def apply_weight_decay_schedule(optimizer: torch.optim.Optimizer, t: TrainConfig, step: int) -> None:
    """two_stage: the configured weight decay for the first half, none in the second (b1.58)."""
    if t.weight_decay_schedule == "constant":
        return
    for group in optimizer.param_groups:
        initial = group.setdefault("initial_weight_decay", group["weight_decay"])
        group["weight_decay"] = 0.0 if in_second_stage(step, t) else initial


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices only; norms and other vectors are left alone (standard AdamW practice)."""
    unique = {id(p): p for p in model.parameters() if p.requires_grad}.values()
    decay = [p for p in unique if p.dim() >= 2]
    rest = [p for p in unique if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]  # LoRA trains matrices only


def build_optimizer(model: torch.nn.Module, t: TrainConfig):
    opt = torch.optim.AdamW(param_groups(model, t.weight_decay), lr=t.lr, betas=(t.beta1, t.beta2))
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lr_multiplier(t))
