"""The shipped recipes (jobs/configs/*.yaml): each loads with its workflow's schema, every inline
`# comment` sits on a real field, and `base:` composes recipes (deep merge, the file wins, cycles
refused). Also the workflow registry's entries point at real scripts and functions."""

from __future__ import annotations

import ast
import re
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from conftest import REPO
from ringbit.config import INHERIT_KEY, ConfigError, load_config, read_yaml
from ringbit.train.config import PretrainConfig
from ringbit.tune.space import SweepConfig
from ringbit.workflows import WORKFLOWS

CONFIGS = REPO / "jobs" / "configs"
# every shipped config and the workflow that runs it (a new file must be added here)
SHIPPED = {
    "1b-gpu.yaml": "pretrain", "demo.yaml": "pretrain", "tiny.yaml": "pretrain", "ring.yaml": "pretrain",
    "bitnet-1bit.yaml": "pretrain", "bitnet-b158.yaml": "pretrain", "smollm2-fp.yaml": "pretrain",
    "smollm2-b158.yaml": "pretrain", "smollm2-continued.yaml": "pretrain",
    "sweep.yaml": "sweep", "sweep-tiny.yaml": "sweep",
    "finetune-evaluator.yaml": "finetune-evaluator", "finetune-react.yaml": "finetune-react",
    "finetune-evaluator-smollm2.yaml": "finetune-evaluator", "finetune-evaluator-smollm2-lora.yaml": "finetune-evaluator",
    "finetune-react-smollm2.yaml": "finetune-react", "finetune-react-smollm2-lora.yaml": "finetune-react",
    "agents-computer.yaml": "eval-computer", "agents-computer-smollm2.yaml": "eval-computer",
    "agents-react.yaml": "eval-react",
    "agents-memwalker.yaml": "eval-memwalker", "agents-computer-demos.yaml": "computer-demos",
    "finetune-computer-smollm2.yaml": "finetune-computer", "finetune-computer-smollm2-lora.yaml": "finetune-computer",
    "finetune-memwalker-smollm2.yaml": "finetune-memwalker",
}
NEEDS_FIREACT = ("finetune-react.yaml", "agents-react.yaml", "finetune-react-smollm2.yaml", "finetune-react-smollm2-lora.yaml")


def test_every_shipped_config_is_listed():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(SHIPPED)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_config_loads_with_its_workflow(name, monkeypatch):
    if name in NEEDS_FIREACT and not (REPO.parent / "shared" / "fireact").is_dir():
        pytest.skip("the FireAct trajectories this config names (../shared/fireact) are absent")
    monkeypatch.chdir(REPO)  # relative data paths are relative to where ringbit runs
    cfg = load_config(WORKFLOWS[SHIPPED[name]].schema, CONFIGS / name)
    assert INHERIT_KEY not in cfg.model_dump() or SHIPPED[name] == "sweep"


# ------------------------------------------------------------------------ comments name fields

_KEY = re.compile(r"^(?P<indent> *)(?P<dash>- +)?(?P<key>[A-Za-z_][\w.-]*):(?P<rest>.*)$")


