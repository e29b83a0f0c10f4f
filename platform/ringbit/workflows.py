"""The workflows a job can run: each one's config schema, its Ray job script and its in-process
runner, and the job scripts' shared entrypoint. The CLI (`ringbit submit`) and `jobs/*.py` both
read this registry; job scripts never import the CLI."""

from __future__ import annotations

import sys
from typing import Any, Callable

from ringbit.agents.computer.config import ComputerEvalConfig, with_resolved_tasks
from ringbit.agents.memwalker_config import MemWalkerEvalConfig
from ringbit.agents.react.config import ReactEvalConfig, ReactFinetuneConfig
from ringbit.config import ConfigError, load_config
from ringbit.evaluator.config import FinetuneConfig
from ringbit.train.config import PretrainConfig
from ringbit.tune.space import SweepConfig


# workflow -> (config schema, Ray job script, in-process runner)
def _pretrain_runner(cfg):
    from ringbit.train.pretrain import run_pretrain

    return run_pretrain(cfg)


def _sweep_runner(cfg):
    from ringbit.tune.sweep import run_sweep

    return run_sweep(cfg)


def _finetune_runner(cfg):
    from ringbit.evaluator.finetune import run_finetune

    return run_finetune(cfg)


def _react_finetune_runner(cfg):
    from ringbit.agents.react.finetune import run_react_finetune

    return run_react_finetune(cfg)


def _eval_runner(kind: str) -> Callable[[Any], Any]:
    def run(cfg):
        from ringbit.agents import evaluation

        return getattr(evaluation, f"run_{kind}_eval")(cfg)

    return run


WORKFLOWS: dict[str, tuple[type, str, Callable[[Any], Any]]] = {
    "pretrain": (PretrainConfig, "jobs/pretrain.py", _pretrain_runner),
    "sweep": (SweepConfig, "jobs/sweep.py", _sweep_runner),
    "finetune-evaluator": (FinetuneConfig, "jobs/finetune_evaluator.py", _finetune_runner),
    "finetune-react": (ReactFinetuneConfig, "jobs/finetune_react.py", _react_finetune_runner),
    "eval-computer": (ComputerEvalConfig, "jobs/eval_computer_agent.py", _eval_runner("computer")),
    "eval-react": (ReactEvalConfig, "jobs/eval_react_agent.py", _eval_runner("react")),
    "eval-memwalker": (MemWalkerEvalConfig, "jobs/eval_memwalker.py", _eval_runner("memwalker")),
}

# workflow -> the checks that need the workflow's own runtime (the browser stack for
# eval-computer), run when the workflow starts rather than when its schema validates: a
# ConfigError here is reported like any config error (exit 2).
PREFLIGHT: dict[str, Callable[[Any], Any]] = {
    "eval-computer": with_resolved_tasks,
}


def load_workflow_config(workflow: str, path: Any, overrides: list[str] | None = None) -> Any:
    """The workflow's config from YAML + `--set` overrides, validated and preflight-checked: what
    `ringbit submit` does before submitting and a job script does before it runs."""
    cfg = load_config(WORKFLOWS[workflow][0], path, overrides)
    check = PREFLIGHT.get(workflow)
    return check(cfg) if check else cfg


def run_job_entrypoint(workflow: str, argv: list[str]) -> int:
    """`python jobs/<workflow>.py --config X [--set k=v]`: the same code as `ringbit submit`."""
    import argparse

    parser = argparse.ArgumentParser(prog=f"jobs/{workflow}.py", description=f"Run the {workflow} job.")
    parser.add_argument("--config", required=True, help="job YAML")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="KEY.PATH=VALUE")
    args = parser.parse_args(argv)
    try:
        cfg = load_workflow_config(workflow, args.config, args.overrides)
    except ConfigError as exc:
        print(f"error: invalid config {args.config}:\n{exc}", file=sys.stderr)
        return 2
    WORKFLOWS[workflow][2](cfg)
    return 0
