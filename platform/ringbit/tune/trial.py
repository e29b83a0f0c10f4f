"""One Tune trial: build the trial's pretraining config, open its MLflow child run, and fit a
TorchTrainer whose reports reach Tune through TuneReportCallback (the Ray 2.60 pattern: Tune runs
a driver function, not `Tuner(trainer)`)."""

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
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from ringbit import tracking
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
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"job": cfg.model_dump(mode="json"), "data_dir": data_dirs[cfg.data.seq_len],
                           "run_id": run_id, "tracking_uri": tracking_uri, "init_from_dir": init_from_dir,
                           "tokenizer_config": tokenizer_config or {}},
        scaling_config=ScalingConfig(num_workers=cfg.workers.num_workers, use_gpu=cfg.workers.use_gpu,
                                     resources_per_worker={"CPU": cfg.workers.cpus_per_worker}),
        run_config=RunConfig(name=name, storage_path=str(Path(storage) / "trials"),
                             failure_config=FailureConfig(max_failures=sweep_cfg.trial_max_failures),
                             callbacks=[TuneReportCallback()]),
    )
    try:
        trainer.fit()
    except Exception as exc:
        client.set_tag(run_id, STATUS_TAG, "failed")
        client.set_tag(run_id, "ringbit.error", str(exc)[:4000])
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_tag(run_id, STATUS_TAG, "finished")
    client.set_terminated(run_id, "FINISHED")
