"""Driver of a sweep: prepare each context length's data, open the parent MLflow run, run Ray
Tune over trial drivers (each fits a TorchTrainer), then mark every child run, write the summary
CSV and plots. Runs inside a Ray job or on its own; the same name resumes."""

from __future__ import annotations

import math
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from ringbit.config import flatten, to_yaml
from ringbit.tune.space import SweepConfig
from ringbit.tune.trial import STATUS_TAG, SWEEP_TAG, run_trial, trial_name

TRIAL_DRIVER_CPU = 0.01  # Tune rejects 0; the trial's workers hold the real resources


class SweepError(RuntimeError):
    """The sweep cannot run as configured on this cluster; the message says what to change."""


def sweep_name(cfg: SweepConfig) -> str:
    return cfg.name or time.strftime("sweep-%Y%m%d-%H%M%S")


def saved_config_path(storage: Path, name: str) -> Path:
    return storage / f"{name}.sweep.yaml"


def default_storage(cfg: SweepConfig) -> Path:
    from ringbit.services import PlatformSettings

    return Path(cfg.storage_path or PlatformSettings.from_env().home / "sweeps").expanduser().resolve()


def concurrency(cfg: SweepConfig, workers: int, use_gpu: bool, free: dict[str, float]) -> int:
    """How many trials fit at once in the cluster's free resources (never more than asked)."""
    per_trial = workers * cfg.cpus_per_worker + TRIAL_DRIVER_CPU
    fits = math.floor(free.get("CPU", 0.0) / per_trial + 1e-9)
    if use_gpu:
        fits = min(fits, math.floor(free.get("GPU", 0.0) / workers + 1e-9))
    if fits < 1:
        raise SweepError(
            f"one trial needs {per_trial:.2f} CPUs ({workers} workers x cpus_per_worker "
            f"{cfg.cpus_per_worker}{' and ' + str(workers) + ' GPUs' if use_gpu else ''}) but the "
            f"cluster has {free.get('CPU', 0):.2f} CPUs{' / ' + str(free.get('GPU', 0)) + ' GPUs' if use_gpu else ''} "
            "free: lower cpus_per_worker or workers.num_workers (overrides), or add nodes"
        )
    return min(fits, cfg.max_concurrent_trials or fits)


def _trial_lines_callback(keys: list[str], max_steps: int):
    from ray.tune import Callback

    class TrialLines(Callback):
        """`[ringbit] trial ID STATUS k=v …` lines: the CLI turns them into a live table."""

        def _print(self, trial, status: str, result: dict | None) -> None:
            parts = [f"{k.split('.')[-1]}={trial.config.get(k)}" for k in keys]
            result = result or {}
            if "step" in result:
                parts.append(f"step={int(result['step'])}/{max_steps}")
            if "val_ppl" in result:
                parts.append(f"val_ppl={result['val_ppl']:.5g}")
            print(f"[ringbit] trial {trial.trial_id} {status} {' '.join(parts)}", flush=True)

        def on_trial_start(self, iteration, trials, trial, **info):
            self._print(trial, "RUNNING", None)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self._print(trial, "RUNNING", result)

        def on_trial_complete(self, iteration, trials, trial, **info):
            last = trial.last_result or {}
            self._print(trial, "FINISHED" if last.get("step", 0) >= max_steps else "STOPPED", last)

        def on_trial_error(self, iteration, trials, trial, **info):
            self._print(trial, "FAILED", trial.last_result)

    return TrialLines()


