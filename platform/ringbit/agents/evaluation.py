"""Evaluation jobs for the agents (`ringbit agents eval computer|react|memwalker`, or the
jobs/eval_*.py entrypoints under `ray job submit`): run many episodes, print progress, and log
one MLflow run with the rates, per-task / per-trial breakdowns, plots and JSONL trajectories.

Browser episodes run on a pool of Ray actors (CPU- and memory-heavy, spread over the cluster);
ReAct and MemWalker episodes wait on the LLM endpoint almost all the time, so threads suffice."""

from __future__ import annotations

import csv
import io
import os
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from ringbit.agents.computer.config import ComputerEvalConfig, with_resolved_tasks
from ringbit.agents.memwalker_config import MemWalkerEvalConfig
from ringbit.agents.react.config import ReactEvalConfig
from ringbit.config import flatten


def _progress(done: int, total: int, **values: float) -> None:
    # `ringbit agents eval` turns these lines into a progress bar (ringbit.train.progress.parse_progress).
    from ringbit.train.progress import format_progress

    print(format_progress(done, total, values, fmt=".4g"), flush=True)


def _name(cfg, kind: str) -> str:
    return cfg.name or time.strftime(f"eval-{kind}-%Y%m%d-%H%M%S")


def _check_llm(cfg) -> dict[str, Any]:
    """Fail before any episode when the endpoint is unusable; returns the LLM config episodes get
    (with the model the endpoint reported, so every episode asks the same model)."""
    from ringbit.agents.llm import build_agent_llm

    llm = build_agent_llm(cfg.llm, check=True)
    if llm.max_context is not None and llm.max_context < MIN_AGENT_CONTEXT:
        print(f"[ringbit] warning: {llm.client.model} has a {llm.max_context}-token context; agent prompts "
              f"are ~{MIN_AGENT_CONTEXT}+ tokens, so requests will be refused (422). Serve a model with a "
              "longer context, e.g. one fine-tuned with max_seq_len 1024 (finetune-react.yaml).", flush=True)
    return {**cfg.llm.model_dump(), "url": llm.client.base_url, "model": llm.client.model}


MIN_AGENT_CONTEXT = 512


def _trace_experiment(cfg, client, run_id: str) -> str:
    """Point MLflow's tracing at the job's server; the experiment id its traces go to (the run's)."""
    import mlflow

    from ringbit.tracking import resolve_tracking_uri

    mlflow.set_tracking_uri(resolve_tracking_uri(cfg.mlflow.tracking_uri))
    return client.get_run(run_id).info.experiment_id


def _params(cfg, llm: dict[str, Any]) -> dict[str, Any]:
    """The run's params: its config with the LLM it actually asked (the endpoint's URL and model,
    not the config's None defaults), so a table of runs can say which model each row measured."""
    return flatten({**cfg.model_dump(mode="json"), "llm": llm})


def _run_parallel(items: list, workers: int, llm_cfg, work: Callable[[Any, Any], dict[str, Any]],
                  scores: tuple[str, ...]) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """work(item, llm) -> row for every item on `workers` threads, each item with its own AgentLLM;
    progress lines carry the running mean of the `scores` keys. Returns the rows in input order and
    the summed LLM usage."""
    from ringbit.agents.llm import build_agent_llm

    lock = threading.Lock()
    usage: dict[str, float] = defaultdict(float)
    sums: dict[str, float] = defaultdict(float)
    done = 0

    def one(item: Any) -> dict[str, Any]:
        nonlocal done
        llm = build_agent_llm(llm_cfg, check=False)
        row = work(item, llm)
        with lock:  # threads finish in any order: counters and sums under one lock
            done += 1
            for k, v in llm.usage.as_dict().items():
                usage[k] += v
            for k in scores:
                sums[k] += float(row[k])
            _progress(done, len(items), **{k: sums[k] / done for k in scores})
        return row

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, items)), dict(usage)


def _log_csv(client, run_id: str, name: str, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / name).write_text(buf.getvalue())
        client.log_artifact(run_id, str(Path(tmp) / name))


