"""The sequence-parallelism config (ParallelConfig): SP degree, strategy, layout.

Owned by ringbit.parallel: it imports only the shared config machinery (ringbit.config), never
the job schemas, Ray or MLflow, and not torch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ringbit.config import StrictModel

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
