"""Training configs: the optimisation schedule, DeepSpeed, the Ray Train workers and MLflow
tracking shared by every training job; the pretraining job (PretrainConfig, with continued
pretraining from a base model: init_from) and supervised fine-tuning (SFTConfig, LoRAConfig),
which the fine-tuning workflows extend with their own `data` section.

Pure pydantic + json (no torch, Ray or MLflow), so validating a job is instant.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, model_validator

from ringbit.config import StrictModel, resolve_user_path, validate
from ringbit.data.config import DataConfig
from ringbit.models.config import ModelConfig
from ringbit.parallel.config import ParallelConfig
from ringbit.quant.config import QuantConfig

# --------------------------------------------------------------------------------------------
# Optimisation, engine, workers, tracking: every training job's sections
# --------------------------------------------------------------------------------------------


class TrainConfig(StrictModel):
    """Optimisation, schedule and the eval/checkpoint cadence."""

    max_steps: int = Field(200, ge=1, description="Optimizer steps in total.")
    micro_batch_size: int = Field(8, ge=1, description="Sequences per worker per forward pass.")
    global_batch_size: int = Field(
        16,
        ge=1,
        description=(
            "Sequences per optimizer step over all workers; must divide by "
            "micro_batch_size * workers (the quotient is gradient accumulation)."
        ),
    )
    lr: float = Field(3e-3, gt=0, description="Peak learning rate.")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Final LR as a fraction of lr.")
    warmup_steps: int = Field(20, ge=0, description="Linear warmup steps.")
    schedule: Literal["cosine", "linear", "polynomial", "two_stage", "constant"] = Field(
        "cosine",
        description=(
            "Decay after warmup to min_lr_ratio: cosine, linear, polynomial (power poly_power; "
            "BitNet), or two_stage (linear decay with a sudden cool-down to stage2_lr_ratio of "
            "the curve at half way; BitNet b1.58)."
        ),
    )
    poly_power: float = Field(1.0, gt=0, description="Exponent of the polynomial schedule.")
    stage2_lr_ratio: float = Field(
        0.5, gt=0, le=1, description="two_stage: LR multiplier applied from half way on."
    )
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay (matrices only).")
    weight_decay_schedule: Literal["constant", "two_stage"] = Field(
        "constant",
        description="two_stage: weight_decay for the first half, then 0 (BitNet b1.58).",
    )
    beta1: float = Field(0.9, ge=0, lt=1, description="AdamW beta1.")
    beta2: float = Field(0.95, ge=0, lt=1, description="AdamW beta2.")
    grad_clip: float = Field(1.0, ge=0, description="Global gradient-norm clip; 0 = off.")
    eval_interval: int = Field(25, ge=1, description="Steps between validation passes.")
    eval_batches: int | None = Field(
        None, ge=1, description="Cap on validation batches per worker; None = whole split."
    )
    eval_at_start: bool | None = Field(
        None,
        description=(
            "Validate once before the first update (logged at step 0): where a pretrained model "
            "starts. None = only when continuing from a pretrained model (init_from)."
        ),
    )
    checkpoint_interval: int = Field(25, ge=1, description="Steps between checkpoints.")
    log_interval: int = Field(5, ge=1, description="Steps between progress lines.")
    seed: int = Field(0, description="Seed for init and data order.")

    @model_validator(mode="after")
    def _warmup_fits(self) -> "TrainConfig":
        if self.warmup_steps >= self.max_steps:
            raise ValueError(
                f"warmup_steps ({self.warmup_steps}) must be smaller than max_steps ({self.max_steps})"
            )
        return self


class DeepSpeedConfig(StrictModel):
    """DeepSpeed engine settings."""

    zero_stage: Literal[0, 1, 2, 3] = Field(2, description="ZeRO stage (0 = plain data parallel).")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto = bf16 on GPUs that support it, else fp32."
    )
    extra: dict[str, Any] = Field(
        default_factory=dict, description="Merged last into the DeepSpeed config dict (advanced)."
    )


class WorkersConfig(StrictModel):
    """Ray Train scaling and fault tolerance."""

    num_workers: int = Field(2, ge=1, description="Ray Train workers (processes).")
    use_gpu: bool = Field(False, description="One GPU per worker (NCCL); False = CPU with gloo.")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs Ray reserves per worker.")
    max_failures: int = Field(1, ge=0, description="Worker-group restarts before the run fails.")
    placement_timeout_s: float = Field(
        300.0, ge=0, description="Seconds to wait for the workers' resources before the job fails "
        "with the shortfall (0 = wait forever, e.g. for an autoscaler to add nodes).")
    storage_path: str | None = Field(
        None, description="Ray Train checkpoint storage; None = <ringbit home>/runs."
    )


class TrackingConfig(StrictModel):
    """MLflow tracking and registry."""

    experiment: str = Field("ringbit-pretrain", description="MLflow experiment name.")
    tracking_uri: str | None = Field(
        None, description="MLflow server; None = $MLFLOW_TRACKING_URI or the local platform."
    )
    registered_model: str | None = Field(
        "ringbit-lm", description="Registry name for the final model; None = do not register."
    )
    alias: str = Field(
        "current",
        pattern=r"^[A-Za-z][A-Za-z0-9_-]*$",
        description="Alias set on the new model version ('latest' is reserved by MLflow).",
    )

    @model_validator(mode="after")
    def _alias_not_reserved(self) -> "TrackingConfig":
        if self.alias.lower() == "latest":
            raise ValueError("alias 'latest' is reserved by MLflow; use e.g. 'current' or 'champion'")
        return self


# --------------------------------------------------------------------------------------------
# Pretraining
# --------------------------------------------------------------------------------------------

# Continued pretraining (init_from): the architecture comes from the base model's folder.
INIT_FROM_DIR = "init_from_dir"  # validation context key: the folder a registry/run ref resolved to
EXTENDABLE_MODEL_FIELDS = ("max_seq_len",)  # what a model section may still set with init_from
_REMOTE_REF = re.compile(r"^(models:/|runs:/)|^[0-9a-f]{32}$")


def is_remote_model_ref(ref: str) -> bool:
    """models:/…, runs:/… or a bare MLflow run id: resolved (downloaded) by the job's driver."""
    return bool(_REMOTE_REF.match(ref))


