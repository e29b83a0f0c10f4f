"""Sequence parallelism's batch sharding (SequenceParallel.shard_batch), in one process.

Moved from tests/integration/test_parallel_sequence.py (training parity under Ray Train stays there).
"""

from __future__ import annotations

import pytest
import torch

from ringbit.parallel.layout import padded_length, shard_positions, unshard
from ringbit.parallel.sequence import IGNORE, SequenceParallel


def shards(layout: str, world: int, seq_len: int) -> list[SequenceParallel]:
    padded = padded_length(seq_len, layout, world)
    return [SequenceParallel(world, r, 1, 0, seq_len, padded, shard_positions(padded, layout, world, r), None)
            for r in range(world)]


@pytest.mark.parametrize("layout", ["contiguous", "zigzag", "striped"])
def test_shard_batch_splits_tokens_targets_and_positions(layout):
    rows = torch.arange(2 * 14).reshape(2, 14)  # seq_len 13 -> padded for 2 or 4 ranks
    parts = [sp.shard_batch(rows) for sp in shards(layout, 4, 13)]
    inputs = unshard([p[0] for p in parts], 1, layout)
    targets = unshard([p[1] for p in parts], 1, layout)
    positions = unshard([p[2] for p in parts], 1, layout)
    assert torch.equal(inputs[:, :13], rows[:, :-1]) and torch.equal(targets[:, :13], rows[:, 1:])
    assert (targets[:, 13:] == IGNORE).all()  # padding is never a prediction target
    assert torch.equal(positions[0], torch.arange(inputs.shape[1]))
