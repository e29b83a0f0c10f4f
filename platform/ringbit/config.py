"""Typed job configs: YAML in jobs/configs/, dotted `--set` overrides, errors that name the field.

Every job is a pydantic model. `load_config` merges the YAML file with overrides and validates
everything before a job starts; a `ConfigError` carries one line per problem ("train.lr: ...").
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)


class ConfigError(ValueError):
    """A config the user must fix; the message names each field and what it accepts."""


class StrictModel(BaseModel):
    """Unknown keys are errors (a typo must not silently fall back to a default)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------------------------
# Pretraining
# --------------------------------------------------------------------------------------------


class ModelConfig(StrictModel):
    """Decoder-only transformer (RMSNorm, RoPE, SwiGLU)."""

    vocab_size: int = Field(4096, ge=256, description="Tokenizer and embedding vocabulary size.")
    d_model: int = Field(128, ge=8, description="Hidden size.")
    n_layers: int = Field(2, ge=1, description="Number of transformer blocks.")
    n_heads: int = Field(4, ge=1, description="Query heads; d_model must divide by it.")
    n_kv_heads: int | None = Field(
        None, ge=1, description="Key/value heads (GQA/MQA); None = n_heads. Must divide n_heads."
    )
    ffn_hidden: int | None = Field(
        None, ge=8, description="SwiGLU hidden size; None = 8/3 * d_model rounded up to 64."
    )
    max_seq_len: int = Field(256, ge=8, description="Longest sequence RoPE tables are built for.")
    rope_theta: float = Field(10000.0, gt=0, description="RoPE base frequency.")
    norm_eps: float = Field(1e-5, gt=0, description="RMSNorm epsilon.")
    tie_embeddings: bool = Field(True, description="Share token embedding and LM-head weights.")
    init_std: float = Field(0.02, gt=0, description="Std of the normal weight init.")
    attention: Literal["sdpa"] = Field(
        "sdpa", description="Attention implementation (the attention seam); sdpa = torch SDPA."
    )
    linear: Literal["dense"] = Field(
        "dense", description="Linear-layer factory (the linear seam); dense = nn.Linear."
    )

    @model_validator(mode="after")
    def _heads_divide(self) -> "ModelConfig":
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
            )
        if self.n_heads % self.kv_heads:
            raise ValueError(
                f"n_heads ({self.n_heads}) must be divisible by n_kv_heads ({self.kv_heads})"
            )
        return self

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def hidden(self) -> int:
        if self.ffn_hidden:
            return self.ffn_hidden
        return int(math.ceil(8 * self.d_model / 3 / 64) * 64)


WEIGHT_BITS = (1, 1.58, 2, 4, 8, 16, 32)
WEIGHT_BITS_CHOICES = ", ".join(f"{b:g}" for b in WEIGHT_BITS)


class QuantConfig(StrictModel):
    """BitLinear (BitNet / BitNet b1.58): every projection inside the blocks quantizes its weights
    and input activations; embeddings and the LM head stay in high precision. 16 and 32 bits mean
    "not quantized", so the full-precision baseline runs the same code path."""

    weight_bits: float = Field(
        1.58,
        description=(
            "1 = BitNet Sign(W - mean W) * mean|W|; 1.58 = b1.58 absmean ternary {-1, 0, +1}; "
            "2/4/8 = symmetric absmax k-bit; 16/32 = no weight quantization."
        ),
    )
    activation_bits: int = Field(
        8,
        description="Absmax activation bits (2-8, int8 at inference); 16/32 = no quantization.",
    )
    groups: int = Field(
        1,
        ge=1,
        description=(
            "Group quantization for tensor-parallel splits: the input features of every "
            "projection form this many groups, each with its own scales and SubLN statistics."
        ),
    )
    subln: Literal["layernorm", "rmsnorm", "none"] = Field(
        "rmsnorm",
        description=(
            "Normalisation without learnable affine applied inside BitLinear before the "
            "activation quantizer (BitNet: layernorm; b1.58: rmsnorm)."
        ),
    )
    shift_ffn_down_input: bool = Field(
        False,
        description=(
            "Quantize the FFN down projection's input (the gated non-linearity's output) into "
            "[0, Q_b] by subtracting its minimum: BitNet's variant for activations at a "
            "non-linearity."
        ),
    )
    eps: float = Field(1e-5, gt=0, description="Guards the scales against division by zero.")

    @field_validator("weight_bits")
    @classmethod
    def _weight_bits_supported(cls, bits: float) -> float:
        if bits not in WEIGHT_BITS:
            raise ValueError(f"weight_bits {bits:g} is not supported; choose one of {WEIGHT_BITS_CHOICES}")
        return bits

    @field_validator("activation_bits")
    @classmethod
    def _activation_bits_supported(cls, bits: int) -> int:
        if not (2 <= bits <= 8 or bits in (16, 32)):
            raise ValueError(
                f"activation_bits {bits} is not supported; use 2-8 (8 = the papers' int8) or "
                "16/32 for no activation quantization"
            )
        return bits

    @property
    def quantizes_weights(self) -> bool:
        return self.weight_bits < 16

    @property
    def quantizes_activations(self) -> bool:
        return self.activation_bits < 16