def summarize(results, keys: list[str], max_steps: int, interrupted: bool) -> tuple[list[dict], dict]:
    """One row per trial and its val_ppl curve, from Tune's ResultGrid and its trials' states."""
    # ResultGrid keeps the trials' own states (TERMINATED, ERROR, PENDING, …) next to the results.
    trials = getattr(getattr(results, "_experiment_analysis", None), "trials", None)
    rows, curves = [], {}
    for i, result in enumerate(results):
        trial = trials[i] if trials else None
        df = result.metrics_dataframe
        records = [] if df is None else df.to_dict("records")
        ppl = [(int(r["step"]), float(r["val_ppl"])) for r in records
               if "val_ppl" in r and r["val_ppl"] == r["val_ppl"] and "step" in r]
        steps = max((int(r["step"]) for r in records if "step" in r and r["step"] == r["step"]), default=0)
        state = trial.status if trial is not None else None
        if result.error is not None or state == "ERROR":
            status = "failed"
        elif steps >= max_steps:
            status = "finished"
        elif state == "TERMINATED" or (state is None and steps and not interrupted):
            status = "stopped_early"
        else:
            status = "interrupted" if steps else "not_started"
        tid = trial.trial_id if trial is not None else (result.metrics or {}).get("trial_id", f"trial{i}")
        speeds = [r["tokens_per_s"] for r in records if r.get("tokens_per_s") == r.get("tokens_per_s") and "tokens_per_s" in r]
        mem = [r["peak_memory_mb"] for r in records if "peak_memory_mb" in r]
        rows.append({"trial": tid, "seq_len": result.config.get("seq_len"),
                     "weight_bits": result.config.get("weight_bits"), "lr": result.config.get("lr"),
                     **{k: result.config.get(k) for k in keys if k not in ("seq_len", "weight_bits", "lr")},
                     "status": status, "steps": steps,
                     "best_val_ppl": min((v for _, v in ppl), default=math.nan),
                     "tokens_per_s": statistics.median(speeds) if speeds else math.nan,
                     "peak_memory_mb": max(mem) if mem else math.nan,
                     "error": None if result.error is None else f"{type(result.error).__name__}: {result.error}"[:300]})
        curves[tid] = sorted(ppl)
    rows.sort(key=lambda r: (r["seq_len"], r["weight_bits"], r.get("lr") or 0))
    return rows, curves


def mark_children(client, experiment: str, name: str, rows: list[dict]) -> None:
    """Tune kills stopped trials' drivers: close their MLflow runs with the right status."""
    from ringbit.tracking import experiment_id

    exp = experiment_id(client, experiment)
    for row in rows:
        found = client.search_runs([exp], f"tags.`ringbit.job_name` = '{trial_name(name, row['trial'])}'",
                                   max_results=1)
        if not found:
            continue
        run = found[0]
        status, terminal = {"finished": ("finished", "FINISHED"), "failed": ("failed", "FAILED"),
                            "stopped_early": ("stopped_early", "KILLED"),
                            "interrupted": ("interrupted", "KILLED")}.get(row["status"], (row["status"], "KILLED"))
        client.set_tag(run.info.run_id, STATUS_TAG, status)
        if row.get("error"):
            client.set_tag(run.info.run_id, "ringbit.error", row["error"])
        if run.info.status == "RUNNING" or row["status"] != "finished":
            client.set_terminated(run.info.run_id, terminal)


