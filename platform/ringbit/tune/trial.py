"""One Tune trial: build the trial's pretraining config, open its MLflow child run, and fit a
TorchTrainer (the one training driver, ringbit.train.driver.fit_on_ray) whose reports reach Tune
through TuneReportCallback (the Ray 2.60 pattern: Tune runs a driver function, not
`Tuner(trainer)`). Tune owns the trial's lifecycle: it stops a trial by ending its driver, and the
sweep closes stopped trials' runs (tune/sweep.py mark_children), so no SIGTERM handler here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ringbit.config import flatten
from ringbit.train.config import PretrainConfig
from ringbit.tune.space import SweepConfig

PARENT_TAG = "mlflow.parentRunId"  # how the MLflow UI nests runs
SWEEP_TAG, STATUS_TAG = "ringbit.sweep", "ringbit.trial_status"


def trial_name(sweep_name: str, trial_id: str) -> str:
    return f"{sweep_name}-{trial_id}"


def run_trial(params: dict[str, Any], *, sweep: dict, base: dict, data_dirs: dict[int, str],
              parent_run_id: str, tracking_uri: str, storage: str, init_from_dir: str | None = None,
              tokenizer_config: dict | None = None) -> None:
    from mlflow.tracking import MlflowClient
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from ringbit import tracking
    from ringbit.train.driver import fit_on_ray
    from ringbit.train.loop import train_loop_per_worker
    from ringbit.tune.space import trial_config

    base_cfg = PretrainConfig.model_validate(base)
    sweep_cfg = SweepConfig.model_validate(sweep, context={"base": base_cfg})
    name = trial_name(sweep_cfg.name, tune.get_context().get_trial_id())
    cfg = trial_config(base_cfg, sweep_cfg, params, name)

    client = MlflowClient(tracking_uri)
    run_id, resumed = tracking.start_or_resume_run(client, sweep_cfg.mlflow.experiment, name)
    if not resumed:
        client.set_tag(run_id, "mlflow.runName", "-".join(f"{k.split('.')[-1]}={v}" for k, v in params.items()))
    tracking.set_tags(client, run_id, {PARENT_TAG: parent_run_id, SWEEP_TAG: sweep_cfg.name,
                                       STATUS_TAG: "running", **tracking.default_tags()})
    tracking.log_params(client, run_id, {**flatten(cfg.model_dump(mode="json")),
                                         **{f"trial.{k}": v for k, v in params.items()}})

    def failed(exc: BaseException) -> None:
        if isinstance(exc, Exception):
            client.set_tag(run_id, STATUS_TAG, "failed")
            client.set_tag(run_id, "ringbit.error", str(exc)[:4000])

    fit_on_ray(
        train_loop_per_worker,
        {"job": cfg.model_dump(mode="json"), "data_dir": data_dirs[cfg.data.seq_len], "run_id": run_id,
         "tracking_uri": tracking_uri, "init_from_dir": init_from_dir, "tokenizer_config": tokenizer_config or {}},
        name=name, workers=cfg.workers, storage=Path(storage) / "trials", client=client, run_id=run_id,
        max_failures=sweep_cfg.trial_max_failures, callbacks=[TuneReportCallback()],
        finish=lambda result: client.set_tag(run_id, STATUS_TAG, "finished"),
        on_failure=failed, handle_sigterm=False, note_placement=False,
    )
