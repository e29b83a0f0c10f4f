"""The sweep config (SweepConfig) and, from it, the trial configs: pure functions (no Ray), so a
bad search space is a config error before anything starts."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from ringbit.config import (
    ConfigError,
    StrictModel,
    apply_overrides,
    flatten,
    format_validation_error,
    load_config,
)
from ringbit.quant.config import WEIGHT_BITS, WEIGHT_BITS_CHOICES
from ringbit.train.config import PretrainConfig

REPO = Path(__file__).resolve().parents[3]


# ------------------------------------------------------------------------------------ the config


class SweepSpace(StrictModel):
    """What the trials vary: the grid (search: grid) or the choices (random / optuna)."""

    seq_len: list[int] = Field(description="Context lengths (data.seq_len) to try.")
    weight_bits: list[float] = Field(
        description="quant.weight_bits values (1, 1.58, 2, 4, 8, 16, 32; 16/32 = weights unquantized)."
    )
    lr: list[float] | None = Field(None, description="train.lr values; None = the base config's.")
    extra: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="More dotted keys of the pretraining config and their values, e.g. "
        "{'train.warmup_steps': [10, 50]}.",
    )

    @field_validator("seq_len", "weight_bits", "lr")
    @classmethod
    def _not_empty(cls, values: list | None) -> list | None:
        if values is not None and not values:
            raise ValueError("empty grid: give at least one value")
        return values

    @field_validator("seq_len")
    @classmethod
    def _lengths(cls, values: list[int]) -> list[int]:
        bad = [v for v in values if v < 8]
        if bad:
            raise ValueError(f"context lengths must be >= 8, got {bad}")
        return values

    @field_validator("weight_bits")
    @classmethod
    def _bits(cls, values: list[float]) -> list[float]:
        bad = ", ".join(f"{b:g}" for b in values if b not in WEIGHT_BITS)
        if bad:
            raise ValueError(f"unsupported bit width(s) {bad}; choose from {WEIGHT_BITS_CHOICES}")
        return values

    @field_validator("extra")
    @classmethod
    def _extra_lists(cls, values: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, choices in values.items():
            if not choices:
                raise ValueError(f"{key}: empty grid: give at least one value")
        return values


class AshaConfig(StrictModel):
    """Asynchronous successive halving on val_ppl, reported every train.eval_interval steps."""

    enabled: bool = Field(True, description="Stop clearly worse trials early.")
    grace_period: int = Field(
        20, ge=1, description="Steps every trial runs before it can be stopped."
    )
    reduction_factor: float = Field(2.0, gt=1, description="Keep the best 1/reduction_factor at each rung.")
    brackets: int = Field(1, ge=1, description="ASHA brackets.")


class SweepTracking(StrictModel):
    """MLflow for a sweep: one parent run, one child run per trial."""

    experiment: str = Field("ringbit-sweeps", description="MLflow experiment of the sweep.")
    tracking_uri: str | None = Field(
        None, description="MLflow server; None = MLFLOW_TRACKING_URI or the local platform."
    )


class SweepConfig(StrictModel):
    """A Ray Tune sweep of pretraining jobs over context length x weight bit width."""

    name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$",
        description="Sweep name; resubmitting (or --resume) the same name resumes it.",
    )
    base: str = Field(
        "jobs/configs/tiny.yaml", description="Pretraining config every trial starts from."
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="Dotted overrides applied to the base for every trial."
    )
    space: SweepSpace
    search: Literal["grid", "random", "optuna"] = Field(
        "grid", description="grid = every combination; random / optuna draw num_samples trials."
    )
    num_samples: int = Field(
        1, ge=1, description="grid: repeats of the whole grid; random/optuna: trials drawn."
    )
    tokens_per_step: int | None = Field(
        None,
        ge=8,
        description="Equal tokens per optimizer step in every trial: train.global_batch_size = "
        "tokens_per_step / seq_len (so equal steps mean equal tokens). None = the base batch.",
    )
    ring_above: int | None = Field(
        None,
        ge=8,
        description="Contexts longer than this train with ring attention over all of a trial's "
        "workers (parallel.sequence_parallel = workers.num_workers).",
    )
    asha: AshaConfig = Field(default_factory=AshaConfig)
    max_concurrent_trials: int | None = Field(
        None, ge=1, description="None = as many as the cluster's free CPUs/GPUs hold."
    )
    cpus_per_worker: float = Field(
        0.49, gt=0, description="CPU share of each trial worker (two 2-worker trials fit 2 cores)."
    )
    trial_max_failures: int = Field(0, ge=0, description="Retries of a crashed trial.")
    storage_path: str | None = Field(
        None, description="Tune and trial state; None = <ringbit home>/sweeps."
    )
    mlflow: SweepTracking = Field(default_factory=SweepTracking)

    @model_validator(mode="after")
    def _every_trial_is_valid(self, info) -> "SweepConfig":
        check_trials(self, (info.context or {}).get("base"))
        return self


# ------------------------------------------------------------------------------------ trials


def base_config(sweep: SweepConfig) -> PretrainConfig:
    """The base pretraining config with the sweep's overrides (relative paths: cwd, then repo)."""
    path = Path(sweep.base)
    if not path.is_absolute() and not path.exists() and (REPO / path).exists():
        path = REPO / path
    try:
        # `--set overrides.train.lr=…` nests where the YAML has dotted keys: flatten both
        items = flatten(sweep.overrides).items()
        return load_config(PretrainConfig, path, [f"{k}={json.dumps(v)}" for k, v in items])
    except ConfigError as exc:
        raise ValueError(f"base {sweep.base}: {exc}") from None


