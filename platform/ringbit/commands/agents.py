"""`ringbit agents eval computer / react / memwalker`: agent evaluations as Ray jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ringbit.commands.jobs import SubmitOptions, submit_job
from ringbit.commands.options import AddressOpt, SetOpt

agents_app = typer.Typer(help="Language agents: evaluation jobs (MiniWoB++ computer control, ReAct, "
                              "MemWalker); REST runs go through `ringbit serve up`.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate an agent as a Ray job; results, plots and trajectories in MLflow.",
                       no_args_is_help=True)
agents_app.add_typer(eval_app, name="eval")
LLMUrlOpt = Annotated[Optional[str], typer.Option("--llm-url", help="OpenAI-compatible endpoint (default: the platform's LM service, `ringbit serve up`).")]
LLMModelOpt = Annotated[Optional[str], typer.Option("--model", help="Model name sent to the endpoint (default: its first).")]
LLMApiOpt = Annotated[Optional[str], typer.Option("--api", help="completions (prompts as-is) or chat (one user message).")]
NameOpt = Annotated[Optional[str], typer.Option(help="Run name in MLflow and the Jobs API.")]
FollowOpt = Annotated[bool, typer.Option("--follow/--no-follow", help="Show progress until the job ends.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Validate and print the resolved config only.")]


def _eval(workflow: str, config: Path | None, default: str, options: dict[str, Any], overrides: list[str] | None,
          name: str | None, address: str | None, dry_run: bool, follow_logs: bool) -> None:
    from ringbit.jobs import REPO_ROOT

    sets = [f"{k}={v}" for k, v in options.items() if v is not None]
    submit_job(SubmitOptions(workflow, config or REPO_ROOT / "jobs" / "configs" / default,
                             sets + list(overrides or []), name=name, address=address, dry_run=dry_run,
                             follow_logs=follow_logs))
@eval_app.command("computer")
def eval_computer(
    tasks: Annotated[Optional[str], typer.Option(help="Comma-separated MiniWoB++ tasks, e.g. click-button,enter-text.")] = None,
    seeds: Annotated[Optional[str], typer.Option(help="Seeds: 0-9, or 0,3,7.")] = None,
    trials: Annotated[Optional[int], typer.Option(help="Trials per episode (reflection between them), 1-10.")] = None,
    browsers: Annotated[Optional[int], typer.Option(help="Browser actors running episodes in parallel.")] = None,
    ablation: Annotated[Optional[bool], typer.Option("--ablation/--no-ablation", help="Also run every episode without reflection (same seeds) and compare.")] = None,
    llm_url: LLMUrlOpt = None, model: LLMModelOpt = None, api: LLMApiOpt = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="Default: jobs/configs/agents-computer.yaml.")] = None,
    overrides: SetOpt = None, name: NameOpt = None, address: AddressOpt = None,
    dry_run: DryRunOpt = False, follow_logs: FollowOpt = True,
) -> None:
    """Structured-reflection computer-control agent on real MiniWoB++ (headless Chromium): success
    rate per task and per trial (with --ablation also without reflection), a table, a plot and the
    trajectories (screens, plans, actions, reflections) in MLflow."""
    opts = {"tasks": f"[{tasks}]" if tasks else None, "seeds": f"'{seeds}'" if seeds else None,
            "trials": trials, "browsers": browsers, "llm.url": llm_url, "llm.model": model, "llm.api": api,
            "ablation": None if ablation is None else str(ablation).lower()}
    _eval("eval-computer", config, "agents-computer.yaml", opts, overrides, name, address, dry_run, follow_logs)


demos_app = typer.Typer(help="Record demonstrations for fine-tuning an agent, as a Ray job; the data in MLflow.",
                        no_args_is_help=True)
agents_app.add_typer(demos_app, name="demos")


@demos_app.command("computer")
def demos_computer(
    tasks: Annotated[Optional[str], typer.Option(help="Comma-separated MiniWoB++ tasks with a scripted solver (default: all).")] = None,
    seeds: Annotated[Optional[str], typer.Option(help="Training seeds: 1000-1049, or 1000,1003.")] = None,
    reflection: Annotated[Optional[bool], typer.Option("--reflection/--no-reflection", help="Also record reflection examples (one spoiled trial each).")] = None,
    browsers: Annotated[Optional[int], typer.Option(help="Browser actors running episodes in parallel.")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="Default: jobs/configs/agents-computer-demos.yaml.")] = None,
    overrides: SetOpt = None, name: NameOpt = None, address: AddressOpt = None,
    dry_run: DryRunOpt = False, follow_logs: FollowOpt = True,
) -> None:
    """Scripted MiniWoB++ solvers answer the computer-control agent's own planning and reflection
    prompts on training seeds; the prompts and answers become demos.jsonl in MLflow, per-task yields
    beside it (the data of the computer-control fine-tune)."""
    opts = {"tasks": f"[{tasks}]" if tasks else None, "seeds": f"'{seeds}'" if seeds else None,
            "reflection": None if reflection is None else str(reflection).lower(), "browsers": browsers}
    _eval("computer-demos", config, "agents-computer-demos.yaml", opts, overrides, name, address, dry_run, follow_logs)


@eval_app.command("react")
def eval_react(
    questions: Annotated[Optional[str], typer.Option(help="FireAct trajectories (gold = finish answers) or JSONL of {question, answer}.")] = None,
    n: Annotated[Optional[int], typer.Option(help="Questions to evaluate.")] = None,
    split: Annotated[Optional[str], typer.Option(help="all, or heldout (the fine-tuning job's held-out questions).")] = None,
    search: Annotated[Optional[str], typer.Option(help="cache (the trajectories' recorded results), cache:FILE or bm25:PASSAGES.jsonl.")] = None,
    llm_url: LLMUrlOpt = None, model: LLMModelOpt = None, api: LLMApiOpt = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="Default: jobs/configs/agents-react.yaml.")] = None,
    overrides: SetOpt = None, name: NameOpt = None, address: AddressOpt = None,
    dry_run: DryRunOpt = False, follow_logs: FollowOpt = True,
) -> None:
    """FireAct ReAct agent on HotpotQA questions with an offline search tool: EM / F1 in MLflow."""
    opts = {"questions": questions, "n": n, "split": split, "search": search, "llm.url": llm_url,
            "llm.model": model, "llm.api": api}
    _eval("eval-react", config, "agents-react.yaml", opts, overrides, name, address, dry_run, follow_logs)


@eval_app.command("memwalker")
def eval_memwalker(
    docs: Annotated[Optional[int], typer.Option(help="Synthetic documents (one planted-fact question each).")] = None,
    words: Annotated[Optional[str], typer.Option(help="Words per document, or several lengths: 1500,6000,24000.")] = None,
    segment_words: Annotated[Optional[int], typer.Option(help="Words per leaf segment.")] = None,
    methods: Annotated[Optional[str], typer.Option(help="Readers: memwalker,truncate,retrieve (default: all three).")] = None,
    llm_url: LLMUrlOpt = None, model: LLMModelOpt = None, api: LLMApiOpt = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="Default: jobs/configs/agents-memwalker.yaml.")] = None,
    overrides: SetOpt = None, name: NameOpt = None, address: AddressOpt = None,
    dry_run: DryRunOpt = False, follow_logs: FollowOpt = True,
) -> None:
    """MemWalker on synthetic long documents with planted facts, beside the paper's baselines (the
    text truncated to the window; BM25-retrieved segments): accuracy per length, a table and a plot
    in MLflow."""
    opts = {"n_docs": docs, "n_words": f"[{words}]" if words else None, "segment_words": segment_words,
            "methods": f"[{methods}]" if methods else None, "llm.url": llm_url, "llm.model": model, "llm.api": api}
    _eval("eval-memwalker", config, "agents-memwalker.yaml", opts, overrides, name, address, dry_run, follow_logs)


table_app = typer.Typer(help="Tables of finished agent evaluations, read from MLflow.", no_args_is_help=True)
agents_app.add_typer(table_app, name="table")


@table_app.command("react")
def table_react(
    runs: Annotated[Optional[str], typer.Option(help="Comma-separated run names, in table order (default: every finished ReAct evaluation of the experiment).")] = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment of the evaluations.")] = "ringbit-agents",
    mlflow_uri: Annotated[Optional[str], typer.Option(help="MLflow URI (default: the local platform's).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
) -> None:
    """The FireAct table: one row per ReAct evaluation run (model, prompting, search, EM and F1
    with 95% bootstrap intervals, finished rate, mean steps). Each row is reproduced by
    `ringbit agents eval react` with the settings the run's params record."""
    import json

    from mlflow.tracking import MlflowClient

    from ringbit.agents.react.table import markdown, rows, same_questions
    from ringbit.console import fail
    from ringbit.tracking import resolve_tracking_uri

    client = MlflowClient(resolve_tracking_uri(mlflow_uri))
    try:
        found = client.get_experiment_by_name(experiment)
    except Exception as exc:  # connection refused: say what to do
        raise fail(f"MLflow at {resolve_tracking_uri(mlflow_uri)} did not answer ({type(exc).__name__}); "
                   "run `ringbit up` or pass --mlflow-uri") from None
    if found is None:
        raise fail(f"--experiment {experiment}: no such MLflow experiment", 2)
    names = [n.strip() for n in runs.split(",") if n.strip()] if runs else None
    try:
        table = rows(client, [found.experiment_id], names)
    except ValueError as exc:
        raise fail(f"--runs: {exc}", 2) from None
    if not table:
        raise fail(f"no finished ReAct evaluation in experiment {experiment}; run `ringbit agents eval react` first", 2)
    if as_json:
        typer.echo(json.dumps(table))
        return
    typer.echo(markdown(table))
    if not same_questions(table):
        typer.echo("note: the rows did not all evaluate the same questions (questions, split, n differ)", err=True)