def _log_figure(client, run_id: str, name: str, draw: Callable[[Any], None]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    draw(ax)
    fig.tight_layout()
    with tempfile.TemporaryDirectory() as tmp:
        fig.savefig(Path(tmp) / name, dpi=110)
        client.log_artifact(run_id, str(Path(tmp) / name))
    plt.close(fig)


# ------------------------------------------------------------------------------ computer control


def success_by_trial(results: list[dict[str, Any]], trials: int) -> list[float]:
    """Completion rate after k trials (k = 1..trials): an episode counts once any trial up to k
    succeeded. This is the paper's "improvement over rounds of reflection"."""
    rates = []
    for k in range(1, trials + 1):
        ok = sum(any(t.get("success") for t in r.get("trials", [])[:k]) for r in results)
        rates.append(ok / len(results) if results else 0.0)
    return rates


def computer_summary(results: list[dict[str, Any]], cfg: ComputerEvalConfig) -> dict[str, Any]:
    by_task: dict[str, list[dict]] = defaultdict(list)
    for r in results:
        by_task[r["task"]].append(r)
    steps = [s for r in results for t in r.get("trials", []) for s in t.get("steps", [])]
    return {
        "success_rate": sum(bool(r.get("success")) for r in results) / len(results),
        "by_trial": success_by_trial(results, cfg.trials),
        "tasks": {task: {"success_rate": sum(bool(r.get("success")) for r in rs) / len(rs),
                         "by_trial": success_by_trial(rs, cfg.trials), "episodes": len(rs)}
                  for task, rs in sorted(by_task.items())},
        "errors": sum(bool(r.get("error")) for r in results),
        "steps": len(steps),
        "llm_s_per_step": sum(s.get("llm_s") or 0 for s in steps) / max(len(steps), 1),
        "browser_s_per_step": sum(s.get("browser_s") or 0 for s in steps) / max(len(steps), 1),
        "llm_calls": sum(r.get("llm_calls", 0) for r in results),
        "tokens": sum(r.get("prompt_tokens", 0) + r.get("completion_tokens", 0) for r in results),
    }


def run_computer_eval(cfg: ComputerEvalConfig, log=print) -> dict[str, Any]:
    import ray

    from ringbit.agents.browsers import BrowserPool
    from ringbit.agents.runs import log_jsonl, mlflow_run
    from ringbit.services import ensure_client_env

    ensure_client_env()
    cfg = with_resolved_tasks(cfg)  # canonical task names; the job's loader has checked them already
    llm = _check_llm(cfg)
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=True)
    def episodes_for(reflection: bool, keys) -> list[dict[str, Any]]:
        return [{"task": t, "seed": s, "llm": llm, "trials": cfg.trials, "max_steps": cfg.max_steps,
                 "episode_max_s": cfg.episode_max_s, "reflection": reflection,
                 "max_tokens": (cfg.plan_max_tokens, cfg.reflect_max_tokens)} for t, s in keys]

    keys = [(t, s) for t in cfg.tasks for s in cfg.seeds]
    episodes = episodes_for(True, keys) + (episodes_for(False, keys) if cfg.ablation else [])
    name = _name(cfg, "computer")
    with mlflow_run(cfg.mlflow.experiment, name, _params(cfg, llm),
                    cfg.mlflow.tracking_uri, {"ringbit.agent": "computer"}, log=log) as (client, run_id):
        log(f"[ringbit] {len(episodes)} episodes ({len(cfg.tasks)} tasks x {len(cfg.seeds)} seeds"
            f"{' x with/without reflection' if cfg.ablation else ''}, up to {cfg.trials} trials, MiniWoB time "
            f"limit {cfg.episode_max_s or 10:g} s) on {cfg.browsers} browsers, LLM {llm['url']} ({llm['model']})")
        pool = BrowserPool(cfg.browsers, cfg.cpus_per_browser)
        done: list[dict[str, Any]] = []
        began = time.perf_counter()

        def on_result(r: dict[str, Any]) -> None:
            done.append(r)
            note = f" error: {r['error']}" if r.get("error") else ""
            log(f"[ringbit] episode {r['task']} seed={r['seed']} success={bool(r.get('success'))} "
                f"trials={len(r.get('trials', []))}{'' if r.get('reflection', True) else ' (no reflection)'}{note}")
            _progress(len(done), len(episodes),
                      success_rate=sum(bool(x.get("success")) for x in done) / len(done))

        try:
            results = pool.run_all(episodes[:len(keys)], on_result=on_result)
            if cfg.ablation:  # the same episodes without reflection
                results += _ablation_episodes(results, episodes[len(keys):], cfg, pool, on_result)
        finally:
            pool.shutdown()
        wall = time.perf_counter() - began
        with_reflection = [r for r in results if r.get("reflection", True)]
        summary = computer_summary(with_reflection, cfg)
        played = [r for r in results if not r.get("reused_trial_1")]
        metrics = {"success_rate": summary["success_rate"], "episodes": len(results),
                   "episodes_reused": len(results) - len(played),
                   "episodes_per_minute": 60 * len(played) / wall, "errors": summary["errors"],
                   "llm_s_per_step": summary["llm_s_per_step"],
                   "browser_s_per_step": summary["browser_s_per_step"],
                   "llm_calls": summary["llm_calls"], "tokens": summary["tokens"],
                   "browsers_replaced": pool.replaced}
        plain = None
        if cfg.ablation:
            plain = computer_summary([r for r in results if not r.get("reflection", True)], cfg)
            metrics["no_reflection.success_rate"] = plain["success_rate"]
            metrics["reflection_gain"] = summary["success_rate"] - plain["success_rate"]
        for task, s in summary["tasks"].items():
            metrics[f"success_rate.{task}"] = s["success_rate"]
        for k, v in metrics.items():
            client.log_metric(run_id, k, float(v))
        # Per trial: step = trial number, so MLflow draws success against rounds of reflection.
        for prefix, summ in (("", summary), ("no_reflection.", plain)):
            if summ is None:
                continue
            for k, rate in enumerate(summ["by_trial"], start=1):
                client.log_metric(run_id, f"{prefix}success_rate_by_trial", rate, step=k)
                for task, s in summ["tasks"].items():
                    client.log_metric(run_id, f"{prefix}success_rate_by_trial.{task}", s["by_trial"][k - 1], step=k)
        if cfg.traces:  # one trace per episode under this run (the run's Traces tab)
            _trace_episodes(results, cfg, client, run_id, log)
        log_jsonl(client, run_id, "trajectories.jsonl", results)
        _log_csv(client, run_id, "results.csv", [
            {"task": r["task"], "seed": r["seed"], "reflection": r.get("reflection", True),
             "success": bool(r.get("success")), "trials_used": len(r.get("trials", [])),
             "raw_reward": next((t.get("raw_reward") for t in reversed(r.get("trials", []))
                                 if t.get("raw_reward") is not None), None),
             "reward": r.get("reward"), "time_limit_s": cfg.episode_max_s or 10,
             "reused_trial_1": bool(r.get("reused_trial_1")), "error": r.get("error") or ""}
            for r in results])
        rows = success_table(summary, plain)
        _log_csv(client, run_id, "success_table.csv", rows)
        for line in format_success_table(rows, cfg.trials):
            log(f"[ringbit] {line}")

        def draw(ax) -> None:
            x = list(range(1, cfg.trials + 1))
            for task, s in summary["tasks"].items():
                line, = ax.plot(x, s["by_trial"], marker="o", label=task)
                if plain is not None and task in plain["tasks"]:
                    ax.plot(x, plain["tasks"][task]["by_trial"], ":", color=line.get_color())
            ax.plot(x, summary["by_trial"], "k--", marker="s", label="all tasks")
            if plain is not None:
                ax.plot(x, plain["by_trial"], "k:", marker="x", label="all tasks, no reflection")
            ax.set(xlabel="trials (reflection between trials)", ylabel="success rate", ylim=(-0.05, 1.05),
                   xticks=x, title="MiniWoB++ success vs trials" + (" (dotted: no reflection)" if plain else ""))
            ax.legend(fontsize=6)

        _log_figure(client, run_id, "success_by_trial.png", draw)
        log(f"[ringbit] done: success_rate={summary['success_rate']:.3f} by trial "
            + " ".join(f"{v:.3f}" for v in summary["by_trial"])
            + (f"; without reflection {plain['success_rate']:.3f}" if plain else "")
            + f"; {metrics['episodes_per_minute']:.1f} episodes/min")
    return {"run_id": run_id, "metrics": metrics, "summary": summary, "no_reflection": plain}


