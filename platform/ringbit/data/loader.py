"""What each training worker reads: its own deterministic slice of the packed shards.

A micro-batch is a pure function of (seed, step, micro index, data-parallel rank), so a resumed
job reads exactly the batches it had not reached, and no row is read twice in an epoch.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterator

import numpy as np
import torch


class TrainBatches:
    """The micro-batches of one data-parallel rank.

    Step s of an epoch owns rows perm[s*G : (s+1)*G] of a seeded per-epoch permutation
    (G = global batch); data-parallel rank d takes its micro-batch j from that slice. So which rows
    form a step depends only on (seed, step), not on how many workers share it: 2 data-parallel
    workers, or 1 with twice the accumulation, or a sequence-parallel group, see the same batch.
    """

    def __init__(self, rows: np.ndarray, dp_rank: int, dp_size: int, micro_batch: int, accum: int, seed: int):
        self.rows, self.dp_rank, self.dp_size = rows, dp_rank, dp_size
        self.micro_batch, self.seed = micro_batch, seed
        self.global_batch = micro_batch * accum * dp_size
        self.steps_per_epoch = len(rows) // self.global_batch
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"{len(rows)} training sequences cannot fill one global batch of {self.global_batch}; "
                "lower train.global_batch_size / train.micro_batch_size or data.seq_len, or use more data"
            )

    @lru_cache(maxsize=2)
    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.rows))

    def batch(self, step: int, micro: int) -> torch.Tensor:
        epoch, s = divmod(step, self.steps_per_epoch)
        start = s * self.global_batch + (micro * self.dp_size + self.dp_rank) * self.micro_batch
        idx = self._permutation(epoch)[start : start + self.micro_batch]
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
