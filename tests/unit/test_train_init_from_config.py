"""Training from a pretrained model, the parts that need no cluster: the config rules (architecture
from the base, conflicts named, registry refs resolved by the driver, sweeps pass init_from on, the
shipped job configs) and SFT completions ending with the model's own eos, on the tiny imported Llama
of tests/tiny_llama.py.

Moved from tests/integration/test_train_init_from.py (the training runs stay there)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from conftest import REPO, ringbit
from ringbit.agents.react.config import ReactFinetuneConfig
from ringbit.config import ConfigError, load_config, validate
from ringbit.train.config import PretrainConfig, with_base_model
from ringbit.tune.space import SweepConfig

IM_END, ENDOFTEXT = 2, 0  # ids in the tiny tokenizer (tests/tiny_llama.py SPECIAL)


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    from tiny_llama import write_hf_llama

    from ringbit.models.convert import read_source, write_imported

    hf = write_hf_llama(tmp_path_factory.mktemp("hf"), tie=True)
    return write_imported(read_source(hf), tmp_path_factory.mktemp("imported") / "tiny")


def smollm2_like(tmp_path: Path, quant=None, packing=None) -> Path:
    """A folder with only SmolLM2-135M's config.json: validation reads json, never weights."""
    folder = tmp_path / "smollm2-config"
    folder.mkdir(exist_ok=True)
    model = {"vocab_size": 49152, "d_model": 576, "n_layers": 30, "n_heads": 9, "n_kv_heads": 3,
             "ffn_hidden": 1536, "max_seq_len": 8192, "rope_theta": 100000.0, "norm_eps": 1e-5,
             "tie_embeddings": True}
    (folder / "config.json").write_text(json.dumps({"model": model, "quant": quant, "packing": packing}))
    return folder


def errors(data: dict, **context) -> str:
    with pytest.raises(ConfigError) as info:
        validate(PretrainConfig, data, **context)
    return str(info.value)


def test_config_takes_the_architecture_from_the_base_and_names_conflicts(tmp_path):
    base = smollm2_like(tmp_path)
    cfg = validate(PretrainConfig, {"init_from": str(base), "data": {"seq_len": 4096},
                                    "parallel": {"sequence_parallel": 2}})
    assert (cfg.model.n_layers, cfg.model.d_model, cfg.model.n_heads, cfg.model.kv_heads) == (30, 576, 9, 3)
    assert cfg.model.max_seq_len == 8192 and cfg.quant is None and not cfg.architecture_pending
    # max_seq_len may change; fields equal to the base's are accepted (a resolved config round-trips)
    longer = validate(PretrainConfig, {"init_from": str(base), "model": {"max_seq_len": 16384, "n_layers": 30},
                                       "data": {"seq_len": 12000}})
    assert longer.model.max_seq_len == 16384
    assert validate(PretrainConfig, cfg.model_dump(mode="json")) == cfg
    # a relative folder means relative to where ringbit ran; jobs get it absolute
    os.environ["RINGBIT_SUBMIT_CWD"] = str(tmp_path)
    try:
        assert validate(PretrainConfig, {"init_from": base.name}).init_from == str(base.resolve())
    finally:
        del os.environ["RINGBIT_SUBMIT_CWD"]

    msg = errors({"init_from": str(base), "model": {"n_layers": 12, "d_model": 512, "max_seq_len": 4096}})
    lines = msg.splitlines()
    assert lines[0].startswith("model.n_layers: 12 conflicts with the base model's 30") and "remove model.n_layers" in lines[0]
    assert lines[1].startswith("model.d_model: 512 conflicts with the base model's 576")
    assert "only model.max_seq_len may be set" in msg
    assert "model.n_layerz: unknown key" in errors({"init_from": str(base), "model": {"n_layerz": 3}})
    assert errors({"init_from": str(tmp_path / "nope")}).startswith("init_from: ")
    assert "exceeds model.max_seq_len (8192, from init_from" in errors({"init_from": str(base), "data": {"seq_len": 9000}})
    # Ulysses scatters heads: SmolLM2's 9 query heads need a divisor of 9; hybrid with 3 works
    msg = errors({"init_from": str(base), "parallel": {"sequence_parallel": 2, "strategy": "ulysses"}})
    assert "model.n_heads (9, from init_from" in msg and "use strategy ring" in msg
    hybrid = validate(PretrainConfig, {"init_from": str(base), "workers": {"num_workers": 6},
                                       "train": {"global_batch_size": 8, "micro_batch_size": 8},
                                       "parallel": {"sequence_parallel": 6, "strategy": "hybrid", "ulysses_size": 3}})
    assert hybrid.parallel.ulysses_size == 3
    assert "quant.groups (5) must divide" in errors({"init_from": str(base), "quant": {"groups": 5}})
    # a BitNet base stays BitNet unless the config says otherwise; packed exports cannot train
    bitnet = smollm2_like(tmp_path, quant={"weight_bits": 1.58})
    assert validate(PretrainConfig, {"init_from": str(bitnet)}).quant.weight_bits == 1.58
    assert validate(PretrainConfig, {"init_from": str(bitnet), "quant": None}).quant is None
    packed = smollm2_like(tmp_path, quant={"weight_bits": 1.58}, packing={"format": "i2"})
    assert "packed BitNet export" in errors({"init_from": str(packed)})