def local_model_folder(ref: str) -> Path | None:
    """The absolute folder a model reference names (relative = where the user ran ringbit), None
    for registry and run references; ValueError when it is neither."""
    if is_remote_model_ref(ref):
        return None
    folder = resolve_user_path(ref)
    if not (folder / "config.json").is_file():
        raise ValueError(
            f"init_from: {ref!r} is neither a model folder ({folder}/config.json not found) nor an "
            "MLflow run id, runs:/… or models:/name@alias"
        )
    return folder.resolve()


def read_base_meta(folder: str | Path) -> dict[str, Any]:
    """config.json of a model folder as {"model", "quant", "packing"} (json only: no torch)."""
    meta = json.loads((Path(folder) / "config.json").read_text())
    return meta if "model" in meta else {"model": meta, "quant": None, "packing": None}


def _same(a: Any, b: Any) -> bool:
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-6)
    return a == b


def model_section_from_base(base_model: dict[str, Any], user: Any, ref: str) -> dict[str, Any]:
    """The base's architecture with what the user's `model` section may change (max_seq_len).
    A field that differs from the base is an error naming it; equal values are accepted (a
    resolved config round-trips), unknown keys are left for the usual 'unknown key' error."""
    if isinstance(user, BaseModel):
        user = user.model_dump(mode="json", exclude_unset=True)
    if user is not None and not isinstance(user, dict):
        return user  # not a section: the usual type error names it
    merged = ModelConfig.model_validate(base_model).model_dump(mode="json")
    problems = []
    for key, value in (user or {}).items():
        if key not in merged or key in EXTENDABLE_MODEL_FIELDS:
            merged[key] = value
        elif not _same(value, merged[key]):
            problems.append(
                f"model.{key}: {value!r} conflicts with the base model's {merged[key]!r} "
                f"(init_from {ref}): with init_from the architecture comes from the base model; "
                f"remove model.{key} (only model.{', model.'.join(EXTENDABLE_MODEL_FIELDS)} may be set)"
            )
    if problems:
        raise ValueError("\n".join(problems))
    return merged


