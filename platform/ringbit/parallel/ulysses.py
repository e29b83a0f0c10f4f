"""DeepSpeed-Ulysses sequence parallelism (all-to-all over heads) and a Ulysses x ring hybrid.

Each of the N ranks of a group holds T tokens of every head. One all-to-all turns that into
H/N heads of all N*T tokens (scatter heads, gather sequence), so each rank runs ordinary
attention over the whole sequence for its heads; a second all-to-all turns the output back.
Each rank sends (N-1)/N of its T*H*D activations per all-to-all, so traffic per rank does not grow
with N at fixed T, but the head count caps N: heads must divide by the group size. The hybrid lifts that cap: Ulysses inside groups of
U ranks, ring attention across the R = N/U groups.

Tokens may sit in any layout (contiguous, zigzag, striped, padded): every rank passes the global
positions of its tokens, and the masks are built from positions, never from indices.
"""

from __future__ import annotations

import math
from datetime import timedelta

import torch
import torch.distributed as dist

from ringbit.parallel.blockwise import blockwise_attention, blockwise_attention_backward
from ringbit.parallel.ring import ring_attention


# --------------------------------------------------------------------------- all-to-all


def _group_size(group) -> int:
    if group is None and not dist.is_initialized():
        return 1
    return dist.get_world_size(group)


def _all_to_all(x: torch.Tensor, group) -> torch.Tensor:
    """Exchange equal slices of dim 0: slice i goes to rank i, slice i of the result came from rank i.

    dist.all_to_all_single works on gloo (CPU) in torch 2.13 as well as on NCCL, so no
    list/isend fallback is needed.
    """
    x = x.contiguous()
    out = torch.empty_like(x)
    dist.all_to_all_single(out, x, group=group)
    return out


