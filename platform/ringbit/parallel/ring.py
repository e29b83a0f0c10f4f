"""Exact Ring Attention (Liu, Zaharia, Abbeel, arXiv 2310.01889) in plain torch.distributed.

Every rank of a process group keeps its query shard; key/value shards travel round the ring
(rank r sends to r+1 and receives from r-1). In each of the N steps a rank computes blockwise
attention of its queries against the KV shard it holds while the P2P exchange of the next shard is
in flight (batch_isend_irecv started before the compute, waited after it), and merges the partial
(out, lse) in fp32. The backward pass sends the KV shards round again, together with the dK/dV
accumulators of the shard each rank holds, so each rank ends with dK/dV of its own shard; dQ stays
local. Nothing of size T_total x T_total is ever built.

Shards may follow any layout (see layout.py): masking is by the global `positions` of each token,
which are all-gathered once per call. Works on gloo (CPU) and NCCL (GPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from ringbit.parallel.blockwise import (
    accumulation_dtype,
    any_visible,
    blockwise_attention,
    blockwise_attention_backward,
    merge,
)

# Distinct tags keep the KV shard and the dK/dV accumulator apart when both go to the same peer in
# one batch (gloo matches messages by peer and tag; NCCL ignores tags).
_KV_TAG = 7
_DKV_TAG = 8


@dataclass(frozen=True)
class _Ring:
    """This rank's place in the ring; `next`/`prev` are *global* ranks, as P2POp wants."""

    world: int
    rank: int
    next: int
    prev: int
    group: dist.ProcessGroup | None

    @classmethod
    def of(cls, group) -> "_Ring":
        if not (dist.is_available() and dist.is_initialized()):
            return cls(1, 0, 0, 0, None)
        world, rank = dist.get_world_size(group), dist.get_rank(group)
        if rank < 0:
            raise ValueError("this process is not a member of the ring attention group")

        def global_rank(r: int) -> int:
            return r if group is None or group is dist.group.WORLD else dist.get_global_rank(group, r)

        return cls(world, rank, global_rank((rank + 1) % world), global_rank((rank - 1) % world), group)

    def source(self, step: int) -> int:
        """Group rank whose KV shard this rank holds at `step` (it moved `step` hops forward)."""
        return (self.rank - step) % self.world

    def exchange(self, pairs: list[tuple[torch.Tensor, torch.Tensor, int]]) -> list:
        """Start sending each `send` to next and receiving each `recv` from prev; returns requests.

        The caller must keep the send tensors alive (and unmodified) until every request waited.
        """
        ops = []
        for send, recv, tag in pairs:
            ops.append(dist.P2POp(dist.isend, send, self.next, self.group, tag))
            ops.append(dist.P2POp(dist.irecv, recv, self.prev, self.group, tag))
        return dist.batch_isend_irecv(ops) if ops else []


def _wait(requests: list) -> None:
    for request in requests:
        request.wait()


def _gather_positions(positions: torch.Tensor, ring: _Ring, device: torch.device) -> list[torch.Tensor]:
    """Global positions of every rank's shard (CPU), learned once per call."""
    positions = positions.to(device=device, dtype=torch.int64).contiguous()
    if ring.world == 1:
        return [positions.cpu()]
    parts = [torch.empty_like(positions) for _ in range(ring.world)]
    dist.all_gather(parts, positions, group=ring.group)  # NCCL needs them on the GPU
    return [p.cpu() for p in parts]


