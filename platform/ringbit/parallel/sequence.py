"""Sequence parallelism for a training worker: process groups, batch sharding, attention.

Workers are laid out as data-parallel groups of `sequence_parallel` consecutive ranks: ranks
[g*sp, (g+1)*sp) share every sequence of data-parallel group g. Within a group each rank holds the
tokens its layout assigns it (with their global positions, so RoPE follows the tokens), and the
attention strategy (ring, Ulysses or hybrid) lets every query see the keys it needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

import torch
import torch.distributed as dist

from ringbit.parallel.config import ParallelConfig
from ringbit.parallel.layout import pad_to, padded_length, shard_positions

IGNORE = -100  # cross_entropy's ignore_index: padded positions are no prediction targets


@dataclass
class SequenceParallel:
    size: int
    rank: int  # rank inside the SP group
    dp_size: int
    dp_rank: int
    seq_len: int  # real tokens per sequence
    padded_len: int
    positions: torch.Tensor  # this rank's global positions, (padded_len / size,)
    attend: Callable[..., torch.Tensor] | None  # None = the model's own (full) attention

    def shard_batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """rows (B, seq_len + 1) -> this rank's (inputs, targets, positions (B, T_local))."""
        inputs, targets = rows[:, :-1], rows[:, 1:]
        if self.size == 1:
            return inputs, targets, None
        inputs = pad_to(inputs, self.padded_len, dim=1, value=0)
        targets = pad_to(targets, self.padded_len, dim=1, value=IGNORE)
        pos = self.positions.to(rows.device)
        return inputs[:, pos], targets[:, pos], pos.expand(rows.shape[0], -1)


def _new_groups(rank_lists: list[list[int]], rank: int, timeout_s: float) -> Any:
    """dist.new_group must be called by every rank for every group, in the same order."""
    mine = None
    for ranks in rank_lists:
        group = dist.new_group(ranks, timeout=timedelta(seconds=timeout_s))
        if rank in ranks:
            mine = group
    return mine


def setup_sequence_parallel(cfg: ParallelConfig, seq_len: int, rank: int, world: int) -> SequenceParallel:
    sp = cfg.sequence_parallel
    dp_rank, sp_rank = divmod(rank, sp)
    padded = padded_length(seq_len, cfg.layout, sp)
    positions = shard_positions(padded, cfg.layout, sp, sp_rank)
    attend = None
    if sp > 1:
        sp_group = _new_groups([list(range(b, b + sp)) for b in range(0, world, sp)], rank, cfg.timeout_s)
        attend = _attention(cfg, sp_group, positions, seq_len, rank, world)
    return SequenceParallel(sp, sp_rank, world // sp, dp_rank, seq_len, padded, positions, attend)


def _attention(cfg: ParallelConfig, sp_group, positions: torch.Tensor, seq_len: int, rank: int, world: int):
    if cfg.strategy == "ring":
        from ringbit.parallel.ring import ring_attention

        def attend(q, k, v, *, causal):
            return ring_attention(q, k, v, positions.to(q.device), causal=causal, group=sp_group,
                                  seq_len=seq_len, block_size=cfg.block_size)
    elif cfg.strategy == "ulysses":
        from ringbit.parallel.ulysses import ulysses_attention

        def attend(q, k, v, *, causal):
            return ulysses_attention(q, k, v, positions.to(q.device), causal=causal, group=sp_group,
                                     seq_len=seq_len)
    else:
        from ringbit.parallel.ulysses import hybrid_attention, make_sp_groups

        ulysses_group, ring_group = make_sp_groups(world, rank, cfg.ulysses_size, cfg.sequence_parallel,
                                                   timedelta(seconds=cfg.timeout_s))

        def attend(q, k, v, *, causal):
            return hybrid_attention(q, k, v, positions.to(q.device), causal=causal, ulysses_group=ulysses_group,
                                    ring_group=ring_group, seq_len=seq_len, block_size=cfg.block_size)
    return attend
