"""Shared fixtures. Nothing here mocks Ray, DeepSpeed or MLflow: they run for real."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import free_port  # also importable as `from conftest import free_port`

REPO = Path(__file__).resolve().parents[1]
RINGBIT = [sys.executable, "-m", "ringbit.cli"]

os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("DS_ACCELERATOR", "cpu")


def ringbit(*args: str, env: dict | None = None, timeout: float = 600, check: bool = False):
    """Run the real CLI in a subprocess, as a user would."""
    proc = subprocess.run(
        [*RINGBIT, *args], cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True,
        text=True, timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"ringbit {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    """A tiny random ringbit model folder with a BPE tokenizer trained on a built-in corpus (the
    evaluator fine-tuning tests' base, in both tiers)."""
    import torch

    from ringbit.data.corpus import builtin_documents
    from ringbit.data.tokenizer import train_tokenizer
    from ringbit.models import Transformer
    from ringbit.models.config import ModelConfig
    from ringbit.models.io import save_model_dir

    cfg = ModelConfig(vocab_size=2048, d_model=64, n_layers=2, n_heads=4, max_seq_len=64)
    torch.manual_seed(0)
    tok = train_tokenizer(builtin_documents("builtin:python-topics"), cfg.vocab_size)
    return save_model_dir(tmp_path_factory.mktemp("base"), cfg, Transformer(cfg).state_dict(), tok.to_str())


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """A tiny Llama written as a Hugging Face folder and as a GGUF file (the import tests' sources)."""
    from tiny_llama import write_gguf_from_hf, write_hf_llama

    root = tmp_path_factory.mktemp("import-sources")
    hf = write_hf_llama(root / "Tiny_Llama-HF")
    gguf_file = write_gguf_from_hf(hf, root / "tiny-llama.gguf")
    return {"root": root, "hf": hf, "gguf": gguf_file}


@pytest.fixture
def fluent_mlflow(monkeypatch):
    """MLflow's fluent API (tracing, mlflow.genai.evaluate) is process-wide state, and setting it
    also sets MLFLOW_TRACKING_URI / MLFLOW_EXPERIMENT_ID for every later test: use `mlflow` from
    this fixture, which puts all of it back afterwards (monkeypatch restores the variables)."""
    import mlflow
    import mlflow.tracking.fluent as fluent

    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID"):
        # recorded now (set, even when absent), so that monkeypatch restores it after the test
        monkeypatch.setenv(key, os.environ.get(key, ""))
        if not os.environ[key]:
            monkeypatch.delenv(key)
    yield mlflow
    mlflow.set_tracking_uri(None)
    if hasattr(fluent, "_active_experiment_id"):
        fluent._active_experiment_id = None


@pytest.fixture(scope="module")
def local_ray():
    """A private local Ray instance per test module (Ray Data, Ray Train): a fresh cluster keeps
    modules independent of what earlier ones left behind."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=True, dashboard_port=free_port(),
             log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """`ringbit up` on private ports and home (real Ray head + MLflow server), `down` after."""
    home = tmp_path_factory.mktemp("ringbit-home")
    env = {"RINGBIT_HOME": str(home), "RINGBIT_RAY_PORT": str(free_port()),
           "RINGBIT_DASHBOARD_PORT": str(free_port()), "RINGBIT_MLFLOW_PORT": str(free_port())}
    from mlflow.tracking import MlflowClient

    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    ringbit("up", env=env, timeout=300, check=True)
    url = f"http://127.0.0.1:{env['RINGBIT_MLFLOW_PORT']}"
    try:
        yield env, MlflowClient(url), url
    finally:
        down = ringbit("down", env=env, timeout=120)
        if saved:
            os.environ["MLFLOW_TRACKING_URI"] = saved
        assert down.returncode == 0, down.stderr
