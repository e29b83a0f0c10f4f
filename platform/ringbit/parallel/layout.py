"""Which global token positions each rank of a sequence-parallel group holds.

- contiguous: N chunks, rank r holds chunk r (causal work is unbalanced: rank N-1 does the most);
- zigzag: 2N chunks, rank r holds chunks r and 2N-1-r (each rank gets one early and one late
  chunk, so causal work is balanced);
- striped: token i goes to rank i mod N (balanced at token granularity).

A sequence whose length does not divide by the layout's chunk count is padded at the end; the
padded positions are >= the real length, so attention masks them out as keys and the loss ignores
them.
"""

from __future__ import annotations

import torch

LAYOUTS = ("contiguous", "zigzag", "striped")


def chunk_count(layout: str, world: int) -> int:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    return 2 * world if layout == "zigzag" else world


def padded_length(seq_len: int, layout: str, world: int) -> int:
    chunks = chunk_count(layout, world)
    return -(-seq_len // chunks) * chunks


def shard_positions(padded_len: int, layout: str, world: int, rank: int) -> torch.Tensor:
    """Global positions (sorted ascending) held by `rank`; padded_len must divide by the chunks."""
    chunks = chunk_count(layout, world)
    if padded_len % chunks:
        raise ValueError(f"length {padded_len} does not divide into {chunks} {layout} chunks; pad it first")
    if layout == "striped":
        return torch.arange(rank, padded_len, world)
    size = padded_len // chunks
    if layout == "contiguous":
        return torch.arange(rank * size, (rank + 1) * size)
    late = chunks - 1 - rank
    return torch.cat([torch.arange(rank * size, (rank + 1) * size), torch.arange(late * size, (late + 1) * size)])


def pad_to(x: torch.Tensor, length: int, dim: int, value: float | int = 0) -> torch.Tensor:
    missing = length - x.shape[dim]
    if missing <= 0:
        return x
    shape = list(x.shape)
    shape[dim] = missing
    return torch.cat([x, x.new_full(shape, value)], dim=dim)


def shard(x: torch.Tensor, dim: int, layout: str, world: int, rank: int) -> torch.Tensor:
    """This rank's part of an (already padded) tensor along `dim`."""
    pos = shard_positions(x.shape[dim], layout, world, rank).to(x.device)
    return x.index_select(dim, pos)


def unshard(parts: list[torch.Tensor], dim: int, layout: str) -> torch.Tensor:
    """Inverse of shard: the full tensor from every rank's part (rank order)."""
    world = len(parts)
    total = sum(p.shape[dim] for p in parts)
    positions = torch.cat([shard_positions(total, layout, world, r) for r in range(world)]).to(parts[0].device)
    order = torch.argsort(positions)
    return torch.cat(parts, dim=dim).index_select(dim, order)
