"""From a sweep config to trial configs: pure functions (no Ray), so a bad search space is a
config error before anything starts."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from ringbit.config import (
    ConfigError,
    PretrainConfig,
    SweepConfig,
    ValidationError,
    apply_overrides,
    flatten,
    format_validation_error,
    load_config,
)

REPO = Path(__file__).resolve().parents[3]


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
