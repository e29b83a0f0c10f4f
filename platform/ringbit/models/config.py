"""The model's config (ModelConfig): the architecture of the decoder-only transformer.

Owned by the model code (ringbit.models): it imports only the shared config machinery
(ringbit.config), never the job schemas, Ray or MLflow, and not torch.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from ringbit.config import StrictModel

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