def space_keys(sweep: SweepConfig) -> dict[str, list[Any]]:
    """Trial parameter -> its values, in a fixed order."""
    space = {"seq_len": sweep.space.seq_len, "weight_bits": sweep.space.weight_bits}
    if sweep.space.lr:
        space["lr"] = sweep.space.lr
    space.update(sweep.space.extra)
    return space


def grid(sweep: SweepConfig) -> list[dict[str, Any]]:
    keys = space_keys(sweep)
    return [dict(zip(keys, values)) for values in itertools.product(*keys.values())]


def trial_config(base: PretrainConfig, sweep: SweepConfig, params: dict[str, Any],
                 name: str) -> PretrainConfig:
    """The pretraining config of one trial. Raises ValueError naming the space field at fault.
    A base with init_from passes it on: every trial continues from the same pretrained model."""
    data = base.to_data()
    seq = int(params["seq_len"])
    chunks = base.parallel.sequence_parallel * (2 if base.parallel.layout == "zigzag" else 1)
    if base.parallel.sequence_parallel > 1 and seq % chunks:
        raise ValueError(
            f"space.seq_len: {seq} does not divide into the {chunks} chunks of the base's "
            f"parallel.layout {base.parallel.layout} over sequence_parallel "
            f"{base.parallel.sequence_parallel}; use multiples of {chunks}"
        )
    overrides = [f"name={name}", f"data.seq_len={seq}", "mlflow.registered_model=null",
                 f"mlflow.experiment={sweep.mlflow.experiment}",
                 f"workers.cpus_per_worker={sweep.cpus_per_worker}",
                 f"model.max_seq_len={max(seq, base.model.max_seq_len)}"]
    data.setdefault("quant", None)
    if data["quant"] is None:
        data["quant"] = {}
    overrides.append(f"quant.weight_bits={params['weight_bits']}")
    if "lr" in params:
        overrides.append(f"train.lr={params['lr']}")
    if sweep.tokens_per_step:
        if sweep.tokens_per_step % seq:
            raise ValueError(
                f"tokens_per_step ({sweep.tokens_per_step}) must divide by every space.seq_len; "
                f"{seq} does not"
            )
        overrides.append(f"train.global_batch_size={sweep.tokens_per_step // seq}")
    if sweep.ring_above and seq > sweep.ring_above:
        workers = base.workers.num_workers
        overrides += [f"parallel.sequence_parallel={workers}", "parallel.strategy=ring"]
        if seq % (workers * (2 if base.parallel.layout == "zigzag" else 1)):
            raise ValueError(
                f"space.seq_len: {seq} is above ring_above ({sweep.ring_above}) and must divide by "
                f"the ring's chunks ({workers} workers, layout {base.parallel.layout})"
            )
    for key, value in params.items():
        if key not in ("seq_len", "weight_bits", "lr"):
            overrides.append(f"{key}={json.dumps(value)}")
    try:
        data = apply_overrides(data, overrides)
        return PretrainConfig.model_validate(data)
    except ConfigError as exc:
        raise ValueError(f"trial {params}: {exc}") from None
    except ValidationError as exc:
        raise ValueError(f"trial {params}: {format_validation_error(exc, PretrainConfig)}") from None


def check_trials(sweep: SweepConfig, base: PretrainConfig | None = None) -> None:
    """Build every combination of the space once (the product is small) so errors show now."""
    base = base or base_config(sweep)
    if sweep.asha.enabled and sweep.asha.grace_period > base.train.max_steps:
        raise ValueError(
            f"asha.grace_period ({sweep.asha.grace_period}) exceeds train.max_steps "
            f"({base.train.max_steps}) of the base: no trial could be stopped early"
        )
    for params in grid(sweep):
        trial_config(base, sweep, params, name="check")