class DataConfig(StrictModel):
    """Where the text comes from and how it becomes fixed-length token sequences."""

    corpus: str = Field(
        "builtin:python-docs",
        description=(
            "'builtin:python-docs' (Python's help() topics + stdlib docstrings, ~1.6 MB of English "
            "that ships with Python: works offline), 'builtin:python-topics' (the topics only, "
            "~0.5 MB), or a path to a .txt/.jsonl/.parquet file or a directory of them."
        ),
    )
    text_field: str = Field("text", description="Column holding the text in JSONL/Parquet input.")
    seq_len: int = Field(128, ge=8, description="Tokens per training sequence (context length).")
    val_fraction: float = Field(
        0.1, gt=0, lt=0.5, description="Share of documents held out for validation."
    )
    seed: int = Field(0, description="Seed for the train/validation split.")
    cache_dir: str | None = Field(
        None,
        description=(
            "Where prepared shards are cached (shared storage on a multi-node cluster); "
            "None = <ringbit home>/data."
        ),
    )
    min_frequency: int = Field(2, ge=1, description="BPE merges need at least this many pairs.")


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


class ParallelConfig(StrictModel):
    """Sequence parallelism: each sequence is split over `sequence_parallel` workers."""

    sequence_parallel: int = Field(
        1, ge=1, description="Workers per sequence (SP degree); workers.num_workers must divide by it."
    )
    strategy: Literal["ring", "ulysses", "hybrid"] = Field(
        "ring",
        description=(
            "ring = Ring Attention (KV blocks passed around the SP group); ulysses = all-to-all "
            "(scatter heads, gather sequence; n_heads must divide by the SP degree); hybrid = "
            "Ulysses inside groups of ulysses_size, ring across them."
        ),
    )
    layout: Literal["contiguous", "zigzag", "striped"] = Field(
        "zigzag", description="How a sequence is split over the SP group (zigzag/striped balance causal work)."
    )
    ulysses_size: int = Field(1, ge=1, description="hybrid only: Ulysses group size; divides sequence_parallel.")
    block_size: int = Field(512, ge=1, description="Query/key block size of blockwise and ring attention.")
    timeout_s: float = Field(
        600, gt=0, description="Timeout of the SP groups' collectives: a lost peer fails the step, never hangs it."
    )


class WorkersConfig(StrictModel):
    """Ray Train scaling and fault tolerance."""

    num_workers: int = Field(2, ge=1, description="Ray Train workers (processes).")
    use_gpu: bool = Field(False, description="One GPU per worker (NCCL); False = CPU with gloo.")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs Ray reserves per worker.")
    max_failures: int = Field(1, ge=0, description="Worker-group restarts before the run fails.")
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
# Evaluator fine-tuning
# --------------------------------------------------------------------------------------------


