"""Synthetic data -> fine-tuning job (prompt masked, Ray Train + DeepSpeed) -> the fine-tuned
model behind the evaluator -> meta-evaluation, at tiny scale, every step's run in MLflow."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import free_port, ringbit
from ringbit.models.config import ModelConfig
from ringbit.evaluator.finetune import IGNORE, to_tensors, tokenize_examples

CFG = ModelConfig(vocab_size=2048, d_model=64, n_layers=2, n_heads=4, max_seq_len=64)


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    from ringbit.data.corpus import builtin_documents
    from ringbit.data.tokenizer import train_tokenizer
    from ringbit.models import Transformer
    from ringbit.models.io import save_model_dir

    torch.manual_seed(0)
    tok = train_tokenizer(builtin_documents("builtin:python-topics"), CFG.vocab_size)
    return save_model_dir(tmp_path_factory.mktemp("base"), CFG, Transformer(CFG).state_dict(), tok.to_str())


def test_only_report_tokens_are_learned(base_model):
    from tokenizers import Tokenizer

    from ringbit.evaluator.synthetic import make_examples

    tok = Tokenizer.from_file(str(base_model / "tokenizer.json"))
    examples = make_examples(["The quick brown fox jumps over the lazy dog near the old river bank."] * 2, 3)
    rows = tokenize_examples(examples, tok, "zh-en", 1024)
    ids, labels = to_tensors(rows, pad=0)
    for i, (row, n_prompt) in enumerate(rows):
        learned = labels[i][labels[i] != IGNORE].tolist()
        assert learned == row[n_prompt:]  # the report (and EOS), nothing of the prompt
        assert (labels[i, : n_prompt - 1] == IGNORE).all()
    assert tokenize_examples(examples, tok, "zh-en", 16) == []  # too long: dropped


def test_synthetic_finetune_then_meta_evaluation(platform, base_model, tmp_path):
    env, client, url = platform
    env = {**env, "MLFLOW_TRACKING_URI": url}
    proc = ringbit("submit", "finetune-evaluator", "-c", "jobs/configs/finetune-evaluator.yaml",
                   "--name", "t-sft", "--set", f"base_model={base_model}", "--set", "max_seq_len=640",
                   "--set", "data.corpus=builtin:python-topics", "--set", "data.n_train=48",
                   "--set", "data.n_val=8", "--set", "train.max_steps=12", "--set", "train.eval_interval=6",
                   "--set", "train.checkpoint_interval=12", "--set", "train.global_batch_size=8",
                   "--set", "train.micro_batch_size=4", "--set", "train.warmup_steps=2",
                   "--set", "train.lr=3e-3", "--set", "mlflow.experiment=ringbit-tests",
                   "--set", "mlflow.registered_model=tiny-instructscore", env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    exp = client.get_experiment_by_name("ringbit-tests")
    run = client.search_runs([exp.experiment_id], "tags.`ringbit.job_name` = 't-sft'")[0]
    assert run.info.status == "FINISHED"
    ppl = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val_ppl"))
    assert [s for s, _ in ppl] == [6, 12] and ppl[1][1] < ppl[0][1], ppl
    assert client.get_model_version_by_alias("tiny-instructscore", "current").run_id == run.info.run_id

    port = free_port()
    config = tmp_path / "serve.yaml"
    config.write_text(
        "applications:\n"
        "  - name: lm\n    route_prefix: /\n    import_path: serving.lm:app\n"
        "    args: {model: 'models:/tiny-instructscore@current'}\n"
        "  - name: evaluator\n    route_prefix: /v1/evaluate\n    import_path: serving.evaluator:app\n"
        # a 640-token model: inputs up to 400 characters fit with 32 new tokens (checked at deploy)
        "    args: {llm_app: lm, max_new_tokens: 32, max_items: 4, max_input_chars: 400}\n")
    up = ringbit("serve", "up", "--config", str(config), "--port", str(port), env=env, timeout=300)
    assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
    try:
        heldout = tmp_path / "heldout.jsonl"
        ringbit("evaluator", "synth", "--out", str(heldout), "--n", "6", "--seed", "7",
                "--corpus", "builtin:python-topics", env=env, check=True)
        meta = ringbit("evaluator", "meta-eval", "--data", str(heldout), "--evaluator-url",
                       f"http://127.0.0.1:{port}", "--batch", "3", "--experiment", "ringbit-tests",
                       "--json", env=env, timeout=600)
        assert meta.returncode == 0, meta.stdout[-2000:] + meta.stderr[-2000:]
        result = json.loads(meta.stdout.strip().splitlines()[-1])
        assert result["n"] == 6
        assert {"kendall_tau", "pearson"} <= set(client.get_run(result["mlflow_run"]).data.metrics)
    finally:
        ringbit("serve", "down", env=env, timeout=120)
