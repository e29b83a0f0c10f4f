"""Tokens/s of the same model and loop: Ray Train + DeepSpeed vs plain torchrun + DeepSpeed.

    python benchmarks/ray_overhead.py [--config jobs/configs/demo.yaml] [--steps 100] [--repeats 2]

Both sides run `ringbit.train.loop.run_training` on the same prepared shards with 2 gloo workers.
Reported separately: steady-state tokens/s (median step time after warm-up steps) and the fixed
start-up cost (launch -> end of the first step). Launchers alternate A B B A ... so drift on a
shared 2-core machine hits both alike; each figure is the median over repeats. Prints a table, writes JSON to
benchmarks/results/ray_overhead.json and logs to MLflow when a tracking server answers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("RAY_AUTH_MODE", "token")


def torchrun_worker(config_path: str) -> None:
    """One torchrun process: the same loop, with no-op checkpoint plumbing."""
    import torch
    import torch.distributed as dist

    from ringbit.train.loop import Launcher, run_training

    dist.init_process_group("gloo")
    config = json.loads(Path(config_path).read_text())
    run_training(config, Launcher(dist.get_rank(), dist.get_world_size(), torch.device("cpu"),
                                  lambda: contextlib.nullcontext(None), lambda metrics, folder: None))
    dist.destroy_process_group()


def summarize(name: str, trials: list[tuple[float, list[dict]]], tokens_per_step: int, warmup: int) -> dict:
    """Median over trials of (steady median step time, start-up time)."""
    steps = [statistics.median(s["seconds"] for s in log[warmup:]) for _, log in trials]
    startups = [log[0]["end"] - launched for launched, log in trials]
    median = statistics.median(steps)
    return {"launcher": name, "startup_s": statistics.median(startups),
            "steady_tokens_per_s": tokens_per_step / median, "median_step_s": median,
            "trials_tokens_per_s": [tokens_per_step / s for s in steps], "trials": len(trials)}


def run_torchrun(config: dict, workers: int) -> tuple[float, list[dict]]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg_path, log_path = Path(tmp) / "config.json", Path(tmp) / "steps.json"
        cfg_path.write_text(json.dumps({**config, "step_log_path": str(log_path)}))
        launched = time.time()
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        f"--nproc_per_node={workers}", __file__, "--torchrun-worker", str(cfg_path)],
                       check=True, cwd=REPO)
        return launched, json.loads(log_path.read_text())


def run_ray(config: dict, workers: int, storage: str) -> tuple[float, list[dict]]:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from ringbit.train.loop import train_loop_per_worker

    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "steps.json"
        launched = time.time()
        TorchTrainer(train_loop_per_worker,
                     train_loop_config={**config, "step_log_path": str(log_path)},
                     scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": 1}),
                     run_config=RunConfig(name=f"bench-{int(launched)}", storage_path=storage)).fit()
        return launched, json.loads(log_path.read_text())


def log_to_mlflow(rows: list[dict], ratio: float, params: dict) -> str | None:
    try:
        from mlflow.tracking import MlflowClient

        from ringbit.tracking import experiment_id, resolve_tracking_uri

        client = MlflowClient(resolve_tracking_uri())
        run = client.create_run(experiment_id(client, "ringbit-benchmarks"), run_name="ray-overhead")
    except Exception as exc:  # no server: the JSON file is the record
        print(f"(MLflow not reachable, not logged: {type(exc).__name__})")
        return None
    rid = run.info.run_id
    for k, v in params.items():
        client.log_param(rid, k, v)
    for r in rows:
        for k in ("startup_s", "steady_tokens_per_s", "median_step_s"):
            client.log_metric(rid, f"{r['launcher']}.{k}", r[k])
    client.log_metric(rid, "overhead_ratio", ratio)
    client.set_terminated(rid)
    return rid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--torchrun-worker", help=argparse.SUPPRESS)
    ap.add_argument("--config", default=str(REPO / "jobs/configs/demo.yaml"))
    ap.add_argument("--steps", type=int, default=100, help="optimizer steps per trial")
    ap.add_argument("--repeats", type=int, default=2, help="trials per launcher, in A B B A order")
    ap.add_argument("--warmup", type=int, default=10, help="steps excluded from the steady state")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/ray_overhead.json"))
    args = ap.parse_args()
    if args.torchrun_worker:
        return torchrun_worker(args.torchrun_worker)

    import ray

    from ringbit.config import load_config
    from ringbit.train.config import PretrainConfig
    from ringbit.data.prepare import prepare

    cfg = load_config(PretrainConfig, args.config, [
        *args.overrides, f"train.max_steps={args.steps}", f"train.checkpoint_interval={args.steps}",
        f"train.eval_interval={args.steps}", "train.eval_batches=1", f"train.log_interval={args.steps}",
        "train.warmup_steps=1"])
    workers = cfg.workers.num_workers
    ray.init(address="local", num_cpus=os.cpu_count(), log_to_driver=False)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = prepare(cfg.data, cfg.model.vocab_size, Path(tmp) / "data")
        config = {"job": cfg.model_dump(mode="json"), "data_dir": str(data_dir)}
        tokens_per_step = cfg.train.global_batch_size * cfg.data.seq_len
        trials: dict[str, list] = {"torchrun-deepspeed": [], "raytrain-deepspeed": []}
        launch = {"torchrun-deepspeed": lambda: run_torchrun(config, workers),
                  "raytrain-deepspeed": lambda: run_ray(config, workers, str(Path(tmp) / "runs"))}
        order = ["torchrun-deepspeed", "raytrain-deepspeed"]
        for i in range(args.repeats):
            for name in order if i % 2 == 0 else order[::-1]:
                trials[name].append(launch[name]())
        rows = [summarize(name, trials[name], tokens_per_step, args.warmup) for name in order]
    ray.shutdown()
    ratio = rows[0]["steady_tokens_per_s"] / rows[1]["steady_tokens_per_s"]
    print(f"\n{'launcher':22s} {'tokens/s (steady)':>18s} {'median step s':>14s} {'start-up s':>11s}")
    for r in rows:
        print(f"{r['launcher']:22s} {r['steady_tokens_per_s']:18.0f} {r['median_step_s']:14.4f} {r['startup_s']:11.1f}")
    print(f"overhead ratio (torchrun tokens/s / Ray tokens/s): {ratio:.3f}  (goal <= 1.10)")
    params = {"config": args.config, "steps": args.steps, "warmup": args.warmup, "workers": workers,
              "repeats": args.repeats,
              "tokens_per_step": tokens_per_step, "overrides": " ".join(args.overrides)}
    result = {"rows": rows, "overhead_ratio": ratio, "params": params,
              "mlflow_run": log_to_mlflow(rows, ratio, params)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