class FinetuneDataConfig(StrictModel):
    """Synthetic InstructScore examples (ringbit.evaluator.synthetic) to fine-tune on."""

    corpus: str = Field("builtin:python-docs", description="Sentences to perturb (builtin:… or a text file).")
    n_train: int = Field(2000, ge=1, description="Training examples.")
    n_val: int = Field(200, ge=1, description="Held-out examples (val_ppl over their report tokens).")
    seed: int = Field(0, description="Seed of the synthetic data.")
    task: str = Field("zh-en", description="InstructScore prompt template of the examples.")


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


class FinetuneConfig(SFTConfig):
    """Teach a platform LM to write InstructScore reports from synthetic examples."""

    data: FinetuneDataConfig = Field(default_factory=FinetuneDataConfig)


class ReactDataConfig(StrictModel):
    """FireAct trajectories (Alpaca JSON/JSONL or chat JSONL) to fine-tune a ReAct agent on."""

    trajectories: str = Field(..., description="Trajectory file; a relative path is read from where you submit.")
    n_val: int = Field(50, ge=1, description="Held-out trajectories (val_ppl over their tokens).")
    max_train: int | None = Field(None, ge=1, description="Use at most this many training trajectories.")
    seed: int = Field(0, description="Seed of the train/held-out split.")


class ReactFinetuneConfig(SFTConfig):
    """FireAct: fine-tune a platform LM on ReAct trajectories (question -> Thought/Action/
    Observation ... finish[answer]); the agent then runs with the same prompt format."""

    max_seq_len: int = Field(1024, ge=64, description="Prompt + trajectory tokens kept (RoPE extends to it).")
    data: ReactDataConfig
    mlflow: TrackingConfig = Field(default_factory=lambda: TrackingConfig(
        experiment="ringbit-agents", registered_model="ringbit-react"))

    @field_validator("data", mode="after")
    @classmethod
    def _file_exists(cls, data: ReactDataConfig) -> ReactDataConfig:
        path = existing_user_file(data.trajectories, "pass a FireAct trajectory file, e.g. "
                                  "--set data.trajectories=../shared/fireact/hotpotqa_alpaca.json", "data.trajectories")
        return data.model_copy(update={"trajectories": path})


def resolve_user_path(path: str) -> Path:
    """A relative path means relative to where the user ran `ringbit`: jobs run in a copy of the
    repository, so the CLI passes its working directory along as RINGBIT_SUBMIT_CWD."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(os.environ.get("RINGBIT_SUBMIT_CWD", os.getcwd())) / p


def existing_user_file(path: str, hint: str, name: str = "") -> str:
    """resolve_user_path(path), which must be a file; else an error that says what to pass."""
    p = resolve_user_path(path)
    if not p.is_file():
        raise ValueError(f"{name + ': ' if name else ''}no file {p}; {hint}")
    return str(p)


# --------------------------------------------------------------------------------------------
# Agents: which LLM, and the evaluation jobs
# --------------------------------------------------------------------------------------------

MAX_SEED = 2**31 - 1


class AgentLLMConfig(StrictModel):
    """The OpenAI-compatible endpoint an agent thinks with: the platform's LM service or any other."""

    url: str | None = Field(
        None, description="Base URL (http://host:port or …/v1); None = the platform's LM service "
                          "(`ringbit serve up`, http://127.0.0.1:8000).")
    model: str | None = Field(None, description="Model name sent with each request; None = the endpoint's default.")
    api: Literal["completions", "chat"] = Field(
        "completions", description="completions sends prompts as-is; chat wraps each in one user message.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the API key (keys never go in configs).")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="Sampling temperature (0 = greedy).")
    timeout_s: float = Field(120.0, gt=0, description="Seconds per LLM request before it counts as failed.")
    retries: int = Field(2, ge=0, le=10, description="Retries of connection errors, 429 and 5xx.")

    @field_validator("url")
    @classmethod
    def _http(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r} is not an http(s) URL, e.g. http://127.0.0.1:8000")
        return url


def _parse_seeds(value: Any) -> Any:
    """Seeds as a list, one int, or ranges like "0-9" / "0-4,10" (what users type on a CLI)."""
    if isinstance(value, int):
        return [value]
    if isinstance(value, str):
        seeds: list[int] = []
        for part in filter(None, (p.strip() for p in value.split(","))):
            lo, sep, hi = part.partition("-")
            try:
                seeds += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
            except ValueError:
                raise ValueError(f"{value!r}: expected seeds like 0-9 or 0,3,7") from None
        return seeds
    return value


