"""Sweep configs: the grid, per-trial configs, and bad search spaces as config errors."""

from __future__ import annotations

import pytest

from conftest import ringbit
from ringbit.config import ConfigError, load_config
from ringbit.tune.space import SweepConfig
from ringbit.tune.space import base_config, grid, trial_config
from ringbit.tune.sweep import SweepError, concurrency

TINY = "jobs/configs/sweep-tiny.yaml"


def sweep(*overrides: str) -> SweepConfig:
    return load_config(SweepConfig, TINY, list(overrides))


def test_grid_is_every_combination_with_equal_tokens_per_step():
    cfg = sweep("space.lr=[1e-3, 3e-3]")
    trials = grid(cfg)
    assert len(trials) == 2 * 2 * 2
    base = base_config(cfg)
    for params in trials:
        t = trial_config(base, cfg, params, "t")
        assert t.data.seq_len == params["seq_len"] and t.quant.weight_bits == params["weight_bits"]
        assert t.train.lr == params["lr"]
        assert t.train.global_batch_size * t.data.seq_len == cfg.tokens_per_step  # equal tokens
        assert t.model.max_seq_len >= t.data.seq_len
        assert t.mlflow.registered_model is None and t.train.max_steps == 20


def test_long_contexts_use_ring_attention_over_the_trial_workers():
    cfg = sweep("space.seq_len=[32, 128]", "ring_above=64", "tokens_per_step=1024")
    base = base_config(cfg)
    short, long = (trial_config(base, cfg, {"seq_len": n, "weight_bits": 1}, "t") for n in (32, 128))
    assert short.parallel.sequence_parallel == 1
    assert long.parallel.sequence_parallel == 2 and long.parallel.strategy == "ring"


@pytest.mark.parametrize("override, message", [
    ("space.weight_bits=[1, 3]", "space.weight_bits: unsupported bit width(s) 3"),
    ("space.seq_len=[]", "space.seq_len: empty grid"),
    ("space.weight_bits=[]", "space.weight_bits: empty grid"),
    ("space.extra={'train.warmup_steps': []}", "train.warmup_steps: empty grid"),
    ("tokens_per_step=1000", "tokens_per_step (1000) must divide by every space.seq_len"),
    ("space.extra={'train.lrr': [1]}", "train.lrr"),
])
def test_bad_search_spaces_are_config_errors(override, message):
    with pytest.raises(ConfigError) as err:
        sweep(override)
    assert message in str(err.value)


def test_context_not_divisible_by_the_sequence_parallel_layout_is_a_config_error():
    # 2 workers x 2 zigzag chunks: 30 tokens cannot be split
    with pytest.raises(ConfigError, match="space.seq_len: 30 does not divide into the 4 chunks"):
        sweep("space.seq_len=[30, 64]", "tokens_per_step=null",
              "overrides={'parallel.sequence_parallel': 2, 'train.max_steps': 20}")


def test_cli_rejects_a_bad_space_before_anything_starts():
    proc = ringbit("sweep", "--config", TINY, "--set", "space.weight_bits=[1, 3]", "--dry-run")
    assert proc.returncode == 2
    assert "space.weight_bits" in proc.stderr and "Traceback" not in proc.stderr
    ok = ringbit("sweep", "--config", TINY, "--dry-run", check=True)
    assert "seq_len:" in ok.stdout


def test_concurrency_follows_free_resources():
    cfg = sweep()
    assert concurrency(cfg, workers=2, use_gpu=False, free={"CPU": 2.0}) == 2
    assert concurrency(cfg.model_copy(update={"max_concurrent_trials": 1}), 2, False, {"CPU": 2.0}) == 1
    assert concurrency(cfg, workers=2, use_gpu=True, free={"CPU": 8.0, "GPU": 2.0}) == 1
    with pytest.raises(SweepError, match="cpus_per_worker"):
        concurrency(cfg, workers=4, use_gpu=False, free={"CPU": 1.0})


def test_extra_keys_and_nested_overrides_reach_the_trial_config():
    cfg = sweep("space.extra={'train.schedule': ['cosine', 'linear'], 'train.eval_batches': [null]}",
                "overrides.train.max_steps=12")
    base = base_config(cfg)
    assert base.train.max_steps == 12 and base.train.eval_interval == 5  # YAML's dotted keys kept
    configs = [trial_config(base, cfg, p, "t") for p in grid(cfg)]
    assert {c.train.schedule for c in configs} == {"cosine", "linear"}
    assert all(c.train.eval_batches is None for c in configs)