@dataclass(frozen=True)
class _Mask:
    causal: bool
    seq_len: int | None
    block_size: int

    def kwargs(self) -> dict:
        return {"causal": self.causal, "seq_len": self.seq_len, "block_size": self.block_size}

    def visible(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> bool:
        return any_visible(q_pos, k_pos, causal=self.causal, seq_len=self.seq_len)


def _ring_forward(q, k, v, q_pos, all_pos, ring: _Ring, mask: _Mask):
    """N steps, N-1 rotations: attend to the held KV shard while the next one arrives."""
    kv = torch.stack([k, v])  # one contiguous buffer: one send per hop instead of two
    out = lse = None
    for step in range(ring.world):
        incoming = torch.empty_like(kv) if step + 1 < ring.world else None  # no send after the last step
        requests = ring.exchange([(kv, incoming, _KV_TAG)] if incoming is not None else [])
        k_pos = all_pos[ring.source(step)]
        if mask.visible(q_pos, k_pos):  # causal: whole shards above the diagonal are skipped
            part_out, part_lse = blockwise_attention(q, kv[0], kv[1], q_pos, k_pos, **mask.kwargs())
            out, lse = (part_out, part_lse) if out is None else merge(out, lse, part_out, part_lse)
        _wait(requests)  # only now may `kv` (the send buffer) be dropped
        if incoming is not None:
            kv = incoming
    if out is None:  # no query of this rank sees any key
        dtype = accumulation_dtype(q.dtype)
        out = q.new_zeros(q.shape[:-1] + v.shape[-1:], dtype=dtype)
        lse = q.new_full(q.shape[:-1], float("-inf"), dtype=dtype)
    return out, lse


def _ring_backward(q, k, v, out, lse, dout, q_pos, all_pos, ring: _Ring, mask: _Mask):
    """KV shards go round again with their dK/dV accumulators; dQ stays local.

    At step s rank r holds KV shard r-s and its accumulator (received from r-1, which held that
    shard at step s-1), adds its own contribution and passes it on at step s+1, overlapped with the
    next compute. After the last step the accumulator of shard r-(N-1) = r+1 makes one more hop, to
    r+1, its owner: N-1 rotations of KV, N hops of each accumulator.
    """
    dtype = accumulation_dtype(q.dtype)
    dq = torch.zeros(q.shape, dtype=dtype, device=q.device)
    kv = torch.stack([k, v])
    dkv = None  # accumulator (2, B, Hkv, T, D) for the shard held at the previous step
    for step in range(ring.world):
        pairs = []
        incoming_kv = torch.empty_like(kv) if step + 1 < ring.world else None
        if incoming_kv is not None:
            pairs.append((kv, incoming_kv, _KV_TAG))
        incoming_dkv = torch.empty_like(dkv) if dkv is not None else None
        if incoming_dkv is not None:
            pairs.append((dkv, incoming_dkv, _DKV_TAG))
        requests = ring.exchange(pairs)
        local = _shard_grads(q, kv, out, lse, dout, q_pos, all_pos[ring.source(step)], mask, dq)
        _wait(requests)
        dkv = local if incoming_dkv is None else incoming_dkv.add_(local)
        del local  # otherwise it stays alive through the next step's compute (memory per token)
        if incoming_kv is not None:
            kv = incoming_kv
    if ring.world > 1:  # final hop: the accumulator goes back to the shard's owner
        own = torch.empty_like(dkv)
        _wait(ring.exchange([(dkv, own, _DKV_TAG)]))
        dkv = own
    return dq, dkv[0], dkv[1]


def _shard_grads(q, kv, out, lse, dout, q_pos, k_pos, mask: _Mask, dq):
    """This rank's (dK, dV) contribution for one KV shard, stacked; adds its dQ part into `dq`."""
    dtype = accumulation_dtype(q.dtype)
    if not mask.visible(q_pos, k_pos):
        return torch.zeros(kv.shape, dtype=dtype, device=kv.device)
    dq_part, dk, dv = blockwise_attention_backward(q, kv[0], kv[1], out, lse, dout, q_pos, k_pos,
                                                   **mask.kwargs())
    dq += dq_part
    return torch.stack([dk, dv])


class _RingAttention(torch.autograd.Function):
    """Autograd wrapper: forward and backward both run the ring (see module docstring)."""

    @staticmethod
    def forward(ctx, q, k, v, positions, causal, group, seq_len, block_size):
        ring, mask = _Ring.of(group), _Mask(causal, seq_len, block_size)
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()  # P2P needs contiguous buffers
        all_pos = _gather_positions(positions, ring, q.device)
        q_pos = all_pos[ring.rank]
        out, lse = _ring_forward(q, k, v, q_pos, all_pos, ring, mask)
        out = out.to(q.dtype)
        # FlashAttention-2 saves O in the input dtype too; D_i = rowsum(dO * O) is computed in fp32.
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.all_pos, ctx.ring, ctx.mask = all_pos, ring, mask
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, dout, _dlse):
        q, k, v, out, lse = ctx.saved_tensors
        ring, all_pos = ctx.ring, ctx.all_pos
        dq, dk, dv = _ring_backward(q, k, v, out, lse, dout.contiguous(), all_pos[ring.rank], all_pos,
                                    ring, ctx.mask)
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None, None, None, None


def ring_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor, *,
                   causal: bool = True, group: dist.ProcessGroup | None = None, seq_len: int | None = None,
                   block_size: int = 512, return_lse: bool = False):
    """Exact attention over a sequence sharded across the ranks of `group` (None = WORLD).

    q (B, Hq, T, D), k/v (B, Hkv, T, D) are this rank's shard (T equal on every rank; Hq % Hkv == 0);
    positions (T,) are the global positions of its tokens (layout.shard_positions). Keys at
    positions >= seq_len (padding) are hidden. Without an initialised process group, or with a
    group of size 1, this is plain blockwise attention with no communication.

    Returns out (B, Hq, T, D) in q.dtype, or (out, lse) with lse (B, Hq, T) fp32 if return_lse.
    Differentiable in q, k, v (gradients in their dtypes, accumulated in fp32); lse is not.
    """
    if positions.numel() != q.shape[2]:
        raise ValueError(f"positions has {positions.numel()} entries for {q.shape[2]} local tokens")
    out, lse = _RingAttention.apply(q, k, v, positions, causal, group, seq_len, block_size)
    return (out, lse) if return_lse else out