class ComputerEvalConfig(StrictModel):
    """Evaluate the structured-reflection computer-control agent on MiniWoB++ tasks: every
    (task, seed) is one episode of up to `trials` trials, episodes spread over a pool of browsers."""

    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", description="Run name; None = timestamped.")
    tasks: list[str] = Field(["click-button", "click-link", "focus-text", "enter-text"], min_length=1,
                             description="MiniWoB++ task names (miniwob/<task>-v1).")
    seeds: list[int] = Field(list(range(5)), min_length=1, max_length=1000,
                             description="Episode seeds (a list, or a range string like 0-9).")
    trials: int = Field(3, ge=1, le=10, description="Trials per episode: reflection between them (paper: up to 5).")
    max_steps: int = Field(12, ge=1, le=100, description="Actions per trial before it counts as failed.")
    episode_max_s: float | None = Field(
        300.0, gt=0, description="MiniWoB++ ends an episode after 10 s, LLM thinking included; this "
                                 "raises the limit for real LLMs (None = the benchmark's 10 s).")
    browsers: int = Field(2, ge=1, le=32, description="Browser actors (one headless Chromium each, ~400 MiB).")
    cpus_per_browser: float = Field(0.5, gt=0, le=16, description="Ray CPUs reserved per browser actor.")
    llm: AgentLLMConfig = Field(default_factory=AgentLLMConfig)
    mlflow: TrackingConfig = Field(default_factory=lambda: TrackingConfig(experiment="ringbit-agents", registered_model=None))

    @field_validator("seeds", mode="before")
    @classmethod
    def _seed_ranges(cls, value: Any) -> Any:
        return _parse_seeds(value)

    @field_validator("seeds")
    @classmethod
    def _seed_range(cls, seeds: list[int]) -> list[int]:
        bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
        if bad:
            raise ValueError(f"seeds {bad[:5]} out of range: use 0..{MAX_SEED}")
        return seeds

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, tasks: list[str]) -> list[str]:
        from ringbit.agents.computer.env import resolve_task

        return [resolve_task(t) for t in tasks]


class ReactEvalConfig(StrictModel):
    """Evaluate a ReAct agent (FireAct) on HotpotQA-style questions: EM and F1 to MLflow."""

    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", description="Run name; None = timestamped.")
    questions: str = Field(..., description="FireAct trajectories (gold = their finish[] answers) or JSONL of "
                                            "{question, answer}; a relative path is read from where you submit.")
    split: Literal["all", "heldout"] = Field(
        "all", description="heldout = only the questions the fine-tuning job held out (same n_val and seed).")
    n_val: int = Field(50, ge=1, description="With split=heldout: the fine-tuning job's data.n_val.")
    split_seed: int = Field(0, description="With split=heldout: the fine-tuning job's data.seed.")
    n: int = Field(50, ge=1, le=100_000, description="Questions to evaluate (the first n of the split).")
    search: str = Field("cache", description="Search tool: 'cache' (query->result pairs of the trajectories "
                                             "file), cache:<file>, bm25:<passages.jsonl> or bm25:builtin:python-docs.")
    max_iterations: int = Field(11, ge=1, le=50, description="Thought/Action/Observation rounds (FireAct: 11).")
    max_tokens: int = Field(128, ge=8, le=4096, description="Tokens per Thought+Action generation.")
    workers: int = Field(2, ge=1, le=64, description="Questions run in parallel (Ray tasks).")
    llm: AgentLLMConfig = Field(default_factory=AgentLLMConfig)
    mlflow: TrackingConfig = Field(default_factory=lambda: TrackingConfig(experiment="ringbit-agents", registered_model=None))

    @field_validator("questions")
    @classmethod
    def _exists(cls, questions: str) -> str:
        return existing_user_file(questions, "e.g. --set questions=../shared/fireact/hotpotqa_alpaca.json")

    @field_validator("search")
    @classmethod
    def _search_spec(cls, search: str) -> str:
        kind, _, path = search.partition(":")
        if kind not in ("cache", "bm25") or (kind == "bm25" and not path):
            raise ValueError(f"{search!r}: use 'cache', 'cache:<file>', 'bm25:<passages.jsonl>' or "
                             "'bm25:builtin:python-docs'")
        if not path or path.startswith("builtin:"):
            return search
        return f"{kind}:{existing_user_file(path, 'a passage JSONL or a query->result cache', repr(search))}"


