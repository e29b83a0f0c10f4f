"""Driver of a pretraining job: prepare data, open (or reopen) the MLflow run, fit a Ray Train
TorchTrainer, then log and register the model. Runs inside a Ray job or on its own."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from ringbit.config import flatten, to_yaml
from ringbit.train.config import PretrainConfig, with_base_model


def job_name(cfg: PretrainConfig) -> str:
    return cfg.name or time.strftime("pretrain-%Y%m%d-%H%M%S")


def resolve_init_from(cfg: PretrainConfig, tracking_uri: str,
                      log: Callable[[str], None] = print) -> tuple[PretrainConfig, Path, dict]:
    """Continued pretraining: the base model's folder (downloaded when init_from is a registry
    model or a run), the config validated against its architecture (ConfigError on a conflict),
    and its tokenizer_config.json (chat template, eos) for the model this job saves."""
    from ringbit import tracking
    from ringbit.data.tokenizer import read_tokenizer_config

    base_dir = tracking.resolve_model_ref(cfg.init_from, tracking_uri)
    cfg = with_base_model(cfg, base_dir)
    m = cfg.model
    log(f"[ringbit] init_from {cfg.init_from} ({base_dir}): {m.n_layers} layers, d_model {m.d_model}, "
        f"{m.n_heads}/{m.kv_heads} heads, vocab {m.vocab_size}, max_seq_len {m.max_seq_len}"
        + (f", quant weight_bits {cfg.quant.weight_bits:g}" if cfg.quant else ""))
    return cfg, base_dir, read_tokenizer_config(base_dir)


def run_pretrain(cfg: PretrainConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    from mlflow.tracking import MlflowClient

    from ringbit import tracking
    from ringbit.data.prepare import prepare
    from ringbit.services import PlatformSettings, ensure_client_env

    ensure_client_env()
    import torch

    from ringbit.models import Transformer, count_parameters
    from ringbit.plots import log_training_curves
    from ringbit.train.driver import default_storage, ensure_ray, fit_on_ray
    from ringbit.train.loop import train_loop_per_worker

    name = job_name(cfg)
    home = PlatformSettings.from_env().home
    ensure_ray()
    uri = tracking.resolve_tracking_uri(cfg.mlflow.tracking_uri)
    base_dir, tokenizer_config = None, {}
    if cfg.init_from:
        cfg, base_dir, tokenizer_config = resolve_init_from(cfg, uri, log)
    data_dir = prepare(cfg.data, cfg.model.vocab_size, cfg.data.cache_dir or home / "data", log=log,
                       tokenizer_dir=base_dir)

    client = MlflowClient(uri)
    run_id, resumed = tracking.start_or_resume_run(client, cfg.mlflow.experiment, name)
    log(f"[ringbit] mlflow run {run_id} ({'resumed' if resumed else 'new'}): "
        f"{tracking.run_url(uri, client, run_id)}")
    with torch.device("meta"):  # count without allocating (a pretrained base can be large)
        n_params = count_parameters(Transformer(cfg.model, quant=cfg.quant))
    derived = {"derived.grad_accum_steps": cfg.grad_accum_steps, "derived.n_params": n_params,
               "derived.data_dir": str(data_dir)}
    if base_dir is not None:
        derived["derived.init_from_dir"] = str(base_dir)
    tracking.log_params(client, run_id, {**flatten(cfg.model_dump(mode="json")), **derived})
    tracking.set_tags(client, run_id, {**tracking.default_tags(),
                                       **({"ringbit.init_from": cfg.init_from} if cfg.init_from else {})})
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.yaml").write_text(to_yaml(cfg))
        client.log_artifact(run_id, str(Path(tmp) / "config.yaml"))
    client.log_artifact(run_id, str(data_dir / "tokenizer.json"))

    def finish(result) -> tuple[Any, str, str | None]:
        if result.checkpoint is None:
            raise RuntimeError("training ended without a checkpoint")
        log_training_curves(client, run_id, f"{name}: {n_params:,} parameters, "
                            f"{cfg.workers.num_workers} workers, ZeRO-{cfg.deepspeed.zero_stage}")
        with result.checkpoint.as_directory() as ckpt:
            model_dir = Path(ckpt) / "model"
            sample = _sample(model_dir)
            registered = tracking.log_and_register_model(
                uri, run_id, model_dir, cfg.mlflow.registered_model, cfg.mlflow.alias)
        return result, sample, registered

    result, sample, registered = fit_on_ray(
        train_loop_per_worker,
        {"job": cfg.model_dump(mode="json") | {"name": name}, "data_dir": str(data_dir), "run_id": run_id,
         "tracking_uri": uri, "init_from_dir": str(base_dir) if base_dir else None,
         "tokenizer_config": tokenizer_config},
        name=name, workers=cfg.workers, storage=default_storage(cfg.workers, home), client=client,
        run_id=run_id, keep_checkpoints=2, finish=finish, log=log,
        announce=f"[ringbit] training {n_params:,} parameters on {cfg.workers.num_workers} workers "
                 f"(ZeRO-{cfg.deepspeed.zero_stage}, {cfg.train.max_steps} steps"
                 f"{', from ' + cfg.init_from if cfg.init_from else ''})",
    )
    summary = {
        "name": name, "run_id": run_id, "run_url": tracking.run_url(uri, client, run_id),
        "registered_model": registered, "val_ppl": result.metrics.get("val_ppl"),
        "val_loss": result.metrics.get("val_loss"), "step": result.metrics.get("step"),
        "sample": sample,
    }
    log(f"[ringbit] done: val_ppl={summary['val_ppl']:.3f} step={summary['step']}")
    log(f"[ringbit] run: {summary['run_url']}")
    if registered:
        log(f"[ringbit] registered model: {registered}")
    log(f"[ringbit] sample: {sample!r}")
    return summary


def _sample(model_dir: Path, prompt: str = "The for statement") -> str:
    import torch

    from ringbit.models.io import load_model_dir

    model, tok = load_model_dir(model_dir)
    ids = torch.tensor([tok.encode(prompt).ids])
    return prompt + tok.decode(model.generate(ids, 24)[0, ids.shape[1]:].tolist())