def test_registry_refs_are_checked_by_the_driver_and_sweeps_pass_init_from_on(tmp_path):
    from ringbit.tune.space import trial_config

    base = smollm2_like(tmp_path)
    ref = "models:/smollm2-135m-instruct@base"
    # validation does not download: the architecture checks wait for the driver ...
    cfg = validate(PretrainConfig, {"init_from": ref, "model": {"n_heads": 8}, "data": {"seq_len": 4096}})
    assert cfg.architecture_pending
    with pytest.raises(ConfigError, match=r"model.n_heads: 8 conflicts with the base model's 9"):
        with_base_model(cfg, base)
    cfg = validate(PretrainConfig, {"init_from": ref, "data": {"seq_len": 4096}, "quant": {"weight_bits": 1}})
    resolved = with_base_model(cfg, base)
    assert resolved.init_from == ref and resolved.model.n_layers == 30 and resolved.quant.weight_bits == 1
    # ... and workers re-validate the resolved dump without downloading anything
    assert PretrainConfig.model_validate(resolved.model_dump(mode="json")) == resolved
    # sweeps: every trial keeps init_from and the base's architecture
    sweep = SweepConfig.model_validate({"base": "jobs/configs/smollm2-fp.yaml",
                                        "space": {"seq_len": [512, 1024], "weight_bits": [1.58, 16]}},
                                       context={"base": resolved})
    trial = trial_config(resolved, sweep, {"seq_len": 512, "weight_bits": 1.58}, "t")
    assert trial.init_from == ref and trial.model.n_layers == 30 and trial.quant.weight_bits == 1.58


def test_job_configs_validate_and_the_cli_names_the_conflict(tmp_path):
    for name in ("smollm2-continued", "smollm2-b158", "smollm2-fp"):
        cfg = load_config(PretrainConfig, REPO / f"jobs/configs/{name}.yaml")
        assert cfg.init_from == "models:/smollm2-135m-instruct@base" and cfg.train.micro_batch_size == 1
        assert with_base_model(cfg, smollm2_like(tmp_path)).model.n_layers == 30
    ring = load_config(PretrainConfig, REPO / "jobs/configs/smollm2-continued.yaml")
    assert (ring.parallel.sequence_parallel, ring.parallel.strategy, ring.data.seq_len) == (2, "ring", 4096)
    fp, b158 = (load_config(PretrainConfig, REPO / f"jobs/configs/smollm2-{n}.yaml") for n in ("fp", "b158"))
    assert fp.data == b158.data and fp.train.max_steps == b158.train.max_steps
    assert fp.quant is None and b158.quant.weight_bits == 1.58
    proc = ringbit("submit", "pretrain", "-c", "jobs/configs/smollm2-fp.yaml", "--dry-run",
                   "--set", f"init_from={smollm2_like(tmp_path)}", "--set", "model.n_layers=4")
    assert proc.returncode == 2 and "model.n_layers: 4 conflicts with the base model's 30" in proc.stderr


def test_sft_completions_end_with_the_models_own_eos(tiny_base, tmp_path):
    from ringbit.train.sft import IGNORE, prepare_pairs

    trajectories = tmp_path / "trajectories.json"  # only has to exist: the pairs are given below
    trajectories.write_text("[]")
    cfg = ReactFinetuneConfig.model_validate({"base_model": str(tiny_base), "max_seq_len": 256,
                                              "data": {"trajectories": str(trajectories)}})
    pairs = [("Question: what?\n", "Thought: nothing.\nAction: finish[x]"), ("Q2\n", "A2")]
    data = torch.load(prepare_pairs("t", cfg, tiny_base, tmp_path, lambda: (pairs, pairs[:1]), log=lambda m: None))
    for labels in data["train_labels"]:
        learned = labels[labels != IGNORE].tolist()
        assert learned[-1] == IM_END and ENDOFTEXT not in learned
