"""Starting a training job from a pretrained model (continued pretraining with `init_from`, and
fine-tuning): find the base model's folder on this worker and load its weights into the model
before DeepSpeed wraps it (ZeRO-3 partitions the parameters inside deepspeed.initialize, so the
full weights must be in place first)."""

from __future__ import annotations

from pathlib import Path

import torch


def worker_base_dir(folder: str | None, ref: str, tracking_uri: str | None) -> Path:
    """The base folder the driver resolved, or, on a node that cannot see it (a multi-node
    cluster without shared storage), the same reference downloaded here from MLflow."""
    if folder and (Path(folder) / "model.safetensors").is_file():
        return Path(folder)
    from ringbit.tracking import resolve_model_ref

    return resolve_model_ref(ref, tracking_uri)


def load_base_weights(model: torch.nn.Module, folder: str | Path) -> None:
    """Copy model.safetensors into `model` (strict: every parameter, same shapes). BitLinear keeps
    nn.Linear's parameter names, so FP weights load into a BitNet model of the same architecture
    (continued training in 1 or 1.58 bits from the pretrained latent weights)."""
    from ringbit.models.io import load_weights

    load_weights(model, Path(folder) / "model.safetensors")
