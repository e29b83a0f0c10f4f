"""What each training worker reads: its own deterministic slice of the packed shards.

Batch i of rank r is a pure function of (seed, i, r, world), so a resumed job reads exactly
the batches it had not reached, and no two ranks ever read the same row in an epoch.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterator

import numpy as np
import torch


class TrainBatches:
    def __init__(self, rows: np.ndarray, rank: int, world: int, micro_batch: int, seed: int):
        self.rows, self.rank, self.world = rows, rank, world
        self.micro_batch, self.seed = micro_batch, seed
        self.per_rank = len(rows) // world
        self.batches_per_epoch = self.per_rank // micro_batch
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"{len(rows)} training sequences cannot fill one micro-batch of {micro_batch} on "
                f"each of {world} workers; lower train.micro_batch_size or data.seq_len"
            )

    @lru_cache(maxsize=2)
    def _epoch_rows(self, epoch: int) -> np.ndarray:
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.rows))
        return order[: self.per_rank * self.world][self.rank :: self.world]

    def batch(self, index: int) -> torch.Tensor:
        epoch, j = divmod(index, self.batches_per_epoch)
        idx = self._epoch_rows(epoch)[j * self.micro_batch : (j + 1) * self.micro_batch]
        return torch.from_numpy(self.rows[np.sort(idx)].astype(np.int64))


def eval_batches(
    rows: np.ndarray, rank: int, world: int, batch_size: int, max_batches: int | None = None
) -> Iterator[torch.Tensor]:
    """Every validation row exactly once across ranks (rows rank, rank+world, ...)."""
    mine = rows[rank::world]
    for n, start in enumerate(range(0, len(mine), batch_size)):
        if max_batches is not None and n >= max_batches:
            return
        yield torch.from_numpy(mine[start : start + batch_size].astype(np.int64))