def _ablation_episodes(with_reflection: list[dict[str, Any]], episodes: list[dict[str, Any]],
                       cfg: ComputerEvalConfig, pool, on_result) -> list[dict[str, Any]]:
    """The ablation's episodes (no reflection), in `episodes` order. Until a trial fails, an
    episode does not depend on reflection, so with greedy decoding (temperature 0) one solved
    at trial 1 would replay the same trial: its result is reused (`reused_trial_1`), not rerun."""
    solved_first = {(r["task"], r["seed"]): r for r in with_reflection
                    if cfg.llm.temperature == 0 and r.get("success") and len(r.get("trials", [])) == 1
                    and not r.get("error")}
    reused = {}
    for key, r in solved_first.items():
        reused[key] = {**r, "reflection": False, "reused_trial_1": True}
        on_result(reused[key])
    ran = iter(pool.run_all([e for e in episodes if (e["task"], e["seed"]) not in reused], on_result=on_result))
    return [reused.get((e["task"], e["seed"])) or next(ran) for e in episodes]


def _trace_episodes(results: list[dict[str, Any]], cfg: ComputerEvalConfig, client, run_id: str, log) -> None:
    from ringbit.agents.tracing import flush, trace_computer_episode

    experiment = _trace_experiment(cfg, client, run_id)
    for r in results:
        if r.get("reused_trial_1"):
            continue  # the same episode as its reflection twin, traced once
        try:
            trace_computer_episode(r, run_id, experiment, {"ringbit.agent": "computer", "ringbit.task": r["task"],
                                                           "ringbit.seed": str(r["seed"])})
        except Exception as exc:  # a trace is a view of the episode, never a reason to lose the run
            log(f"[ringbit] warning: no trace for {r['task']} seed={r['seed']}: {type(exc).__name__}: {exc}")
    flush()