class MemWalkerEvalConfig(StrictModel):
    """Evaluate MemWalker on synthetic long documents with planted facts: accuracy to MLflow."""

    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", description="Run name; None = timestamped.")
    n_docs: int = Field(8, ge=1, le=10_000, description="Documents (one planted-fact question each).")
    n_words: int = Field(3000, ge=100, le=1_000_000, description="Words per document.")
    segment_words: int = Field(300, ge=20, le=100_000, description="Words per leaf segment (paper: ~1,000 tokens).")
    fanout: int = Field(4, ge=2, le=16, description="Children per summary node.")
    max_steps: int = Field(12, ge=1, le=200, description="Navigation steps before giving up.")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seed of the synthetic documents.")
    workers: int = Field(2, ge=1, le=64, description="Documents run in parallel (Ray tasks).")
    llm: AgentLLMConfig = Field(default_factory=AgentLLMConfig)
    mlflow: TrackingConfig = Field(default_factory=lambda: TrackingConfig(experiment="ringbit-agents", registered_model=None))


# --------------------------------------------------------------------------------------------
# Loading: YAML + dotted overrides -> validated model, with readable errors
# --------------------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


def parse_override(item: str) -> tuple[list[str], Any]:
    """`train.lr=3e-4` -> (["train", "lr"], 0.0003); the value is parsed as YAML."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip() or any(not p for p in key.strip().split(".")):
        raise ConfigError(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. --set train.lr=3e-4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for i, part in enumerate(path[:-1]):
            if node.get(part) is None:  # an optional section left empty (`lora: null`) is opened
                node[part] = {}
            child = node[part]
            if not isinstance(child, dict):
                where = ".".join(path[: i + 1])
                raise ConfigError(f"--set {item!r}: {where} is a value, not a section")
            node = child
        node[path[-1]] = value
    return data


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} not found; pass --config jobs/configs/<name>.yaml")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of sections")
    return data


def _allowed_keys(schema: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names valid at `loc`'s parent, to suggest after an unknown key."""
    model: Any = schema
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = field.annotation
    return sorted(getattr(model, "model_fields", {}))


_FIELD_FIRST = re.compile(r"^[a-z_]+(\.[a-z_0-9]+)*: ")


def format_validation_error(exc: ValidationError, schema: type[BaseModel]) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        where = ".".join(str(p) for p in loc) or "(config)"
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(schema, loc)
            lines.append(f"{where}: unknown key; allowed here: {', '.join(allowed)}")
            continue
        msg = err["msg"].removeprefix("Value error, ")
        if not loc and _FIELD_FIRST.match(msg):  # the message names its field(s) itself
            lines.append(msg)
            continue
        got = err.get("input")
        if err["type"] not in ("value_error", "missing") and not isinstance(got, dict):
            msg += f" (got {got!r})"
        lines.append(f"{where}: {msg}")
    return "\n".join(lines)


def validate(schema: type[M], data: dict[str, Any], context: dict[str, Any] | None = None) -> M:
    try:
        return schema.model_validate(data, context=context)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, schema)) from None


def load_config(
    schema: type[M], path: str | Path | None, overrides: list[str] | None = None
) -> M:
    """Read YAML (optional), apply `--set` overrides, validate; raise ConfigError on any problem."""
    data = read_yaml(path) if path is not None else {}
    return validate(schema, apply_overrides(data, list(overrides or [])))


def to_yaml(cfg: BaseModel) -> str:
    if getattr(cfg, "architecture_pending", False):  # init_from a registry model or a run
        return (f"# model: the architecture of {cfg.init_from} (read when the job starts)\n"
                + yaml.safe_dump(cfg.to_data(), sort_keys=False))
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: the resolved config as MLflow params."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