def _models_in(annotation) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds (Optional[M], list[M], M | None, ...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _is_field(schema: type[BaseModel], path: tuple[str, ...]) -> bool:
    """Whether `path` names a field of `schema`; below a field that is not a model (a dict of
    anything, e.g. deepspeed.extra) nothing more can be checked. A sweep's `overrides` keys are
    dotted paths of the pretraining config."""
    if schema is SweepConfig and path[0] == "overrides" and len(path) == 2:
        return _is_field(PretrainConfig, tuple(path[1].split(".")))
    models = [schema]
    for i, key in enumerate(path):
        fields = {name: f for m in models for name, f in m.model_fields.items()}
        if key not in fields:
            return False
        models = _models_in(fields[key].annotation)
        if not models:
            return True
    return True


def commented_keys(text: str) -> list[tuple[int, tuple[str, ...]]]:
    """(line number, key path) of every `key: value  # comment` line."""
    found, stack = [], []
    for n, line in enumerate(text.splitlines(), 1):
        m = _KEY.match(line)
        if not m:
            continue
        indent = len(m["indent"]) + (len(m["dash"]) if m["dash"] else 0)
        stack = [(d, k) for d, k in stack if d < indent] + [(indent, m["key"])]
        if re.search(r"(^|\s)#", m["rest"]):
            found.append((n, tuple(k for _, k in stack)))
    return found


def wrong_comments(text: str, schema: type[BaseModel]) -> list[str]:
    inherit = INHERIT_KEY not in schema.model_fields
    return [f"line {n}: {'.'.join(path)}" for n, path in commented_keys(text)
            if not (inherit and path == (INHERIT_KEY,)) and not _is_field(schema, path)]


def test_the_comment_check_catches_a_wrong_name():
    text = "train:\n  lr: 1.0e-3      # fine\n  lrr: 1.0       # a typo\nbase: demo.yaml  # a recipe\n"
    assert commented_keys(text) == [(2, ("train", "lr")), (3, ("train", "lrr")), (4, ("base",))]
    assert wrong_comments(text, PretrainConfig) == ["line 3: train.lrr"]
    assert wrong_comments("overrides:\n  train.lrr: 1  # typo\n", SweepConfig) == ["line 2: overrides.train.lrr"]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_comments_name_real_fields(name):
    text = (CONFIGS / name).read_text()
    assert not wrong_comments(text, WORKFLOWS[SHIPPED[name]].schema), (
        f"{name}: a `# comment` sits on a key its schema does not have")


# ------------------------------------------------------------------------ base: composition


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_base_merges_deep_and_the_file_wins(tmp_path):
    _write(tmp_path, "parent.yaml", f"base: {CONFIGS / 'tiny.yaml'}\ntrain:\n  lr: 1.0e-3\n")
    child = _write(tmp_path, "sub/child.yaml", "base: ../parent.yaml\ntrain:\n  max_steps: 7\n"
                                              "mlflow:\n  registered_model: null\n")
    tiny = load_config(PretrainConfig, CONFIGS / "tiny.yaml")
    cfg = load_config(PretrainConfig, child, ["train.warmup_steps=2"])
    assert (cfg.train.lr, cfg.train.max_steps, cfg.train.warmup_steps) == (1.0e-3, 7, 2)
    assert cfg.train.micro_batch_size == tiny.train.micro_batch_size  # untouched keys inherited
    assert cfg.model == tiny.model and cfg.mlflow.registered_model is None
    assert INHERIT_KEY not in read_yaml(child)


def test_lists_and_values_replace(tmp_path):
    parent = _write(tmp_path, "a.yaml", "x: [1, 2]\ny: {a: 1, b: {c: 2}}\n")
    child = _write(tmp_path, "b.yaml", f"base: {parent.name}\nx: [3]\ny: {{b: {{d: 4}}}}\n")
    assert read_yaml(child) == {"x": [3], "y": {"a": 1, "b": {"c": 2, "d": 4}}}
    assert read_yaml(child, inherit=False)["base"] == "a.yaml"


def test_a_cycle_is_refused_naming_the_files(tmp_path):
    _write(tmp_path, "a.yaml", "base: b.yaml\n")
    _write(tmp_path, "b.yaml", "base: a.yaml\n")
    with pytest.raises(ConfigError, match=r"cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        load_config(PretrainConfig, tmp_path / "a.yaml")
    _write(tmp_path, "self.yaml", "base: self.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(PretrainConfig, tmp_path / "self.yaml")


@pytest.mark.parametrize("text, message", [
    ("base: nope.yaml\n", r"base 'nope.yaml': no file .*nope\.yaml \(the path is relative to"),
    ("base: [demo.yaml]\n", "base: expected the path of a YAML file"),
])
def test_a_bad_base_names_the_file(tmp_path, text, message):
    path = _write(tmp_path, "child.yaml", text)
    with pytest.raises(ConfigError, match=message):
        load_config(PretrainConfig, path)


def test_a_sweeps_base_stays_its_trials_config():
    """SweepConfig has a `base` field (the pretraining config of its trials): not a recipe base."""
    cfg = load_config(SweepConfig, CONFIGS / "sweep.yaml")
    assert cfg.base == "jobs/configs/demo.yaml"


def test_recipes_built_on_demo_resolve_to_demo_plus_their_changes():
    demo = load_config(PretrainConfig, CONFIGS / "demo.yaml")
    for name in ("bitnet-1bit.yaml", "bitnet-b158.yaml"):
        cfg = load_config(PretrainConfig, CONFIGS / name)
        assert cfg.model == demo.model and cfg.data == demo.data and cfg.workers == demo.workers
        assert cfg.quant is not None and cfg.train.lr == 6.0e-3
    fp, b158 = (load_config(PretrainConfig, CONFIGS / f"smollm2-{n}.yaml") for n in ("fp", "b158"))
    assert b158.data == fp.data and b158.init_from == fp.init_from
    assert b158.train.model_copy(update={"lr": fp.train.lr}) == fp.train


# ------------------------------------------------------------------------ the workflow registry


@pytest.mark.parametrize("workflow", sorted(WORKFLOWS))
def test_workflow_entries_point_at_real_code(workflow):
    """The job script exists and calls this workflow; `run` names a top-level function of a
    real module (read, not imported: the runners bring torch and Ray)."""
    wf = WORKFLOWS[workflow]
    script = REPO / wf.script
    assert script.is_file() and f'run_job_entrypoint("{workflow}"' in script.read_text()
    module, _, function = wf.run.partition(":")
    source = REPO / "platform" / Path(*module.split(".")).with_suffix(".py")
    assert source.is_file(), f"{wf.run}: no module {source}"
    names = {n.name for n in ast.parse(source.read_text()).body if isinstance(n, ast.FunctionDef)}
    assert function in names, f"{wf.run}: {source} defines no {function}()"
    assert wf.description and "\n" not in wf.description