def success_table(summary: dict[str, Any], plain: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One row per task (and "all"): episodes, success at trial 1 and after every trial, with
    reflection and (for an ablation) without."""
    rows = []
    for task, s in [*summary["tasks"].items(), ("all", {"by_trial": summary["by_trial"],
                                                         "episodes": sum(t["episodes"] for t in summary["tasks"].values())})]:
        row = {"task": task, "episodes": s["episodes"], "trial_1": s["by_trial"][0], "final": s["by_trial"][-1]}
        if plain is not None:
            p = plain["tasks"].get(task) if task != "all" else {"by_trial": plain["by_trial"]}
            row["final_no_reflection"] = p["by_trial"][-1] if p else None
        rows.append(row)
    return rows


def format_success_table(rows: list[dict[str, Any]], trials: int) -> list[str]:
    ablation = "final_no_reflection" in rows[0]
    head = f"{'task':<24} {'episodes':>8} {'trial 1':>8} {f'after {trials}':>9}"
    lines = [head + (f" {'no refl.':>9}" if ablation else "")]
    for r in rows:
        line = f"{r['task']:<24} {r['episodes']:>8} {r['trial_1']:>8.2f} {r['final']:>9.2f}"
        if ablation:
            v = r["final_no_reflection"]
            line += f" {v:>9.2f}" if v is not None else f" {'-':>9}"
        lines.append(line)
    return lines


# ------------------------------------------------------------------------------ ReAct (FireAct)


def react_examples(cfg: ReactEvalConfig) -> tuple[list[dict[str, str]], str | None]:
    """({question, answer} examples, few-shot prompt or None): examples from trajectories (gold =
    finish answers) or a QA file. The few-shot examples come from the training side of the split
    (split=all: the first trajectories, which are then not evaluated)."""
    from ringbit.agents.react.react import ZERO_SHOT_HEADER, few_shot_prefix
    from ringbit.agents.react.sft import gold_examples, split_trajectories
    from ringbit.agents.react.trajectories import file_kind, read_records, read_trajectories

    path = Path(cfg.questions)
    if file_kind(path) == "qa":
        examples, shots = read_records(path), []
    else:
        trajectories = read_trajectories(path)
        k = cfg.few_shot_examples if cfg.prompting == "few-shot" else 0
        if cfg.split == "heldout":
            train, trajectories = split_trajectories(trajectories, min(cfg.n_val, len(trajectories) - 1),
                                                     cfg.split_seed)
            shots = train[:k]
        else:
            shots, trajectories = trajectories[:k], trajectories[k:]
        examples = gold_examples(trajectories)
    if cfg.prompting == "few-shot" and not shots:
        raise ValueError(f"prompting: few-shot found no training trajectories in {cfg.questions} for its examples")
    prefix = {"finetuned": None, "zero-shot": ZERO_SHOT_HEADER,
              "few-shot": few_shot_prefix(shots) if shots else None}[cfg.prompting]
    return examples[: cfg.n], prefix


def react_tools(cfg: ReactEvalConfig) -> dict[str, Any]:
    from ringbit.agents.react.tools import search_tool

    # bare "cache": the trajectories' recorded (query -> observation) pairs, the paper's Google results
    return {"search": search_tool(cfg.search, trajectories=cfg.questions)}


def run_react_eval(cfg: ReactEvalConfig, log=print) -> dict[str, Any]:
    from ringbit.agents.react.evaluate import evaluate_react, summarize
    from ringbit.agents.runs import log_jsonl, mlflow_run
    from ringbit.agents.config import AgentLLMConfig
    from ringbit.services import ensure_client_env

    ensure_client_env()
    llm = _check_llm(cfg)
    llm_cfg = AgentLLMConfig(**llm)
    examples, few_shot = react_examples(cfg)
    if not examples:
        raise ValueError(f"no questions with answers in {cfg.questions}")
    tools = react_tools(cfg)
    # the model asked, as a tag too: `ringbit agents table react` names each row's model from it
    tags = {"ringbit.agent": "react", "ringbit.llm_model": llm_cfg.model or llm_cfg.url}
    with mlflow_run(cfg.mlflow.experiment, _name(cfg, "react"), _params(cfg, llm),
                    cfg.mlflow.tracking_uri, tags, log=log) as (client, run_id):
        log(f"[ringbit] {len(examples)} questions, {cfg.workers} in parallel, LLM {llm_cfg.url} ({llm_cfg.model})")
        began = time.perf_counter()

        if cfg.traces:  # one trace per question under this run (the run's Traces tab)
            experiment = _trace_experiment(cfg, client, run_id)

        def answer(i_ex: tuple[int, dict[str, str]], llm) -> dict[str, Any]:
            from contextlib import nullcontext

            from ringbit.agents.tracing import TracedLLM, episode_trace, traced_tools

            i, ex = i_ex
            agent_llm, agent_tools, trace = llm, tools, nullcontext()
            if cfg.traces:
                agent_llm, agent_tools = TracedLLM(llm), traced_tools(tools)
                trace = episode_trace("react", {"question": ex["question"]}, run_id, experiment,
                                      {"ringbit.agent": "react", "ringbit.index": str(i)})
            with trace as span:
                out = evaluate_react([ex], agent_llm, agent_tools, max_iterations=cfg.max_iterations,
                                     max_tokens=cfg.max_tokens, few_shot=few_shot)
                row = {**out["rows"][0], "index": i}
                if span is not None:
                    span.set_outputs({k: row.get(k) for k in ("answer", "gold", "em", "f1", "finished", "error")})
            return row

        try:
            ordered, usage = _run_parallel(list(enumerate(examples)), cfg.workers, llm_cfg, answer, ("em", "f1"))
        finally:
            if cfg.traces:
                from ringbit.agents.tracing import flush

                flush()
        summary = summarize(ordered)
        from ringbit.agents.react.metrics import bootstrap_ci

        (em_low, em_high), (f1_low, f1_high) = (bootstrap_ci([r[k] for r in ordered]) for k in ("em", "f1"))
        metrics = {"em": summary["em"], "f1": summary["f1"], "n": summary["n"],
                   "em_ci_low": em_low, "em_ci_high": em_high, "f1_ci_low": f1_low, "f1_ci_high": f1_high,
                   "finished_rate": summary["finished_rate"], "avg_iterations": summary["avg_iterations"],
                   "questions_per_minute": 60 * len(ordered) / (time.perf_counter() - began), **usage}
        for k, v in metrics.items():
            client.log_metric(run_id, k, float(v))
        log_jsonl(client, run_id, "predictions.jsonl", ordered)
        log(f"[ringbit] done: EM={summary['em']:.3f} [{em_low:.3f}, {em_high:.3f}] F1={summary['f1']:.3f} "
            f"[{f1_low:.3f}, {f1_high:.3f}] (95% bootstrap) n={summary['n']} finished={summary['finished_rate']:.2f}")
    return {"run_id": run_id, "metrics": metrics}


# ------------------------------------------------------------------------------ MemWalker


def _memwalker_row(ex: dict[str, Any], llm, cfg: MemWalkerEvalConfig,
                   trace: tuple[str, str] | None = None) -> dict[str, Any]:
    """One document read by every method of cfg.methods; LLM calls counted per method. With
    `trace` (run id, experiment id) the document is one MLflow trace: a CHAIN span per reader,
    an LLM span per call inside it."""
    from contextlib import nullcontext

    row: dict[str, Any] = {"id": ex["id"], "n_words": ex["n_words"], "question": ex["question"],
                           "gold": ex["answer"], "depth": ex["depth"]}
    if trace is None:
        return _read_document(ex, llm, cfg, row, nullcontext)
    import mlflow
    from mlflow.entities import SpanType

    from ringbit.agents.tracing import TracedLLM, episode_trace

    def reader_span(method: str):
        return mlflow.start_span(method, span_type=SpanType.CHAIN)

    with episode_trace("memwalker", {"question": ex["question"], "n_words": ex["n_words"]}, trace[0], trace[1],
                       {"ringbit.agent": "memwalker", "ringbit.document": str(ex["id"])}) as span:
        _read_document(ex, TracedLLM(llm), cfg, row, reader_span)
        span.set_outputs({m: {"answer": row[m]["answer"], "correct": row[m]["correct"]} for m in cfg.methods}
                         | {"gold": ex["answer"]})
    return row


def _read_document(ex: dict[str, Any], llm, cfg: MemWalkerEvalConfig, row: dict[str, Any],
                   reader_span: Callable[..., Any]) -> dict[str, Any]:
    for method in cfg.methods:
        before = llm.usage.calls
        with reader_span(method):
            out = _read(method, ex, llm, cfg)
        out["llm_calls"] = llm.usage.calls - before
        row[method] = out
        row[f"{method}_correct"] = float(bool(out["correct"]))
    return row


def _read(method: str, ex: dict[str, Any], llm, cfg: MemWalkerEvalConfig) -> dict[str, Any]:
    """One reader's answer to the document's question."""
    from ringbit.agents.longdoc import evaluate_memwalker
    from ringbit.agents.longdoc_baselines import answer_retrieved, answer_truncated

    if method == "truncate":
        return answer_truncated(ex, llm, cfg.window_words)
    if method == "retrieve":
        return answer_retrieved(ex, llm, cfg.window_words, cfg.segment_words)
    try:
        walk = evaluate_memwalker([ex], llm, cfg.segment_words, cfg.fanout, max_steps=cfg.max_steps,
                                  summary_tokens=cfg.summary_tokens)["rows"][0]
    except Exception as exc:  # e.g. the endpoint refused a summary prompt: this document fails
        walk = {"answer": "", "answered": False, "correct": False, "steps": 0, "backtracks": 0,
                "error": f"tree not built: {type(exc).__name__}: {exc}"}
    return {k: walk.get(k) for k in ("answer", "answered", "correct", "steps", "backtracks", "error", "path")}


def memwalker_table(rows: list[dict[str, Any]], methods: list[str]) -> list[dict[str, Any]]:
    """Per method and document length: accuracy, LLM calls per question, and for MemWalker its
    steps and back-tracks."""
    out = []
    for method in methods:
        for n_words in sorted({r["n_words"] for r in rows}):
            rs = [r[method] for r in rows if r["n_words"] == n_words]
            entry = {"method": method, "n_words": n_words, "n": len(rs),
                     "accuracy": sum(bool(r["correct"]) for r in rs) / len(rs),
                     "llm_calls": sum(r["llm_calls"] for r in rs) / len(rs)}
            if method == "memwalker":
                entry["steps"] = sum(r.get("steps") or 0 for r in rs) / len(rs)
                entry["backtracks"] = sum(r.get("backtracks") or 0 for r in rs) / len(rs)
            out.append(entry)
    return out


def run_memwalker_eval(cfg: MemWalkerEvalConfig, log=print) -> dict[str, Any]:
    from ringbit.agents.longdoc import make_eval_set
    from ringbit.agents.runs import log_jsonl, mlflow_run
    from ringbit.agents.config import AgentLLMConfig
    from ringbit.services import ensure_client_env

    ensure_client_env()
    llm = _check_llm(cfg)
    llm_cfg = AgentLLMConfig(**llm)
    examples = [{**ex, "id": f"{n}-{ex['id']}", "n_words": n}
                for n in cfg.n_words for ex in make_eval_set(cfg.n_docs, n, cfg.seed, filler=cfg.filler)]
    with mlflow_run(cfg.mlflow.experiment, _name(cfg, "memwalker"), _params(cfg, llm),
                    cfg.mlflow.tracking_uri, {"ringbit.agent": "memwalker"}, log=log) as (client, run_id):
        log(f"[ringbit] {len(examples)} documents ({cfg.n_docs} of each of {', '.join(map(str, cfg.n_words))} words, "
            f"{cfg.filler}) read by {', '.join(cfg.methods)}; {cfg.workers} in parallel, LLM {llm_cfg.url} ({llm_cfg.model})")
        began = time.perf_counter()
        # one trace per document under this run (the run's Traces tab)
        trace = (run_id, _trace_experiment(cfg, client, run_id)) if cfg.traces else None
        try:
            ordered, usage = _run_parallel(examples, cfg.workers, llm_cfg,
                                           lambda ex, llm: _memwalker_row(ex, llm, cfg, trace),
                                           tuple(f"{m}_correct" for m in cfg.methods))
        finally:
            if cfg.traces:
                from ringbit.agents.tracing import flush

                flush()
        n = len(ordered)
        table = memwalker_table(ordered, cfg.methods)
        metrics: dict[str, float] = {"n": n, "documents_per_minute": 60 * n / (time.perf_counter() - began), **usage}
        prefix = {m: "" if m == "memwalker" else f"{m}." for m in cfg.methods}  # MemWalker's keep their names
        for method in cfg.methods:
            rs = [r[method] for r in ordered]
            metrics[f"{prefix[method]}accuracy"] = sum(bool(r["correct"]) for r in rs) / n
            metrics[f"{prefix[method]}llm_calls_per_question"] = sum(r["llm_calls"] for r in rs) / n
        for entry in table:
            metrics[f"{prefix[entry['method']]}accuracy.{entry['n_words']}"] = entry["accuracy"]
        if "memwalker" in cfg.methods:
            walks = [r["memwalker"] for r in ordered]
            metrics.update({"answered_rate": sum(bool(w["answered"]) for w in walks) / n,
                            "avg_steps": sum(w["steps"] or 0 for w in walks) / n,
                            "avg_backtracks": sum(w["backtracks"] or 0 for w in walks) / n,
                            "errors": sum(str(w.get("error") or "").startswith("tree not built") for w in walks)})
            for w, r in zip(walks, ordered):
                if str(w.get("error") or "").startswith("tree not built"):
                    log(f"[ringbit] document {r['id']}: {w['error'][:300]}")
        for k, v in metrics.items():
            client.log_metric(run_id, k, float(v))
        log_jsonl(client, run_id, "walks.jsonl", ordered)
        _log_csv(client, run_id, "accuracy_table.csv", table)
        log(f"[ringbit] {'method':<10} {'words':>7} {'n':>4} {'accuracy':>9} {'LLM calls':>10} {'steps':>6} {'back':>5}")
        for e in table:
            extra = f" {e['steps']:>6.1f} {e['backtracks']:>5.1f}" if "steps" in e else ""
            log(f"[ringbit] {e['method']:<10} {e['n_words']:>7} {e['n']:>4} {e['accuracy']:>9.2f} {e['llm_calls']:>10.1f}{extra}")

        def draw(ax) -> None:  # the paper's comparison: accuracy against document length per reader
            for method in cfg.methods:
                pts = [(e["n_words"], e["accuracy"]) for e in table if e["method"] == method]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method)
            ax.set(xlabel="document length (words)", ylabel="accuracy", ylim=(-0.05, 1.05),
                   title="Long-text QA: accuracy vs length")
            if len(cfg.n_words) > 1:
                ax.set_xscale("log")
            ax.legend(fontsize=8)

        _log_figure(client, run_id, "accuracy_by_length.png", draw)
        if "memwalker" in cfg.methods:
            def depth(ax) -> None:  # where the fact sat vs whether the walk found it
                ax.scatter([r["depth"] for r in ordered], [float(r["memwalker"]["correct"]) for r in ordered], alpha=0.7)
                ax.set(xlabel="planted fact depth (fraction of document)", ylabel="correct",
                       yticks=[0, 1], title=f"MemWalker: accuracy {metrics['accuracy']:.2f}")

            _log_figure(client, run_id, "accuracy_by_depth.png", depth)
        log("[ringbit] done: " + " ".join(f"{m}={metrics[prefix[m] + 'accuracy']:.3f}" for m in cfg.methods))
    return {"run_id": run_id, "metrics": metrics, "table": table}
