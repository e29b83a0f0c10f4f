import pytest

from conftest import REPO, ringbit
from ringbit.config import ConfigError, flatten, load_config
from ringbit.train.config import PretrainConfig
from ringbit.tune.space import SweepConfig

CONFIGS = sorted(p for p in (REPO / "jobs" / "configs").glob("*.yaml")
                 if not p.name.startswith(("sweep", "finetune", "agents")))
SWEEPS = sorted((REPO / "jobs" / "configs").glob("sweep*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    cfg = load_config(PretrainConfig, path)
    assert cfg.train.global_batch_size % (cfg.train.micro_batch_size * cfg.workers.num_workers) == 0


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_shipped_sweep_configs_are_valid(path):
    cfg = load_config(SweepConfig, path)  # validates every trial of the grid too
    assert cfg.space.seq_len and cfg.space.weight_bits


def test_shipped_finetune_config_is_valid():
    from ringbit.evaluator.config import FinetuneConfig

    cfg = load_config(FinetuneConfig, REPO / "jobs/configs/finetune-evaluator.yaml")
    assert cfg.mlflow.registered_model == "ringbit-instructscore" and cfg.max_seq_len >= 256


AGENT_CONFIGS = {"agents-computer.yaml": "eval-computer", "agents-computer-demos.yaml": "computer-demos",
                 "agents-react.yaml": "eval-react",
                 "agents-memwalker.yaml": "eval-memwalker", "finetune-react.yaml": "finetune-react"}


@pytest.mark.parametrize("name", sorted(AGENT_CONFIGS))
def test_shipped_agent_configs_are_valid(name, monkeypatch):
    from ringbit.workflows import WORKFLOWS

    if "react" in name and not (REPO.parent / "shared" / "fireact").is_dir():
        pytest.skip("the FireAct trajectories these configs name (../shared/fireact) are absent")
    monkeypatch.chdir(REPO)  # their relative data paths are relative to the repository
    cfg = load_config(WORKFLOWS[AGENT_CONFIGS[name]].schema, REPO / "jobs" / "configs" / name)
    assert cfg.mlflow.experiment == "ringbit-agents"


def test_override_opens_an_empty_optional_section(monkeypatch):
    from ringbit.workflows import WORKFLOWS

    monkeypatch.chdir(REPO)  # the config's data path is relative to the repository
    if not (REPO.parent / "shared" / "fireact").is_dir():
        pytest.skip("finetune-react.yaml names ../shared/fireact, which is absent")
    schema = WORKFLOWS["finetune-react"].schema
    path = REPO / "jobs" / "configs" / "finetune-react.yaml"
    assert load_config(schema, path).lora is None  # `lora: null` in the file
    cfg = load_config(schema, path, ["lora.r=8", "lora.alpha=16"])
    assert (cfg.lora.r, cfg.lora.alpha) == (8, 16.0)
    with pytest.raises(ConfigError, match="max_seq_len is a value"):
        load_config(schema, path, ["max_seq_len.x=1"])


def test_dotted_override_is_typed():
    cfg = load_config(PretrainConfig, REPO / "jobs/configs/tiny.yaml",
                      ["train.lr=3e-4", "deepspeed.zero_stage=3", "model.tie_embeddings=false"])
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.deepspeed.zero_stage == 3
    assert cfg.model.tie_embeddings is False


@pytest.mark.parametrize(
    "override, must_name",
    [
        ("train.lrr=1", "train.lrr: unknown key; allowed here:"),  # typo
        ("bogus.x=1", "bogus: unknown key"),
        ("train.lr=fast", "train.lr"),  # wrong type
        ("deepspeed.zero_stage=4", "deepspeed.zero_stage"),  # not an allowed value
        ("train.global_batch_size=12", "train.global_batch_size (12) must be a multiple of"),
        ("model.n_heads=3", "d_model (64) must be divisible by n_heads (3)"),
        ("parallel.sequence_parallel=4", "workers.num_workers (2) must be a multiple of parallel.sequence_parallel (4)"),
        ("parallel.layout=diagonal", "parallel.layout"),
        ("data.seq_len=1000", "data.seq_len (1000, padded to 1000 for the zigzag layout over 1 workers) exceeds model.max_seq_len"),
    ],
)
def test_bad_values_name_the_field(override, must_name):
    with pytest.raises(ConfigError) as info:
        load_config(PretrainConfig, REPO / "jobs/configs/tiny.yaml", [override])
    assert must_name in str(info.value)


@pytest.mark.parametrize(
    "overrides, must_name",
    [
        (["parallel.sequence_parallel=2", "parallel.strategy=ulysses", "model.n_heads=1"],
         "model.n_heads (1) must divide by parallel.sequence_parallel (2)"),
        (["workers.num_workers=4", "parallel.sequence_parallel=4", "parallel.strategy=hybrid",
          "parallel.ulysses_size=3", "train.global_batch_size=4"], "parallel.ulysses_size (3) must divide"),
        (["parallel.sequence_parallel=2", "data.seq_len=63", "model.max_seq_len=63"],
         "data.seq_len (63, padded to 64 for the zigzag layout over 2 workers) exceeds model.max_seq_len (63)"),
    ],
)
def test_bad_sequence_parallel_combinations(overrides, must_name):
    with pytest.raises(ConfigError) as info:
        load_config(PretrainConfig, REPO / "jobs/configs/tiny.yaml", overrides)
    assert must_name in str(info.value)


def test_sequence_parallel_derives_data_parallel_and_accumulation():
    cfg = load_config(PretrainConfig, REPO / "jobs/configs/tiny.yaml",
                      ["workers.num_workers=2", "parallel.sequence_parallel=2"])
    assert cfg.data_parallel == 1 and cfg.grad_accum_steps == 2


def test_allowed_values_are_listed():
    with pytest.raises(ConfigError) as info:
        load_config(PretrainConfig, None, ["deepspeed.zero_stage=4"])
    assert "0, 1, 2 or 3" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_config(PretrainConfig, None, ["train.lrr=1"])
    assert "lr," in str(info.value) and "max_steps" in str(info.value)


def test_missing_file_and_bad_override_syntax():
    with pytest.raises(ConfigError, match="not found"):
        load_config(PretrainConfig, "jobs/configs/nope.yaml")
    with pytest.raises(ConfigError, match="KEY.PATH=VALUE"):
        load_config(PretrainConfig, None, ["train.lr"])


def test_flatten_gives_dotted_params():
    flat = flatten(PretrainConfig().model_dump(mode="json"))
    assert flat["train.lr"] == PretrainConfig().train.lr
    assert "deepspeed.zero_stage" in flat


@pytest.mark.parametrize(
    "args",
    [
        ["submit", "pretrain", "--config", "jobs/configs/tiny.yaml", "--set", "train.bogus=1", "--dry-run"],
        ["submit", "pretrain", "--config", "jobs/configs/tiny.yaml", "--set", "workers.num_workers=3", "--dry-run"],
        ["submit", "pretrain", "--config", "jobs/configs/missing.yaml", "--dry-run"],
        ["submit", "nosuchjob", "--config", "jobs/configs/tiny.yaml", "--dry-run"],
    ],
)
def test_cli_config_errors_exit_2_without_traceback(args):
    proc = ringbit(*args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "error:" in proc.stderr


def test_cli_error_names_field_path():
    proc = ringbit("submit", "pretrain", "--config", "jobs/configs/tiny.yaml", "--set", "train.bogus=1", "--dry-run")
    assert "train.bogus: unknown key" in proc.stderr


def test_job_entrypoint_rejects_bad_config_with_exit_2():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "jobs/pretrain.py", "--config", "jobs/configs/tiny.yaml",
                           "--set", "train.global_batch_size=7"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "train.global_batch_size (7)" in proc.stderr and "Traceback" not in proc.stderr


def test_dry_run_prints_resolved_config():
    proc = ringbit("submit", "pretrain", "--config", "jobs/configs/tiny.yaml", "--set", "train.lr=0.01",
                   "--name", "dry", "--dry-run", check=True)
    import yaml

    resolved = yaml.safe_load(proc.stdout)
    assert resolved["train"]["lr"] == 0.01 and resolved["name"] == "dry"
    assert resolved["deepspeed"]["zero_stage"] == 2


def test_submit_without_a_platform_says_to_start_it():
    from helpers import free_port

    proc = ringbit("--dashboard-port", str(free_port()), "submit", "pretrain", "--config", "jobs/configs/tiny.yaml")
    assert proc.returncode == 1
    assert "ringbit up" in proc.stderr and "Traceback" not in proc.stderr