def run_sweep(cfg: SweepConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    from mlflow.tracking import MlflowClient

    from ringbit import tracking
    from ringbit.data.prepare import prepare
    from ringbit.services import PlatformSettings, ensure_client_env
    from ringbit.tune.report import plot_sweep, text_table, write_csv
    from ringbit.tune.space import base_config, grid, space_keys, trial_config

    ensure_client_env()
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")  # checkpoint-only reports
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "5")  # an interrupted sweep loses little
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    name = sweep_name(cfg)
    cfg = cfg.model_copy(update={"name": name})
    storage = default_storage(cfg)
    exp_dir = storage / name
    base = base_config(cfg)
    keys = list(space_keys(cfg))
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=True)

    home = PlatformSettings.from_env().home
    uri = tracking.resolve_tracking_uri(cfg.mlflow.tracking_uri)
    base_dir, tokenizer_config = None, {}
    if base.init_from:  # every trial continues from the same pretrained model
        from ringbit.train.pretrain import resolve_init_from

        base, base_dir, tokenizer_config = resolve_init_from(base, uri, log)
        for params in grid(cfg):  # the space again, now against the base's architecture
            trial_config(base, cfg, params, "check")
    data_dirs = {}
    for seq_len in sorted(set(cfg.space.seq_len)):
        tc = trial_config(base, cfg, {"seq_len": seq_len, "weight_bits": cfg.space.weight_bits[0]}, "data")
        data_dirs[seq_len] = str(prepare(tc.data, tc.model.vocab_size, tc.data.cache_dir or home / "data", log=log,
                                         tokenizer_dir=base_dir))

    client = MlflowClient(uri)
    parent, resumed = tracking.start_or_resume_run(client, cfg.mlflow.experiment, name)
    tracking.set_tags(client, parent, {SWEEP_TAG: name, "ringbit.kind": "sweep", **tracking.default_tags()})
    tracking.log_params(client, parent, flatten(cfg.model_dump(mode="json")))
    storage.mkdir(parents=True, exist_ok=True)
    saved = saved_config_path(storage, name)
    saved.write_text(to_yaml(cfg))
    client.log_artifact(parent, str(saved))
    log(f"[ringbit] sweep {name}: mlflow run {parent} ({'resumed' if resumed else 'new'}): "
        f"{tracking.run_url(uri, client, parent)}")

    trainable = tune.with_resources(
        tune.with_parameters(run_trial, sweep=cfg.model_dump(mode="json"), base=base.model_dump(mode="json"),
                             data_dirs=data_dirs, parent_run_id=parent, tracking_uri=uri,
                             storage=str(storage / f"{name}-trials"),
                             init_from_dir=str(base_dir) if base_dir else None,
                             tokenizer_config=tokenizer_config),
        {"cpu": TRIAL_DRIVER_CPU})
    if tune.Tuner.can_restore(str(exp_dir)):
        log(f"[ringbit] resuming sweep {name} from {exp_dir}: finished trials are kept")
        tuner = tune.Tuner.restore(str(exp_dir), trainable=trainable, resume_unfinished=True,
                                   resume_errored=False, restart_errored=False)
    else:
        parallel = concurrency(cfg, base.workers.num_workers, base.workers.use_gpu, ray.available_resources())
        choose = tune.grid_search if cfg.search == "grid" else tune.choice
        space = space_keys(cfg)
        search_alg = None
        if cfg.search == "optuna":
            from ray.tune.search.optuna import OptunaSearch

            search_alg = OptunaSearch()
        scheduler = (ASHAScheduler(time_attr="step", max_t=base.train.max_steps,
                                   grace_period=cfg.asha.grace_period,
                                   reduction_factor=cfg.asha.reduction_factor, brackets=cfg.asha.brackets)
                     if cfg.asha.enabled else FIFOScheduler())
        n_trials = cfg.num_samples * (math.prod(len(v) for v in space.values()) if cfg.search == "grid" else 1)
        log(f"[ringbit] sweep {name}: {n_trials} trials over {', '.join(keys)}; {parallel} at a time "
            f"({base.workers.num_workers} workers x {cfg.cpus_per_worker} CPU each); "
            f"{'ASHA' if cfg.asha.enabled else 'no early stopping'}")
        tuner = tune.Tuner(
            trainable,
            param_space={k: choose(v) for k, v in space.items()},
            tune_config=tune.TuneConfig(metric="val_ppl", mode="min", scheduler=scheduler,
                                        search_alg=search_alg, num_samples=cfg.num_samples,
                                        max_concurrent_trials=parallel),
            run_config=tune.RunConfig(name=name, storage_path=str(storage),
                                      failure_config=tune.FailureConfig(max_failures=0),
                                      callbacks=[_trial_lines_callback(keys, base.train.max_steps)],
                                      verbose=0),
        )

    interrupted = False

    def interrupt(signum, frame):  # `ringbit stop` / `ray job stop`: let Tune save its state
        nonlocal interrupted
        interrupted = True
        os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        results = tuner.fit()
    except BaseException:
        client.set_terminated(parent, "KILLED" if interrupted else "FAILED")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    interrupted = interrupted or bool(getattr(results, "experiment_interrupted", False))

    rows, curves = summarize(results, keys, base.train.max_steps, interrupted)
    mark_children(client, cfg.mlflow.experiment, name, rows)
    with tempfile.TemporaryDirectory() as tmp:
        files = [write_csv(rows, Path(tmp) / "sweep_summary.csv")]
        if any(r["best_val_ppl"] == r["best_val_ppl"] for r in rows):
            files += plot_sweep(rows, curves, Path(tmp))
        for f in files:
            client.log_artifact(parent, str(f))
            (exp_dir / f.name).write_bytes(f.read_bytes())
    best = min((r for r in rows if r["best_val_ppl"] == r["best_val_ppl"]),
               key=lambda r: r["best_val_ppl"], default=None)
    if best:
        client.log_metric(parent, "best_val_ppl", best["best_val_ppl"])
    for status in ("finished", "stopped_early", "failed"):
        client.log_metric(parent, f"trials_{status}", sum(r["status"] == status for r in rows))
    log("[ringbit] sweep results:")
    for line in text_table(rows).splitlines():
        log(f"[ringbit]   {line}")
    log(f"[ringbit] summary and plots: {tracking.run_url(uri, client, parent)} (artifacts) and {exp_dir}")
    client.set_terminated(parent, "KILLED" if interrupted else "FINISHED")
    if interrupted:
        log(f"[ringbit] sweep {name} interrupted; resume with: ringbit sweep --resume {name}")
    return {"name": name, "parent_run_id": parent, "rows": rows, "interrupted": interrupted}
