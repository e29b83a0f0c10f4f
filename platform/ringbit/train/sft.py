"""Supervised fine-tuning of a platform LM on (prompt, completion) pairs, shared by the
InstructScore evaluator and the FireAct ReAct agents: the prompt's tokens are masked from the loss
(only the completion is learned), Ray Train + DeepSpeed like pretraining, val_ppl over held-out
completions' tokens in MLflow, the model registered."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ringbit.config import flatten
from ringbit.train.config import SFTConfig
from ringbit.train.worker import IGNORE  # noqa: F401  (the evaluator and tests import it from here)

Pairs = list[tuple[str, str]]


def tokenize_pairs(pairs: Pairs, tokenizer, max_seq_len: int, eos: int | None = None) -> list[tuple[list[int], int]]:
    """(prompt + completion + EOS token ids, number of prompt ids); longer ones are dropped.
    Prompt and completion are encoded apart, as a service sends the prompt alone. `eos` ends every
    completion: the model's own eos token (`completion_eos`); None = <|endoftext|>."""
    from ringbit.data.tokenizer import eos_id

    eos, rows = eos_id(tokenizer) if eos is None else eos, []
    for prompt_text, completion in pairs:
        prompt = tokenizer.encode(prompt_text).ids
        target = tokenizer.encode(completion).ids + [eos]
        if len(prompt) + len(target) <= max_seq_len + 1:
            rows.append((prompt + target, len(prompt)))
    return rows


