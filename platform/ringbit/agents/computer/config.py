"""The computer-control jobs' configs: the evaluation (`ringbit agents eval computer`, workflow
eval-computer), the demonstrations (`ringbit agents demos computer`, workflow computer-demos) and
the fine-tune on them (`ringbit submit finetune-computer`).

Validating it needs no browser stack: task names are checked against the installed MiniWoB++
(gymnasium, miniwob, selenium) by `with_resolved_tasks` when the workflow starts (the CLI before
it submits, the job before it runs), with the same error and exit code as any config error.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, field_validator

from ringbit.agents.config import MAX_SEED, AgentLLMConfig
from ringbit.config import ConfigError, StrictModel, existing_user_file
from ringbit.train.config import SFTConfig, TrackingConfig


def _parse_seeds(value: Any) -> Any:
    """Seeds as a list, one int, or ranges like "0-9" / "0-4,10" (what users type on a CLI)."""
    if isinstance(value, int):
        return [value]
    if isinstance(value, str):
        seeds: list[int] = []
        for part in filter(None, (p.strip() for p in value.split(","))):
            lo, sep, hi = part.partition("-")
            try:
                seeds += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
            except ValueError:
                raise ValueError(f"{value!r}: expected seeds like 0-9 or 0,3,7") from None
        return seeds
    return value


def _in_range(seeds: list[int]) -> list[int]:
    bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if bad:
        raise ValueError(f"seeds {bad[:5]} out of range: use 0..{MAX_SEED}")
    return seeds


# Episode seeds as a list, one int, or ranges like "0-9" / "0-4,10".
SeedList = Annotated[list[int], BeforeValidator(_parse_seeds), AfterValidator(_in_range)]


class ComputerEvalConfig(StrictModel):
    """Evaluate the structured-reflection computer-control agent on MiniWoB++ tasks: every
    (task, seed) is one episode of up to `trials` trials, episodes spread over a pool of browsers."""

    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", description="Run name; None = timestamped.")
    tasks: list[str] = Field(["click-button", "click-link", "focus-text", "enter-text"], min_length=1,
                             description="MiniWoB++ task names (miniwob/<task>-v1); checked against the installed "
                                         "miniwob when the workflow starts.")
    seeds: SeedList = Field(list(range(5)), min_length=1, max_length=1000,
                             description="Episode seeds (a list, or a range string like 0-9).")
    trials: int = Field(3, ge=1, le=10, description="Trials per episode: reflection between them (paper: up to 5).")
    max_steps: int = Field(12, ge=1, le=100, description="Actions per trial before it counts as failed.")
    traces: bool = Field(True, description="Record each episode as an MLflow trace under the run (spans for "
                                           "planning, each action and reflection, with the screens).")
    ablation: bool = Field(False, description="Also run every episode without reflection (failed trials retried "
                                              "on the same seed, nothing in memory): the paper's ablation, logged "
                                              "beside the reflection runs as no_reflection.*.")
    episode_max_s: float | None = Field(
        300.0, gt=0, description="MiniWoB++ ends an episode after 10 s, LLM thinking included; this "
                                 "raises the limit for real LLMs (None = the benchmark's 10 s).")
    plan_max_tokens: int = Field(256, ge=8, le=4096, description="Most tokens of one planning answer (a plan is "
                                                                 "one action per line: ~10 tokens each).")
    reflect_max_tokens: int = Field(96, ge=8, le=4096, description="Most tokens of one reflection answer.")
    browsers: int = Field(2, ge=1, le=32, description="Browser actors (one headless Chromium each, ~400 MiB).")
    cpus_per_browser: float = Field(0.5, gt=0, le=16, description="Ray CPUs reserved per browser actor.")
    llm: AgentLLMConfig = Field(default_factory=AgentLLMConfig)
    mlflow: TrackingConfig = Field(default_factory=lambda: TrackingConfig(experiment="ringbit-agents", registered_model=None))


def with_resolved_tasks(cfg: Any) -> Any:
    """cfg with every task name checked against the installed MiniWoB++ and made canonical
    ("miniwob/click-button-v1" -> "click-button"); a ConfigError naming `tasks` for an unknown
    one. Imports the browser stack, so it runs when the workflow starts, not at validation."""
    from ringbit.agents.computer.env import resolve_task

    try:
        tasks = [resolve_task(t) for t in cfg.tasks]
    except ValueError as exc:
        raise ConfigError(f"tasks: {exc}") from None
    return cfg.model_copy(update={"tasks": tasks})


# The tasks the scripted solvers solve (ringbit.agents.computer.solvers.SOLVERS), listed here so
# that validating a config imports no browser stack; a unit test keeps the two equal.
SOLVED_TASKS = [
    "choose-list", "click-button", "click-button-sequence", "click-checkboxes", "click-checkboxes-large",
    "click-collapsible", "click-dialog", "click-dialog-2", "click-link", "click-option",
    "click-scroll-list", "click-tab", "click-tab-2", "click-tab-2-hard", "click-test", "click-test-2",
    "click-widget", "enter-date", "enter-password", "enter-text", "enter-text-2", "enter-text-dynamic",
    "focus-text", "focus-text-2", "login-user", "navigate-tree", "simple-arithmetic", "unicode-test",
    "use-spinner",
]


class ComputerDemosConfig(StrictModel):
    """Record demonstrations for fine-tuning the computer-control agent: the agent runs each
    (task, seed) episode with a scripted solver as its LLM (ringbit.agents.computer.demos), and
    the prompts it sent with the solver's answers become supervised examples: plans from episodes
    solved at the first trial, reflections from episodes with one injected mistake."""

    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", description="Run name; None = timestamped.")
    tasks: list[str] = Field(default_factory=lambda: list(SOLVED_TASKS), min_length=1,
                             description="MiniWoB++ tasks with a scripted solver (default: all of them).")
    seeds: SeedList = Field(list(range(1000, 1020)), min_length=1, max_length=1000,
                             description="Training seeds (a list, or a range string like 1000-1049); keep them "
                                         "apart from the evaluation's seeds.")
    reflection: bool = Field(True, description="Also record a reflection example per (task, seed): the first "
                                              "trial spoiled by one wrong action, the reflection naming it.")
    max_steps: int = Field(24, ge=1, le=100, description="Actions per trial before it counts as failed.")
    browsers: int = Field(2, ge=1, le=32, description="Browser actors (one headless Chromium each, ~400 MiB).")
    cpus_per_browser: float = Field(0.5, gt=0, le=16, description="Ray CPUs reserved per browser actor.")
    mlflow: TrackingConfig = Field(default_factory=lambda: TrackingConfig(experiment="ringbit-agents", registered_model=None))

    @field_validator("tasks")
    @classmethod
    def _solved(cls, tasks: list[str]) -> list[str]:
        unsolved = [t for t in tasks if t not in SOLVED_TASKS]
        if unsolved:
            raise ValueError(f"no scripted solver for {unsolved}: tasks with one are {', '.join(SOLVED_TASKS)}")
        return tasks


def demos_is_file(ref: str) -> bool:
    """data.demos names a local file (a path or *.jsonl), not a run name or a runs:/ URI."""
    return not ref.startswith("runs:/") and ("/" in ref or ref.endswith(".jsonl"))


class ComputerDemoDataConfig(StrictModel):
    """Demonstrations recorded by `ringbit agents demos computer` (its demos.jsonl)."""

    demos: str = Field(..., description="The demonstrations: the name of a finished computer-demos run in the "
                                        "experiment (its latest), runs:/RUN_ID/demos.jsonl, or a demos.jsonl file "
                                        "(a relative path is read from where you submit).")
    kinds: list[Literal["plan", "reflection"]] = Field(["plan", "reflection"], min_length=1,
                                                       description="Which examples to learn.")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="Share of the demonstration episodes (task, seed) "
                                                            "held out: val_ppl over their completions.")
    seed: int = Field(0, description="Seed of the train/held-out split of episodes.")
    demos_experiment: str = Field("ringbit-agents", description="Experiment searched for a run named by `demos`.")


class ComputerFinetuneConfig(SFTConfig):
    """The FireAct recipe on computer control: fine-tune an LM on the agent's own prompts answered
    by the scripted solvers (plans and reflections); the agent then runs with the same prompts."""

    max_seq_len: int = Field(1536, ge=64, description="Prompt + completion tokens kept (longer examples are "
                                                      "dropped); planning prompts carry the whole screen.")
    data: ComputerDemoDataConfig
    mlflow: TrackingConfig = Field(default_factory=lambda: TrackingConfig(
        experiment="ringbit-agents", registered_model="computer-agent"))

    @field_validator("data", mode="after")
    @classmethod
    def _demos_exist(cls, data: ComputerDemoDataConfig) -> ComputerDemoDataConfig:
        if not demos_is_file(data.demos):
            return data  # a run's artifact or a run name: fetched from MLflow when the job starts
        path = existing_user_file(data.demos, "pass the demos.jsonl of `ringbit agents demos computer` "
                                  "(a file), a run name or runs:/RUN_ID/demos.jsonl", "data.demos")
        return data.model_copy(update={"demos": path})
