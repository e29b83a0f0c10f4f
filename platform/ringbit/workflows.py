"""The workflows a job can run, one typed `Workflow` each: its config schema, its Ray job script,
its runner ("module:function", imported only when the job runs), an optional preflight check and
a one-line description. The CLI (`ringbit submit`) and `jobs/*.py` both read this registry; job
scripts never import the CLI. Importing it is pydantic + yaml only (no torch, Ray or MLflow)."""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import Any, Callable

from ringbit.agents.computer.config import (ComputerDemosConfig, ComputerEvalConfig, ComputerFinetuneConfig,
                                           with_resolved_tasks)
from ringbit.agents.memwalker_config import MemWalkerEvalConfig, MemWalkerFinetuneConfig
from ringbit.agents.react.config import ReactEvalConfig, ReactFinetuneConfig
from ringbit.config import ConfigError, StrictModel, load_config
from ringbit.evaluator.config import FinetuneConfig
from ringbit.train.config import PretrainConfig
from ringbit.tune.space import SweepConfig


@dataclass(frozen=True)
class Workflow:
    """One workflow: `schema` validates its YAML, `script` is the Ray job's entrypoint (relative
    to the repository), `run` ("module:function") runs a validated config in-process. `preflight`
    holds the checks that need the workflow's own runtime (the browser stack for eval-computer):
    they run when the workflow starts rather than when its schema validates, and a ConfigError
    there is reported like any config error (exit 2)."""

    schema: type[StrictModel]
    script: str
    run: str
    description: str
    preflight: Callable[[Any], Any] | None = None
    unit: str = "train steps"  # what its progress lines count (the CLI's progress bar label)

    def runner(self) -> Callable[[Any], Any]:
        """The `run` function, imported now (it brings the workflow's runtime: torch, Ray, ...)."""
        module, _, function = self.run.partition(":")
        return getattr(importlib.import_module(module), function)

    def load(self, path: Any, overrides: list[str] | None = None) -> Any:
        """The config from YAML + `--set` overrides, validated and preflight-checked."""
        cfg = load_config(self.schema, path, overrides)
        return self.preflight(cfg) if self.preflight else cfg


WORKFLOWS: dict[str, Workflow] = {
    "pretrain": Workflow(PretrainConfig, "jobs/pretrain.py", "ringbit.train.pretrain:run_pretrain",
                         "pretrain a decoder LM on Ray Train + DeepSpeed (FP or BitNet, long context)."),
    "sweep": Workflow(SweepConfig, "jobs/sweep.py", "ringbit.tune.sweep:run_sweep",
                      "a Ray Tune sweep of pretraining jobs (context length x weight bits)."),
    "finetune-evaluator": Workflow(FinetuneConfig, "jobs/finetune_evaluator.py",
                                   "ringbit.evaluator.finetune:run_finetune",
                                   "fine-tune a model to write InstructScore reports."),
    "finetune-react": Workflow(ReactFinetuneConfig, "jobs/finetune_react.py",
                               "ringbit.agents.react.finetune:run_react_finetune",
                               "fine-tune a model on FireAct ReAct trajectories."),
    "eval-computer": Workflow(ComputerEvalConfig, "jobs/eval_computer_agent.py",
                              "ringbit.agents.evaluation:run_computer_eval",
                              "evaluate the computer-control agent on MiniWoB++.",
                              preflight=with_resolved_tasks, unit="episodes"),
    "computer-demos": Workflow(ComputerDemosConfig, "jobs/computer_demos.py",
                               "ringbit.agents.computer_demos:run_computer_demos",
                               "record computer-control demonstrations with scripted MiniWoB++ solvers.",
                               preflight=with_resolved_tasks, unit="episodes"),
    "finetune-computer": Workflow(ComputerFinetuneConfig, "jobs/finetune_computer.py",
                                  "ringbit.agents.computer.finetune:run_computer_finetune",
                                  "fine-tune a model as the computer-control agent on demonstrations."),
    "eval-react": Workflow(ReactEvalConfig, "jobs/eval_react_agent.py",
                           "ringbit.agents.evaluation:run_react_eval",
                           "evaluate a ReAct agent on HotpotQA questions.", unit="questions"),
    "eval-memwalker": Workflow(MemWalkerEvalConfig, "jobs/eval_memwalker.py",
                               "ringbit.agents.evaluation:run_memwalker_eval",
                               "evaluate MemWalker on synthetic long documents.", unit="questions"),
    "finetune-memwalker": Workflow(MemWalkerFinetuneConfig, "jobs/finetune_memwalker.py",
                                   "ringbit.agents.memwalker_finetune:run_memwalker_finetune",
                                   "fine-tune a model as MemWalker's reader on the generator's traces."),
}


def load_workflow_config(workflow: str, path: Any, overrides: list[str] | None = None) -> Any:
    """The workflow's config from YAML + `--set` overrides, validated and preflight-checked: what
    `ringbit submit` does before submitting and a job script does before it runs."""
    return WORKFLOWS[workflow].load(path, overrides)


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
    from ringbit.train.resources import PlacementTimeout

    try:
        WORKFLOWS[workflow].runner()(cfg)
    except PlacementTimeout as exc:  # the message is the whole story: no traceback
        print(f"[ringbit] error: {exc}", file=sys.stderr, flush=True)
        return 1
    except ConfigError as exc:  # found when the job starts (data in MLflow, file contents)
        print(f"[ringbit] error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0
