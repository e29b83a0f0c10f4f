"""Options and helpers shared by several command modules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ringbit.config import ConfigError
from ringbit.console import fail
from ringbit.workflows import WORKFLOWS

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Job YAML, e.g. jobs/configs/demo.yaml.")]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help="Dotted override, repeatable: --set train.lr=3e-4 --set workers.num_workers=2."),
]
AddressOpt = Annotated[
    Optional[str], typer.Option("--address", help="Ray dashboard / Jobs API URL (default: the local platform).")
]


def settings():
    from ringbit.services import PlatformSettings

    return PlatformSettings.from_env()


def address(address: str | None) -> str:
    return address or settings().dashboard_url


def load(workflow: str, config: Path, overrides: list[str] | None) -> Any:
    """The workflow's validated config; an unknown workflow or a bad config exits 2."""
    if workflow not in WORKFLOWS:
        raise fail(f"unknown workflow {workflow!r}; choose one of: {', '.join(WORKFLOWS)}", 2)
    try:
        return WORKFLOWS[workflow].load(config, overrides)
    except ConfigError as exc:
        raise fail(f"invalid config {config}:\n{exc}", 2) from None
