"""The one driver of every training job: pretraining (train/pretrain.py), fine-tuning
(train/sft.py) and each Tune trial (tune/trial.py) fit a Ray Train TorchTrainer through
`fit_on_ray`, which also owns the MLflow run's end: FINISHED when the job and its `finish` step
succeed, KILLED when it is stopped (`ringbit stop` / `ray job stop` send SIGTERM), FAILED when it
crashes; never left RUNNING."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable

from ringbit.tracking import mark_failed
from ringbit.train.config import WorkersConfig
from ringbit.train.resources import placement_note, wait_for_placement



def ensure_ray() -> None:
    """Connect to the cluster (RAY_ADDRESS, or the one this job runs in) unless connected."""
    import ray

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=True)


def default_storage(workers: WorkersConfig, home: Path) -> Path:
    """Ray Train's checkpoint storage: workers.storage_path, else <ringbit home>/runs."""
    return Path(workers.storage_path or home / "runs").expanduser().resolve()


def fit_on_ray(loop_fn: Callable[[dict[str, Any]], None], loop_config: dict[str, Any], *, name: str,
               workers: WorkersConfig, storage: str | Path, client, run_id: str,
               max_failures: int | None = None, keep_checkpoints: int | None = None,
               callbacks: list | None = None, announce: str | None = None,
               finish: Callable[[Any], Any] | None = None,
               on_failure: Callable[[BaseException], None] | None = None,
               handle_sigterm: bool = True, note_placement: bool = True, log: Callable[[str], None] = print) -> Any:
    """Fit `loop_fn` on `workers` (Ray Train run `name` under `storage`: the same name resumes
    from its latest checkpoint), then `finish(result)` (log, register) and mark the MLflow run
    FINISHED; returns finish's value, or the Result without `finish`.

    While it runs, SIGTERM marks the run KILLED and exits (the previous handler comes back after;
    only in the main thread: a Tune trial's driver runs in a thread and Tune ends its runs). Any
    error, in the fit or in `finish`, calls `on_failure(error)` and marks the run FAILED unless it
    is already KILLED or FINISHED, then propagates. `max_failures` defaults to
    workers.max_failures; `keep_checkpoints` None keeps every checkpoint; `callbacks` go to the
    RunConfig (TuneReportCallback for a trial); `announce` is logged just before the fit, after a
    note when the workers do not fit in the free resources (`note_placement`; a sweep's trials
    wait for each other on purpose)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    ensure_ray()
    stopped = False

    def killed(signum, frame):
        nonlocal stopped
        stopped = True
        client.set_terminated(run_id, "KILLED")
        raise SystemExit(128 + signum)

    sigterm = handle_sigterm and threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, killed) if sigterm else None
    try:
        trainer = TorchTrainer(
            loop_fn,
            train_loop_config=loop_config,
            scaling_config=ScalingConfig(num_workers=workers.num_workers, use_gpu=workers.use_gpu,
                                         resources_per_worker={"CPU": workers.cpus_per_worker}),
            run_config=RunConfig(
                name=name, storage_path=str(storage),
                failure_config=FailureConfig(
                    max_failures=workers.max_failures if max_failures is None else max_failures),
                checkpoint_config=CheckpointConfig(num_to_keep=keep_checkpoints),
                callbacks=callbacks,
            ),
        )
        note = note_placement and placement_note(workers.num_workers, workers.cpus_per_worker, workers.use_gpu)
        if note:
            log(f"[ringbit] note: {note}")
            wait_for_placement(workers.num_workers, workers.cpus_per_worker, workers.use_gpu,
                               workers.placement_timeout_s)
        if announce:
            log(announce)
        result = trainer.fit()
        value = finish(result) if finish is not None else result
    except BaseException as exc:
        if on_failure is not None:
            try:
                on_failure(exc)
            except Exception as hook_exc:  # noqa: BLE001  the job's own error is the one to see
                print(f"[ringbit] on_failure: {type(hook_exc).__name__}: {hook_exc}", file=sys.stderr)
        if stopped:
            try:  # the handler's own set_terminated may be what failed
                if client.get_run(run_id).info.status != "KILLED":
                    client.set_terminated(run_id, "KILLED")
            except Exception:  # noqa: BLE001
                pass
        else:
            mark_failed(client, run_id, log)
        raise
    finally:
        if sigterm:
            signal.signal(signal.SIGTERM, previous)
    client.set_terminated(run_id, "FINISHED")
    return value
