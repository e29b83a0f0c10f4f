"""The data config (DataConfig): corpus, context length and the train/validation split.

Owned by ringbit.data: it imports only the shared config machinery (ringbit.config).
"""

from __future__ import annotations

from pydantic import Field

from ringbit.config import StrictModel

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