def to_tensors(rows: list[tuple[list[int], int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ids [N, L+1] padded; labels [N, L]: the next token where it is completion, IGNORE elsewhere."""
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full((len(rows), width - 1), IGNORE, dtype=torch.long)
    for i, (row, n_prompt) in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        # position t predicts token t+1: learn the completion tokens (index >= n_prompt) only
        labels[i, n_prompt - 1 : len(row) - 1] = torch.tensor(row[n_prompt:])
    return ids, labels


def _files_stamp(data_cfg: Any) -> list[Any]:
    """Size and mtime of every data file the config names: a file rewritten in place (new
    demonstrations, edited trajectories) must not reuse the old file's cached tensors."""
    values = data_cfg.values() if isinstance(data_cfg, dict) else ()
    out = []
    for v in values:
        if isinstance(v, str) and Path(v).is_file():
            stat = Path(v).stat()
            out.append([v, stat.st_size, stat.st_mtime_ns])
    return out


def prepare_pairs(kind: str, cfg: SFTConfig, base_dir: Path, out_dir: Path,
                  make_pairs: Callable[[], tuple[Pairs, Pairs]], log=print) -> Path:
    """Tokenise (train, val) pairs once into a cached tensor file keyed by data + tokenizer."""
    from tokenizers import Tokenizer

    from ringbit.data.tokenizer import completion_eos, read_tokenizer_config

    tok_json = (base_dir / "tokenizer.json").read_text()
    tok = Tokenizer.from_str(tok_json)
    eos_token, eos = completion_eos(tok, read_tokenizer_config(base_dir))
    data_cfg = cfg.model_dump(mode="json").get("data")
    key = hashlib.sha256(json.dumps([kind, data_cfg, _files_stamp(data_cfg), cfg.max_seq_len,
                                     tok_json, eos]).encode()).hexdigest()[:16]
    path = out_dir / f"{kind}-sft-{key}.pt"
    if path.exists():
        log(f"[ringbit] data: reusing {path}")
        return path
    train_pairs, val_pairs = make_pairs()
    val = tokenize_pairs(val_pairs, tok, cfg.max_seq_len, eos)
    train = tokenize_pairs(train_pairs, tok, cfg.max_seq_len, eos)
    if not train or not val:
        raise ValueError(f"max_seq_len {cfg.max_seq_len} is too short for any example; raise it")
    pad = eos  # padding is never a target (labels IGNORE) and never attended to by real tokens
    data = dict(zip(("train_ids", "train_labels"), to_tensors(train, pad)))
    data.update(zip(("val_ids", "val_labels"), to_tensors(val, pad)))
    out_dir.mkdir(parents=True, exist_ok=True)
    # A unique name per writer, then an atomic rename: a crashed preparation leaves no half file,
    # and two jobs preparing the same data at once do not write into one temporary file.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    torch.save(data, tmp)
    tmp.replace(path)
    dropped = len(train_pairs) + len(val_pairs) - len(train) - len(val)
    log(f"[ringbit] data: {len(train)} train / {len(val)} val examples "
        f"({dropped} longer than {cfg.max_seq_len} tokens dropped); completions end with "
        f"{eos_token} (id {eos})")
    return path


def _masked_nll(model, ids: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    width = int((labels != IGNORE).nonzero()[:, 1].max()) + 1 if (labels != IGNORE).any() else 1
    logits = model(ids[:, :width])
    nll = F.cross_entropy(logits.float().flatten(0, 1), labels[:, :width].flatten(),
                          ignore_index=IGNORE, reduction="sum")
    return nll, int((labels[:, :width] != IGNORE).sum())


def sft_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry of the fine-tuning loop."""
    from ringbit.train.worker import ray_launcher

    run_sft_training(config, ray_launcher())


def run_sft_training(config: dict[str, Any], launcher) -> None:
    from ringbit.data.tokenizer import read_tokenizer_config
    from ringbit.models import Transformer
    from ringbit.models.io import load_weights, read_model_meta, save_model_dir
    from ringbit.train.perplexity import perplexity
    from ringbit.train.progress import format_progress
    from ringbit.train.worker import (all_reduce, build_engine, load_checkpoint,
                                      metric_buffer, peak_memory_mb, save_checkpoint)

    # Only the shared fields matter here; each workflow's `data` section was consumed before.
    cfg = SFTConfig.model_validate({k: v for k, v in config["job"].items() if k != "data"})
    rank, world, device = launcher.rank, launcher.world, launcher.device
    torch.manual_seed(cfg.train.seed)
    base = Path(config["base_dir"])
    mcfg, quant, packing = read_model_meta(base)
    if packing:
        raise ValueError("fine-tune the unpacked model; packed models are for inference")
    mcfg = mcfg.model_copy(update={"max_seq_len": max(mcfg.max_seq_len, cfg.max_seq_len)})
    model = Transformer(mcfg, quant=quant)
    load_weights(model, base / "model.safetensors")
    if cfg.lora:  # adapters only; merged into plain weights when the model is saved
        if quant is not None:
            raise ValueError("lora: the base model is quantized (BitLinear); fine-tune it without lora")
        from ringbit.models.lora import apply_lora

        wrapped = apply_lora(model, cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, tuple(cfg.lora.targets))
        if rank == 0:
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
            print(f"[ringbit] lora r={cfg.lora.r} alpha={cfg.lora.alpha:g}: {wrapped} projections, "
                  f"{trainable:,} of {sum(p.numel() for p in model.parameters()):,} parameters trained", flush=True)
    data = torch.load(config["data_path"], weights_only=True)  # tensors only: never unpickle code
    engine, _, scheduler = build_engine(model, cfg.train, cfg.deepspeed, device, data_parallel=world)
    start = load_checkpoint(engine, launcher)
    buffer = metric_buffer(config, rank)

    def reduce(*values: float) -> list[float]:
        return all_reduce(list(values), device)

    def write_model(folder: Path, weights) -> None:
        if cfg.lora:
            from ringbit.models.lora import merge_lora_state

            weights = merge_lora_state(weights, cfg.lora.alpha / cfg.lora.r)
        # Trained on bare prompts: served models are asked without the base's chat template.
        save_model_dir(folder, mcfg, weights, (base / "tokenizer.json").read_text(),
                       quant=quant, tokenizer_config=read_tokenizer_config(base), prompt_format="plain")

    t = cfg.train
    micro, accum = t.micro_batch_size, t.global_batch_size // (t.micro_batch_size * world)
    n_train = data["train_ids"].shape[0]

    def validate() -> tuple[float, float]:
        engine.eval()
        with torch.no_grad():
            vt = vc = 0.0
            for i in range(rank, data["val_ids"].shape[0], world * micro):
                idx = torch.arange(i, min(i + world * micro, data["val_ids"].shape[0]), world)
                nll, c = _masked_nll(engine, data["val_ids"][idx].to(device), data["val_labels"][idx].to(device))
                vt, vc = vt + nll.item(), vc + c
        engine.train()
        return perplexity(*reduce(vt, vc))

    if start == 0 and t.eval_at_start:  # the base model on the held-out completions
        first = dict(zip(("val_loss", "val_ppl"), validate()))
        if buffer:
            buffer.add_start(**first)
            buffer.flush()
        if rank == 0:
            print(format_progress(0, t.max_steps, first), flush=True)
        launcher.report({**first, "step": 0}, None)
    for step in range(start, t.max_steps):
        began = time.perf_counter()
        order = torch.randperm(n_train, generator=torch.Generator().manual_seed(t.seed * 100_003 + step))
        mine = order.repeat(-(-t.global_batch_size // n_train))[: t.global_batch_size][rank::world]
        nll_sum = tokens = 0.0
        for m in range(accum):
            idx = mine[m * micro : (m + 1) * micro]
            nll, count = _masked_nll(engine, data["train_ids"][idx].to(device), data["train_labels"][idx].to(device))
            engine.backward(nll / max(count, 1))
            engine.step()
            nll_sum, tokens = nll_sum + nll.item(), tokens + count
        done = step + 1
        total, count = reduce(nll_sum, tokens)
        memory = all_reduce([peak_memory_mb(device)], device, dist.ReduceOp.MAX)[0]
        metrics = {"train_loss": total / max(count, 1), "lr": scheduler.get_last_lr()[0],
                   "tokens_per_s": count / (time.perf_counter() - began),  # completion tokens
                   "peak_memory_mb": memory}
        is_eval = done % t.eval_interval == 0 or done == t.max_steps
        if is_eval:
            metrics["val_loss"], metrics["val_ppl"] = validate()
        if buffer:
            buffer.add(done, **metrics)
            buffer.flush()
        if rank == 0 and (is_eval or done % t.log_interval == 0):
            print(format_progress(done, t.max_steps, metrics), flush=True)
        if done % t.checkpoint_interval == 0 or done == t.max_steps:
            save_checkpoint(engine, launcher, metrics, done, zero_stage=cfg.deepspeed.zero_stage,
                            write_model=write_model if done == t.max_steps else None)
        elif is_eval:
            launcher.report({**metrics, "step": done}, None)
    if buffer:
        buffer.close()  # what an MLflow outage kept back, retried with backoff


def run_sft(cfg: SFTConfig, kind: str, make_pairs: Callable[[], tuple[Pairs, Pairs]], goal: str,
            log=print) -> dict[str, Any]:
    """Fine-tune cfg.base_model on make_pairs()' (train, val) pairs; `goal` words the log line."""
    from mlflow.tracking import MlflowClient

    from ringbit import tracking
    from ringbit.services import PlatformSettings, ensure_client_env
    from ringbit.train.driver import default_storage, ensure_ray, fit_on_ray

    ensure_client_env()
    name = cfg.name or time.strftime(f"finetune-{kind}-%Y%m%d-%H%M%S")
    home = PlatformSettings.from_env().home
    ensure_ray()
    uri = tracking.resolve_tracking_uri(cfg.mlflow.tracking_uri)
    base_dir = tracking.resolve_model_ref(cfg.base_model, uri)
    data_path = prepare_pairs(kind, cfg, base_dir, home / "data", make_pairs, log=log)
    client = MlflowClient(uri)
    run_id, resumed = tracking.start_or_resume_run(client, cfg.mlflow.experiment, name)
    log(f"[ringbit] mlflow run {run_id} ({'resumed' if resumed else 'new'}): {tracking.run_url(uri, client, run_id)}")
    tracking.log_params(client, run_id, {**flatten(cfg.model_dump(mode="json")), "derived.data_path": str(data_path)})
    tracking.set_tags(client, run_id, tracking.default_tags())

    def finish(result):
        with result.checkpoint.as_directory() as ckpt:
            registered = tracking.log_and_register_model(uri, run_id, Path(ckpt) / "model",
                                                         cfg.mlflow.registered_model, cfg.mlflow.alias)
        return result, registered

    result, registered = fit_on_ray(
        sft_loop_per_worker,
        {"job": cfg.model_dump(mode="json"), "base_dir": str(base_dir), "data_path": str(data_path),
         "run_id": run_id, "tracking_uri": uri},
        name=name, workers=cfg.workers, storage=default_storage(cfg.workers, home), client=client,
        run_id=run_id, keep_checkpoints=2, finish=finish, log=log,
        announce=f"[ringbit] fine-tuning {cfg.base_model} to {goal} "
                 f"({cfg.train.max_steps} steps, {cfg.workers.num_workers} workers)",
    )
    log(f"[ringbit] done: val_ppl={result.metrics.get('val_ppl', float('nan')):.4g}")
    if registered:
        log(f"[ringbit] registered model: {registered}")
    return {"run_id": run_id, "metrics": result.metrics, "registered": registered}
