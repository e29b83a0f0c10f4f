"""The config machinery every component's config uses: YAML in jobs/configs/, dotted `--set`
overrides, errors that name the field.

Every job is a pydantic model built from `StrictModel`. `load_config` merges the YAML file (and
the recipe it starts from, `base: demo.yaml`) with overrides and validates everything before a job
starts; a `ConfigError` carries one line per problem ("train.lr: ..."). The schemas live beside
the code they configure (torchtitan / litgpt style): ringbit.models.config (ModelConfig),
ringbit.quant.config (QuantConfig), ringbit.parallel.config (ParallelConfig), ringbit.data.config
(DataConfig), ringbit.train.config (TrainConfig, PretrainConfig, SFTConfig, ...),
ringbit.evaluator.config, ringbit.agents.config and the agents' own config modules,
ringbit.tune.space (SweepConfig); ringbit.workflows maps each workflow to its schema. This module
imports nothing from ringbit, so model code can use it without pulling in the job schemas.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError


class ConfigError(ValueError):
    """A config the user must fix; the message names each field and what it accepts."""


class StrictModel(BaseModel):
    """Unknown keys are errors (a typo must not silently fall back to a default)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------------------------
# User paths: relative to where the user ran `ringbit`
# --------------------------------------------------------------------------------------------


def resolve_user_path(path: str) -> Path:
    """A relative path means relative to where the user ran `ringbit`: jobs run in a copy of the
    repository, so the CLI passes its working directory along as RINGBIT_SUBMIT_CWD."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(os.environ.get("RINGBIT_SUBMIT_CWD", os.getcwd())) / p


def existing_user_file(path: str, hint: str, name: str = "") -> str:
    """resolve_user_path(path), which must be a file; else an error that says what to pass."""
    p = resolve_user_path(path)
    if not p.is_file():
        raise ValueError(f"{name + ': ' if name else ''}no file {p}; {hint}")
    return str(p)


# --------------------------------------------------------------------------------------------
# Loading: YAML + dotted overrides -> validated model, with readable errors
# --------------------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


def parse_override(item: str) -> tuple[list[str], Any]:
    """`train.lr=3e-4` -> (["train", "lr"], 0.0003); the value is parsed as YAML."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip() or any(not p for p in key.strip().split(".")):
        raise ConfigError(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. --set train.lr=3e-4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for i, part in enumerate(path[:-1]):
            if node.get(part) is None:  # an optional section left empty (`lora: null`) is opened
                node[part] = {}
            child = node[part]
            if not isinstance(child, dict):
                where = ".".join(path[: i + 1])
                raise ConfigError(f"--set {item!r}: {where} is a value, not a section")
            node = child
        node[path[-1]] = value
    return data


# A workflow config may start `base: other.yaml` (a path relative to its own folder) and override
# some of that recipe: the base is read first (itself possibly with a base), the file's keys are
# merged into it deep (a mapping merges key by key, anything else - a value, a list, null -
# replaces), the file winning. A schema with a `base` field of its own (SweepConfig: the
# pretraining config of its trials) keeps `base` as data.
INHERIT_KEY = "base"


def _read_one(p: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of sections")
    return data


def merge_deep(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """`child` over `base`: mappings merged key by key, every other value of `child` wins."""
    out = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_deep(out[key], value)
        else:
            out[key] = value
    return out


def _read_inherited(p: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    data = _read_one(p)
    if INHERIT_KEY not in data:
        return data
    ref = data.pop(INHERIT_KEY)
    if not isinstance(ref, str) or not ref.strip():
        raise ConfigError(f"{p}: {INHERIT_KEY}: expected the path of a YAML file to start from, "
                          f"relative to {p.parent} (e.g. base: demo.yaml), got {ref!r}")
    parent = p.parent / Path(ref).expanduser()
    if parent.resolve() in chain:
        cycle = [str(c) for c in chain[chain.index(parent.resolve()):]] + [str(parent.resolve())]
        raise ConfigError(f"{p}: {INHERIT_KEY} {ref!r} makes a cycle: {' -> '.join(cycle)}")
    if not parent.is_file():
        raise ConfigError(f"{p}: {INHERIT_KEY} {ref!r}: no file {parent} (the path is relative to "
                          f"{p.parent})")
    return merge_deep(_read_inherited(parent, chain + (parent.resolve(),)), data)


def read_yaml(path: str | Path, inherit: bool = True) -> dict[str, Any]:
    """The YAML file's mapping; with `inherit`, its `base:` chain resolved (see INHERIT_KEY)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} not found; pass --config jobs/configs/<name>.yaml")
    return _read_inherited(p, (p.resolve(),)) if inherit else _read_one(p)


def _allowed_keys(schema: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names valid at `loc`'s parent, to suggest after an unknown key."""
    model: Any = schema
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = field.annotation
    return sorted(getattr(model, "model_fields", {}))


_FIELD_FIRST = re.compile(r"^[a-z_]+(\.[a-z_0-9]+)*: ")


def format_validation_error(exc: ValidationError, schema: type[BaseModel]) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        where = ".".join(str(p) for p in loc) or "(config)"
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(schema, loc)
            lines.append(f"{where}: unknown key; allowed here: {', '.join(allowed)}")
            continue
        msg = err["msg"].removeprefix("Value error, ")
        if not loc and _FIELD_FIRST.match(msg):  # the message names its field(s) itself
            lines.append(msg)
            continue
        got = err.get("input")
        if err["type"] not in ("value_error", "missing") and not isinstance(got, dict):
            msg += f" (got {got!r})"
        lines.append(f"{where}: {msg}")
    return "\n".join(lines)


def validate(schema: type[M], data: dict[str, Any], context: dict[str, Any] | None = None) -> M:
    try:
        return schema.model_validate(data, context=context)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, schema)) from None


def load_config(
    schema: type[M], path: str | Path | None, overrides: list[str] | None = None
) -> M:
    """Read YAML (optional; `base:` resolved unless the schema has a `base` field), apply `--set`
    overrides, validate; raise ConfigError on any problem."""
    inherit = INHERIT_KEY not in schema.model_fields
    data = read_yaml(path, inherit) if path is not None else {}
    return validate(schema, apply_overrides(data, list(overrides or [])))


def to_yaml(cfg: BaseModel) -> str:
    if getattr(cfg, "architecture_pending", False):  # init_from a registry model or a run
        return (f"# model: the architecture of {cfg.init_from} (read when the job starts)\n"
                + yaml.safe_dump(cfg.to_data(), sort_keys=False))
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: the resolved config as MLflow params."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