class PretrainConfig(StrictModel):
    """A pretraining job: the name is the resume key (same name = continue that run)."""

    name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$",
        description="Job/run name; resubmitting the same name resumes it. None = timestamped.",
    )
    init_from: str | None = Field(
        None,
        description=(
            "Continued pretraining: start from this model (a folder, an MLflow run id, runs:/… or "
            "models:/name@alias): its architecture, weights and tokenizer. The model section may "
            "then only set max_seq_len; quant is the base's unless given (quant.weight_bits=1.58 "
            "continues an FP model as BitNet). None = random init and a new BPE tokenizer."
        ),
    )
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    deepspeed: DeepSpeedConfig = Field(default_factory=DeepSpeedConfig)
    workers: WorkersConfig = Field(default_factory=WorkersConfig)
    parallel: ParallelConfig = Field(default_factory=ParallelConfig)
    mlflow: TrackingConfig = Field(default_factory=TrackingConfig)
    quant: QuantConfig | None = Field(
        None, description="BitNet quantization of the blocks' projections; None = nn.Linear."
    )

    @model_validator(mode="before")
    @classmethod
    def _architecture_from_base(cls, data: Any, info: ValidationInfo) -> Any:
        """With init_from, the model section becomes the base's architecture (json only: fast,
        no torch). A registry/run reference is left as it is here: the driver downloads it and
        validates again with the folder in the context (`with_base_model`)."""
        if not isinstance(data, dict) or not data.get("init_from"):
            return data
        ref = str(data["init_from"])
        folder = (info.context or {}).get(INIT_FROM_DIR) or local_model_folder(ref)
        if folder is None:
            return data
        data = dict(data)
        if not is_remote_model_ref(ref):
            data["init_from"] = str(folder)  # jobs run in a copy of the repository: absolute
        meta = read_base_meta(folder)
        if meta.get("packing"):
            raise ValueError(
                f"init_from: {ref} is a packed BitNet export (inference only); continue from the "
                "unpacked model it was exported from"
            )
        data["model"] = model_section_from_base(meta["model"], data.get("model"), ref)
        if "quant" not in data and meta.get("quant"):
            data["quant"] = meta["quant"]  # continuing a BitNet model keeps it BitNet
        return data

    @property
    def architecture_pending(self) -> bool:
        """init_from names a registry model or run that validation does not download: the model
        section holds only what the user set, and the checks that need the architecture run in
        the driver once the reference is resolved (`with_base_model`)."""
        return self.init_from is not None and self.model.model_fields_set != set(ModelConfig.model_fields)

    @model_validator(mode="after")
    def _combinations(self) -> "PretrainConfig":
        sp, p = self.parallel.sequence_parallel, self.parallel
        if self.workers.num_workers % sp:
            raise ValueError(
                f"workers.num_workers ({self.workers.num_workers}) must be a multiple of "
                f"parallel.sequence_parallel ({sp})"
            )
        per_pass = self.train.micro_batch_size * self.data_parallel
        if self.train.global_batch_size % per_pass:
            raise ValueError(
                f"train.global_batch_size ({self.train.global_batch_size}) must be a multiple of "
                f"train.micro_batch_size * data-parallel workers (workers.num_workers / "
                f"parallel.sequence_parallel) = {per_pass}; "
                f"try {per_pass * max(1, round(self.train.global_batch_size / per_pass))}"
            )
        if self.architecture_pending:
            return self
        base = f", from init_from {self.init_from}" if self.init_from else ""
        if self.quant is not None:
            widths = {"model.d_model": self.model.d_model, "model.ffn_hidden": self.model.hidden,
                      "model.n_heads * head_dim": self.model.n_heads * self.model.head_dim}
            for field, width in widths.items():
                if width % self.quant.groups:
                    raise ValueError(
                        f"quant.groups ({self.quant.groups}) must divide every projection's "
                        f"input width; {field} is {width}{base}"
                    )
        padded = self.padded_seq_len
        if padded > self.model.max_seq_len:
            raise ValueError(
                f"data.seq_len ({self.data.seq_len}, padded to {padded} for the {p.layout} layout "
                f"over {sp} workers) exceeds model.max_seq_len ({self.model.max_seq_len}{base}); "
                "raise model.max_seq_len or lower data.seq_len"
            )
        if sp > 1 and p.strategy == "ulysses" and self.model.n_heads % sp:
            raise ValueError(
                f"parallel.strategy ulysses scatters heads: model.n_heads ({self.model.n_heads}{base}) "
                f"must divide by parallel.sequence_parallel ({sp}); use strategy ring, or hybrid "
                "with a parallel.ulysses_size that divides n_heads"
            )
        if p.strategy == "hybrid" and (sp % p.ulysses_size or self.model.n_heads % p.ulysses_size):
            raise ValueError(
                f"parallel.ulysses_size ({p.ulysses_size}) must divide parallel.sequence_parallel "
                f"({sp}) and model.n_heads ({self.model.n_heads}{base})"
            )
        return self

    def to_data(self) -> dict[str, Any]:
        """model_dump for building a derived config (sweep trials, the driver's resolution): the
        model section keeps only what the user set while the base architecture is pending, and
        quant is left out when the user did not set it (so the base's is inherited)."""
        data = self.model_dump(mode="json")
        if self.init_from is not None:
            data["model"] = self.model.model_dump(mode="json", exclude_unset=True)
            if "quant" not in self.model_fields_set:
                data.pop("quant", None)
        return data

    @property
    def padded_seq_len(self) -> int:
        """seq_len rounded up to the layout's chunk count (ringbit.parallel.layout.padded_length;
        kept torch-free here so validating a config stays instant)."""
        chunks = self.parallel.sequence_parallel * (2 if self.parallel.layout == "zigzag" else 1)
        return -(-self.data.seq_len // chunks) * chunks

    @property
    def data_parallel(self) -> int:
        return self.workers.num_workers // self.parallel.sequence_parallel

    @property
    def grad_accum_steps(self) -> int:
        return self.train.global_batch_size // (self.train.micro_batch_size * self.data_parallel)


def with_base_model(cfg: PretrainConfig, folder: str | Path) -> PretrainConfig:
    """cfg with init_from's architecture read from `folder` (where the driver resolved the
    reference to), validated again: conflicts and architecture checks are ConfigErrors."""
    return validate(PretrainConfig, cfg.to_data(), context={INIT_FROM_DIR: str(folder)})


# --------------------------------------------------------------------------------------------
# Supervised fine-tuning (the evaluator and ReAct fine-tuning workflows add a `data` section)
# --------------------------------------------------------------------------------------------


class LoRAConfig(StrictModel):
    """Low-rank adapters instead of full fine-tuning (FireAct: r=8, alpha=16, lr 3e-4); merged
    into the weights when the model is saved."""

    r: int = Field(8, ge=1, le=1024, description="Adapter rank.")
    alpha: float = Field(16.0, gt=0, description="Scale alpha / r of the adapter's output.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapter's input.")
    targets: list[str] = Field(["wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down"], min_length=1,
                               description="Projections that get adapters (attribute names).")


class SFTConfig(StrictModel):
    """Supervised fine-tuning of a platform LM on (prompt, completion) pairs: prompt tokens are
    masked from the loss, only the completion is learned (Ray Train + DeepSpeed, like pretraining).
    Each fine-tuning workflow adds its own `data` section."""

    name: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$",
        description="Job/run name; resubmitting the same name resumes it. None = timestamped.")
    base_model: str = Field("models:/ringbit-lm@current", description="Model to start from (any model reference).")
    max_seq_len: int = Field(512, ge=64, description="Prompt + completion tokens kept (RoPE extends to it).")
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(lr=3e-4, warmup_steps=10))
    lora: LoRAConfig | None = Field(None, description="Train low-rank adapters only; None = full fine-tuning.")
    deepspeed: DeepSpeedConfig = Field(default_factory=DeepSpeedConfig)
    workers: WorkersConfig = Field(default_factory=WorkersConfig)
    mlflow: TrackingConfig = Field(default_factory=lambda: TrackingConfig(
        experiment="ringbit-evaluator", registered_model="ringbit-instructscore"))

    @model_validator(mode="after")
    def _batches_divide(self) -> "SFTConfig":
        per_pass = self.train.micro_batch_size * self.workers.num_workers
        if self.train.global_batch_size % per_pass:
            raise ValueError(
                f"train.global_batch_size ({self.train.global_batch_size}) must be a multiple of "
                f"train.micro_batch_size * workers.num_workers = {per_pass}")
        return self