def _seq_to_heads(x: torch.Tensor, group) -> torch.Tensor:
    """(B, H, T, D) -> (B, H/N, N*T, D); the sequence is the ranks' shards in rank order."""
    n = _group_size(group)
    if n == 1:
        return x
    b, h, t, d = x.shape
    # Head slice i (heads [i*H/N, (i+1)*H/N)) goes to rank i.
    send = x.reshape(b, n, h // n, t, d).transpose(0, 1)
    recv = _all_to_all(send, group)  # (N, B, H/N, T, D): recv[i] = rank i's tokens
    return recv.permute(1, 2, 0, 3, 4).reshape(b, h // n, n * t, d)


def _heads_to_seq(x: torch.Tensor, group) -> torch.Tensor:
    """(B, H/N, N*T, D) -> (B, H, T, D): the exact inverse of _seq_to_heads."""
    n = _group_size(group)
    if n == 1:
        return x
    b, hn, nt, d = x.shape
    t = nt // n
    # Token slice i (rank i's shard) goes back to rank i.
    send = x.reshape(b, hn, n, t, d).permute(2, 0, 1, 3, 4)
    recv = _all_to_all(send, group)  # (N, B, H/N, T, D): recv[i] = rank i's heads
    return recv.transpose(0, 1).reshape(b, n * hn, t, d)


class SeqToHeads(torch.autograd.Function):
    """Differentiable scatter-heads/gather-sequence all-to-all; its gradient is the inverse all-to-all."""

    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        return _seq_to_heads(x, group)

    @staticmethod
    def backward(ctx, grad):
        return _heads_to_seq(grad, ctx.group), None


class HeadsToSeq(torch.autograd.Function):
    """Differentiable gather-heads/scatter-sequence all-to-all; its gradient is the inverse all-to-all."""

    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        return _heads_to_seq(x, group)

    @staticmethod
    def backward(ctx, grad):
        return _seq_to_heads(grad, ctx.group), None


def seq_to_heads(x: torch.Tensor, group=None) -> torch.Tensor:
    """(B, H, T, D) -> (B, H/N, N*T, D), differentiable; identity for a group of one."""
    return x if _group_size(group) == 1 else SeqToHeads.apply(x, group)


def heads_to_seq(x: torch.Tensor, group=None) -> torch.Tensor:
    """(B, H/N, N*T, D) -> (B, H, T, D), differentiable; identity for a group of one."""
    return x if _group_size(group) == 1 else HeadsToSeq.apply(x, group)


def gather_positions(positions: torch.Tensor, group=None) -> torch.Tensor:
    """Global positions of the gathered sequence: every rank's positions, concatenated in rank order."""
    n = _group_size(group)
    if n == 1:
        return positions
    parts = [torch.empty_like(positions) for _ in range(n)]
    dist.all_gather(parts, positions.contiguous(), group=group)
    return torch.cat(parts)


# --------------------------------------------------------------------------- heads


def _check_heads(n_q: int, n_kv: int, n: int, setting: str, hint: str) -> None:
    """Validate head counts before any communication, so every rank raises and nothing hangs."""
    if n_q % n_kv:
        raise ValueError(f"query heads ({n_q}) must be a multiple of key/value heads ({n_kv})")
    if n_q % n:
        raise ValueError(
            f"all-to-all attention scatters heads over {setting} = {n} ranks: n_heads ({n_q}) must be "
            f"divisible by {setting} ({n}); {hint}"
        )


def _spread_kv_heads(k: torch.Tensor, v: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Repeat KV heads so that their count divides by n (GQA/MQA with fewer KV heads than ranks).

    lcm(Hkv, n) divides Hq (both Hkv and n do), and repeat_interleave keeps query head h mapped to
    the copy of its original KV head, so after the all-to-all rank i's query heads meet their own
    KV heads. The gradient of repeat_interleave sums the copies back.
    """
    n_kv = k.shape[1]
    repeats = math.lcm(n_kv, n) // n_kv
    if repeats == 1:
        return k, v
    return k.repeat_interleave(repeats, dim=1), v.repeat_interleave(repeats, dim=1)


# --------------------------------------------------------------------------- local attention


class _LocalAttention(torch.autograd.Function):
    """blockwise_attention made differentiable: memory set by block_size, never by (N*T)^2.

    The backward recomputes the probabilities from the saved LSE (FlashAttention-2 style), as the
    ring does; lse is returned for inspection but, as in ring_attention, is not differentiable.
    """

    @staticmethod
    def forward(ctx, q, k, v, pos, causal, seq_len, block_size):
        kwargs = dict(causal=causal, seq_len=seq_len, block_size=block_size)
        out, lse = blockwise_attention(q, k, v, pos, pos, **kwargs)
        out = out.to(q.dtype)  # saved (and returned) in the input dtype, like ring_attention
        ctx.save_for_backward(q, k, v, out, lse, pos)
        ctx.kwargs = kwargs
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, dout, _dlse):
        q, k, v, out, lse, pos = ctx.saved_tensors
        dq, dk, dv = blockwise_attention_backward(q, k, v, out, lse, dout.contiguous(), pos, pos, **ctx.kwargs)
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None, None, None


def local_attention(q, k, v, positions, *, causal: bool, seq_len: int | None, block_size: int = 512):
    """Self-attention of one full (gathered) sequence: out (B, Hq, T, D) in q.dtype, lse fp32.

    q (B, Hq, T, D), k/v (B, Hkv, T, D) with Hq % Hkv == 0 (GQA handled without copying K/V).
    """
    return _LocalAttention.apply(q, k, v, positions, causal, seq_len, block_size)


# --------------------------------------------------------------------------- strategies


def _lse_to_seq(lse: torch.Tensor, group) -> torch.Tensor:
    """(B, H/N, N*T) -> (B, H, T) with the same all-to-all as the output."""
    return heads_to_seq(lse.unsqueeze(-1), group).squeeze(-1)


def ulysses_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    positions: torch.Tensor,
    *,
    causal: bool = True,
    group=None,
    seq_len: int | None = None,
    return_lse: bool = False,
    block_size: int = 512,
):
    """All-to-all sequence-parallel attention over `group` (default: the world; none = one process).

    q (B, Hq, T, D), k/v (B, Hkv, T, D): this rank's T tokens (the same T on every rank), whose
    global positions are `positions` (T,). Key j is visible to query i iff (not causal or
    pos[j] <= pos[i]) and (seq_len is None or pos[j] < seq_len); padding therefore needs positions
    >= seq_len. Hq must divide by the group size; KV heads are repeated as needed (GQA/MQA).
    The local attention over the gathered sequence is blockwise (block_size), computed in fp32.
    Returns out (B, Hq, T, D) in q's dtype, and with return_lse also lse (B, Hq, T) fp32 (not
    differentiable). Differentiable in q, k, v.
    """
    n = _group_size(group)
    _check_heads(q.shape[1], k.shape[1], n, "parallel.sequence_parallel",
                 "use strategy ring, or hybrid with a parallel.ulysses_size that divides n_heads")
    k, v = _spread_kv_heads(k, v, n)
    all_pos = gather_positions(positions.to(q.device, torch.int64), group)
    q, k, v = (seq_to_heads(x, group) for x in (q, k, v))
    # out comes back in the input dtype (half the all-to-all traffic for bf16); fp32 inside.
    out, lse = local_attention(q, k, v, all_pos, causal=causal, seq_len=seq_len, block_size=block_size)
    out = heads_to_seq(out, group)
    return (out, _lse_to_seq(lse, group)) if return_lse else out


def hybrid_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    positions: torch.Tensor,
    *,
    causal: bool = True,
    ulysses_group,
    ring_group,
    seq_len: int | None = None,
    block_size: int = 512,
    return_lse: bool = False,
):
    """Ulysses inside `ulysses_group` (U ranks), ring attention across `ring_group` (R ranks).

    For when heads are fewer than the N = U*R sequence-parallel ranks: Hq only has to divide by U.
    After the all-to-all each rank holds H/U heads of its Ulysses group's U*T tokens (with their
    gathered positions), i.e. one shard of an R-way ring over the whole sequence. Arguments and
    results as in ulysses_attention.
    """
    u = _group_size(ulysses_group)
    _check_heads(q.shape[1], k.shape[1], u, "parallel.ulysses_size", "choose a smaller parallel.ulysses_size")
    k, v = _spread_kv_heads(k, v, u)
    group_pos = gather_positions(positions.to(q.device, torch.int64), ulysses_group)
    q, k, v = (seq_to_heads(x, ulysses_group) for x in (q, k, v))
    out = ring_attention(q, k, v, group_pos, causal=causal, group=ring_group, seq_len=seq_len,
                         block_size=block_size, return_lse=return_lse)
    if not return_lse:
        return heads_to_seq(out, ulysses_group)
    out, lse = out
    return heads_to_seq(out, ulysses_group), _lse_to_seq(lse.float(), ulysses_group)


# --------------------------------------------------------------------------- groups


def make_sp_groups(world_size: int, rank: int, ulysses_size: int, sp_size: int | None = None,
                   timeout: timedelta | None = None):
    """(ulysses_group, ring_group) of `rank` for a hybrid over SP groups of `sp_size` consecutive
    ranks (default: one group of all `world_size` ranks; more groups when data-parallel too).

    Inside each SP group [b, b+sp): Ulysses groups are consecutive ranks [b+k*U, b+(k+1)*U) (the
    all-to-all is the heavier, latency-bound collective, so it gets the closest ranks, e.g. one
    node); ring groups are strided {b+j, b+j+U, ...}. dist.new_group is collective over the whole
    world: EVERY rank must call this function (with the same arguments), because it creates every
    group, in the same order, and keeps the two that contain `rank`.
    """
    sp = sp_size or world_size
    if ulysses_size < 1 or sp % ulysses_size or world_size % sp:
        raise ValueError(f"ulysses_size ({ulysses_size}) must divide the sequence-parallel world ({sp})")
    u = ulysses_size
    bases = range(0, world_size, sp)
    ulysses_ranks = [list(range(b + k * u, b + (k + 1) * u)) for b in bases for k in range(sp // u)]
    ring_ranks = [list(range(b + j, b + sp, u)) for b in bases for j in range(u)]
    kwargs = {"timeout": timeout} if timeout is not None else {}
    mine = []
    for rank_lists in (ulysses_ranks, ring_ranks):
        group_of_rank = None
        for ranks in rank_lists:
            group = dist.new_group(ranks, **kwargs)
            if rank in ranks:
                group_of_rank = group
        mine.append(group_of_rank)
    return mine[0], mine[1]
