"""Every training workflow from a pretrained model, on a tiny imported Llama (tests/tiny_llama.py:
random weights written as a Hugging Face folder, imported like SmolLM2): continued pretraining
(`init_from`) from a registered model with ZeRO-3, ring sequence parallelism together with BitNet
b1.58 from the pretrained weights, SFT (full and LoRA) from the imported model. Real Ray Train +
DeepSpeed (CPU, gloo) + MLflow on a private platform; nothing is mocked.

The config rules and the SFT rows' eos (no Ray) are in tests/unit/test_train_init_from_config.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from conftest import REPO, ringbit
from ringbit.agents.react.config import ReactFinetuneConfig
from ringbit.config import load_config, validate
from ringbit.train.config import PretrainConfig
from ringbit.tune.space import SweepConfig

FIREACT = REPO.parent / "shared" / "fireact" / "hotpotqa_alpaca.json"
IM_END, ENDOFTEXT = 2, 0  # ids in the tiny tokenizer (tests/tiny_llama.py SPECIAL)


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    from tiny_llama import write_hf_llama

    from ringbit.models.convert import read_source, write_imported

    hf = write_hf_llama(tmp_path_factory.mktemp("hf"), tie=True)
    return write_imported(read_source(hf), tmp_path_factory.mktemp("imported") / "tiny")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """~150 KB of the built-in Python topics: a few hundred 64-token rows, prepared in seconds."""
    from ringbit.data.corpus import topic_documents

    path = tmp_path_factory.mktemp("corpus") / "topics.txt"
    path.write_text("\n\n".join(topic_documents()[:70]))
    return path


def tiny_job(tiny_base: Path | str, corpus: Path, cache: Path, *overrides: str) -> list[str]:
    """Overrides of jobs/configs/smollm2-fp.yaml for the tiny model: 6 steps of 8 x 64 tokens."""
    return [f"init_from={tiny_base}", f"data.corpus={corpus}", "data.seq_len=64", f"data.cache_dir={cache}",
            "train.max_steps=6", "train.micro_batch_size=4", "train.global_batch_size=8", "train.lr=3e-3",
            "train.warmup_steps=1", "train.eval_interval=6", "train.checkpoint_interval=6",
            "train.eval_batches=null", "workers.cpus_per_worker=0.5", "workers.max_failures=0",
            "mlflow.experiment=ringbit-tests", "mlflow.registered_model=null", *overrides]


def job(*args, **kwargs) -> PretrainConfig:
    return load_config(PretrainConfig, REPO / "jobs/configs/smollm2-fp.yaml", tiny_job(*args, **kwargs))


@pytest.fixture(scope="module")
def data_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data-cache")


def base_val_ppl(base: Path, data_dir: Path, quant=None) -> float:
    """The base model's perplexity on the job's whole validation split, computed here directly."""
    from safetensors.torch import load_model

    from ringbit.data.loader import eval_batches
    from ringbit.data.prepare import load_split
    from ringbit.models import Transformer
    from ringbit.models.io import read_model_meta
    from ringbit.train.perplexity import nll_sums, perplexity

    cfg, _, _ = read_model_meta(base)
    model = Transformer(cfg, quant=quant)
    load_model(model, str(base / "model.safetensors"))
    model.eval()
    return perplexity(*nll_sums(model, eval_batches(load_split(data_dir, "val"), 0, 1, 16)))[1]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


# ---------------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def platform_env(platform):
    """The private platform for in-process drivers (run_pretrain / run_sft) and the CLI."""
    env, client, url = platform
    saved = {k: os.environ.get(k) for k in ("RINGBIT_HOME", "RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    address = f"127.0.0.1:{env['RINGBIT_RAY_PORT']}"
    os.environ.update({"RINGBIT_HOME": env["RINGBIT_HOME"], "MLFLOW_TRACKING_URI": url, "RAY_ADDRESS": address})
    import ray

    # Ray Train's actors (its placement-group cleaner) must find this cluster too, as a job's do
    ray.init(address=address, log_to_driver=False,
             runtime_env={"env_vars": {"RAY_ADDRESS": address, "RAY_AUTH_MODE": "token"}})
    try:
        yield {**env, "MLFLOW_TRACKING_URI": url}, client, url
    finally:
        import ray

        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def val_history(client, run_id: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, "val_ppl"))


def test_continued_pretraining_from_a_registered_model_with_zero3_starts_at_the_base(platform_env, tiny_base, corpus, data_cache):
    from ringbit import tracking

    env, client, url = platform_env
    exp = tracking.experiment_id(client, "ringbit-tests")
    # not registered yet: refused at submit (exit 2, what to run), not minutes later in the job
    early = ringbit("submit", "pretrain", "-c", "jobs/configs/smollm2-fp.yaml", "--set",
                    "init_from=models:/tiny-llama@base", "--name", "t-unregistered", env=env, timeout=120)
    assert early.returncode == 2, early.stdout + early.stderr
    assert "init_from: models:/tiny-llama@base, which is not registered in MLflow" in early.stderr
    assert "ringbit models import SOURCE --name tiny-llama" in early.stderr
    assert "submitted" not in early.stdout and "Traceback" not in early.stderr
    run = client.create_run(exp, run_name="import-tiny")
    assert tracking.log_and_register_model(url, run.info.run_id, tiny_base, "tiny-llama", "base") == \
        "models:/tiny-llama@base"
    overrides = tiny_job("models:/tiny-llama@base", corpus, data_cache, "mlflow.registered_model=tiny-continued",
                         "deepspeed.zero_stage=3")
    sets = [arg for o in overrides for arg in ("--set", o)]
    proc = ringbit("submit", "pretrain", "-c", "jobs/configs/smollm2-fp.yaml", *sets, "--name", "t-continued",
                   env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    found = client.search_runs([exp], "tags.`ringbit.job_name` = 't-continued'")[0]
    params, tags = found.data.params, found.data.tags
    assert tags["ringbit.init_from"] == "models:/tiny-llama@base" and params["model.n_layers"] == "2"
    data_dir = Path(params["derived.data_dir"])
    assert (data_dir / "tokenizer.json").read_text() == (tiny_base / "tokenizer.json").read_text()
    ppl = val_history(client, found.info.run_id)
    assert [s for s, _ in ppl] == [0, 6]
    assert ppl[0][1] == pytest.approx(base_val_ppl(tiny_base, data_dir), rel=1e-4)
    assert ppl[1][1] < ppl[0][1]  # it trained from there

    model = tracking.resolve_model_ref("models:/tiny-continued@current", url)
    assert json.loads((model / "tokenizer_config.json").read_text()) == \
        json.loads((tiny_base / "tokenizer_config.json").read_text())
    before, after = weights(tiny_base), weights(model)
    assert before.keys() == after.keys() and not all(torch.equal(before[k], after[k]) for k in before)


def test_ring_attention_and_bitnet_b158_continue_from_the_base_weights(platform_env, tiny_base, corpus, data_cache):
    """One job, both: 128-token sequences split over 2 workers (ring, zigzag) and every projection
    a b1.58 BitLinear loaded from the FP weights (same parameter names)."""
    from ringbit.models.io import read_model_meta
    from ringbit.tracking import resolve_model_ref
    from ringbit.train.pretrain import run_pretrain

    env, client, url = platform_env
    cfg = job(tiny_base, corpus, data_cache, "name=t-ring-b158", "parallel.sequence_parallel=2",
              "parallel.strategy=ring", "parallel.block_size=32", "data.seq_len=128", "train.global_batch_size=4",
              "quant.weight_bits=1.58", "train.lr=1e-2")
    assert cfg.data_parallel == 1 and cfg.quant.weight_bits == 1.58
    summary = run_pretrain(cfg, log=lambda m: None)
    found = client.get_run(summary["run_id"])
    data_dir = Path(found.data.params["derived.data_dir"])
    ppl = val_history(client, summary["run_id"])
    assert [s for s, _ in ppl] == [0, 6]
    # the first evaluation is the pretrained model itself, quantized to b1.58 (computed here
    # without sequence parallelism: ring attention is exact)
    assert ppl[0][1] == pytest.approx(base_val_ppl(tiny_base, data_dir, cfg.quant), rel=1e-4)
    assert ppl[1][1] < ppl[0][1]
    model_dir = resolve_model_ref(summary["run_id"], url)
    _, quant, _ = read_model_meta(model_dir)
    assert quant.weight_bits == 1.58
    assert (model_dir / "tokenizer_config.json").is_file()


def test_sweep_trials_continue_from_the_base(platform_env, tiny_base, corpus, data_cache, tmp_path):
    from ringbit.config import parse_override
    from ringbit.quant.config import QuantConfig
    from ringbit.data.prepare import prepare
    from ringbit.tune.sweep import run_sweep

    env, client, url = platform_env
    overrides = {".".join(key): value for key, value in map(parse_override, tiny_job(
        tiny_base, corpus, data_cache, "train.max_steps=4", "train.eval_interval=4", "train.checkpoint_interval=4"))}
    del overrides["workers.cpus_per_worker"]  # the sweep's cpus_per_worker (0.49) applies
    sweep = validate(SweepConfig, {"name": "t-sweep-init", "base": "jobs/configs/smollm2-fp.yaml", "overrides": overrides,
                                   "space": {"seq_len": [64], "weight_bits": [16]}, "asha": {"enabled": False},
                                   "storage_path": str(tmp_path), "mlflow": {"experiment": "ringbit-tests"}})
    result = run_sweep(sweep, log=lambda m: None)
    assert [r["status"] for r in result["rows"]] == ["finished"]
    child = client.search_runs([tracking_experiment(client)], f"tags.`mlflow.parentRunId` = '{result['parent_run_id']}'")[0]
    assert child.data.params["init_from"] == str(tiny_base) and child.data.params["model.n_layers"] == "2"
    ppl = val_history(client, child.info.run_id)
    assert [s for s, _ in ppl] == [0, 4]
    cfg = job(tiny_base, corpus, data_cache)
    data_dir = prepare(cfg.data, cfg.model.vocab_size, data_cache, log=lambda m: None, tokenizer_dir=tiny_base)
    assert ppl[0][1] == pytest.approx(base_val_ppl(tiny_base, data_dir, QuantConfig(weight_bits=16)), rel=1e-4)


def tracking_experiment(client) -> str:
    return client.get_experiment_by_name("ringbit-tests").experiment_id


@pytest.mark.skipif(not FIREACT.is_file(), reason=f"FireAct trajectories not found at {FIREACT} "
                    "(../shared/fireact next to the repository)")
@pytest.mark.parametrize("lora", [False, True])
def test_sft_full_and_lora_from_the_imported_model(lora, platform_env, tiny_base, tmp_path):
    from ringbit.agents.react.finetune import run_react_finetune
    from ringbit.models.io import read_prompt_format
    from ringbit.tracking import resolve_model_ref
    from ringbit.train.sft import IGNORE

    env, client, url = platform_env
    cfg = validate(ReactFinetuneConfig, {
        "name": f"t-sft-{'lora' if lora else 'full'}", "base_model": str(tiny_base), "max_seq_len": 1536,
        "data": {"trajectories": str(FIREACT), "n_val": 4, "max_train": 16},
        "train": {"max_steps": 4, "micro_batch_size": 2, "global_batch_size": 4, "lr": 3e-3,
                  "warmup_steps": 1, "eval_interval": 4, "checkpoint_interval": 4, "eval_at_start": True},
        "lora": {"r": 4, "alpha": 8} if lora else None,
        "workers": {"cpus_per_worker": 0.5, "max_failures": 0},
        "mlflow": {"experiment": "ringbit-tests", "registered_model": None}})
    result = run_react_finetune(cfg, log=lambda m: None)
    run = client.get_run(result["run_id"])
    data = torch.load(run.data.params["derived.data_path"])
    for labels in data["train_labels"]:
        assert labels[labels != IGNORE][-1].item() == IM_END
    ppl = val_history(client, result["run_id"])
    assert [s for s, _ in ppl] == [0, 4] and ppl[1][1] < ppl[0][1]
    model_dir = resolve_model_ref(result["run_id"], url)
    assert json.loads((model_dir / "tokenizer_config.json").read_text())["eos_token"] == "<|im_end|>"
    # trained on bare prompts: served through completions although it keeps the chat template
    assert (read_prompt_format(tiny_base), read_prompt_format(model_dir)) == ("chat", "plain")
    before, after = weights(tiny_base), weights(model_dir)
    assert not all(torch.equal(before[k], after[k]) for k in before)
