"""Exact blockwise attention with explicit global token positions (forward, backward, merge).

This is the per-device kernel of Ring Attention (Liu et al., arXiv 2310.01889, "Blockwise Parallel
Transformer"): queries and keys are processed block by block with the online-softmax recurrence
(running max m, running denominator l, running output o), so memory is set by `block_size`, never
by Tq x Tk. The backward pass is FlashAttention-2 style (Dao, arXiv 2307.08691, Alg. 2): it
recomputes the probabilities from the saved log-sum-exp instead of storing them.

Masking is by global position, so any sequence layout works (contiguous, zigzag, striped):
key j is visible to query i iff (not causal or k_pos[j] <= q_pos[i]) and
(seq_len is None or k_pos[j] < seq_len). Key blocks that are entirely hidden from a query block are
skipped; blocks that are entirely visible are computed without a mask.

GQA/MQA: query head h uses kv head h // (Hq // Hkv). The G = Hq // Hkv query heads that share a kv
head are folded into the row dimension of one matmul, (B, Hkv, G*tq, D) @ (B, Hkv, D, tk), so K/V are
never repeated, and dK/dV come out already summed over the sharing query heads.

Accumulation is fp32 for fp32/bf16/fp16 inputs (fp64 for fp64 inputs, which the tests use).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

NEG_INF = float("-inf")


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp32 for everything below fp64: bf16/fp16 sums of probabilities lose too much precision."""
    return torch.float64 if dtype == torch.float64 else torch.float32


@dataclass(frozen=True)
class _KeyBlock:
    start: int
    end: int
    needs_mask: bool  # False: every key of the block is visible to every query of the query block


@dataclass(frozen=True)
class _QueryBlock:
    start: int
    end: int
    keys: tuple[_KeyBlock, ...]  # only the key blocks with at least one possibly visible key


def _extents(pos: torch.Tensor, block_size: int) -> list[tuple[int, int, int, int]]:
    """(start, end, min position, max position) of each block; positions need not be sorted."""
    pos = pos.cpu()
    out = []
    for start in range(0, pos.numel(), block_size):
        chunk = pos[start:start + block_size]
        out.append((start, start + chunk.numel(), int(chunk.min()), int(chunk.max())))
    return out


def plan_blocks(q_pos: torch.Tensor, k_pos: torch.Tensor, *, causal: bool, seq_len: int | None,
                block_size: int) -> list[_QueryBlock]:
    """Which (query block, key block) pairs to compute, and which of them need a mask.

    Decided once on the CPU from the block position ranges, so the GPU never syncs inside the loops.
    """
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    key_blocks = _extents(k_pos, block_size)
    plan = []
    for qs, qe, qmin, qmax in _extents(q_pos, block_size):
        keys = []
        for ks, ke, kmin, kmax in key_blocks:
            if seq_len is not None and kmin >= seq_len:
                continue  # only padding keys
            if causal and kmin > qmax:
                continue  # entirely above the causal diagonal
            all_visible = (not causal or kmax <= qmin) and (seq_len is None or kmax < seq_len)
            keys.append(_KeyBlock(ks, ke, not all_visible))
        plan.append(_QueryBlock(qs, qe, tuple(keys)))
    return plan


def any_visible(q_pos: torch.Tensor, k_pos: torch.Tensor, *, causal: bool, seq_len: int | None) -> bool:
    """Whether any key of k_pos is visible to any query of q_pos (whole-shard skip test)."""
    kmin = int(k_pos.min())
    if seq_len is not None and kmin >= seq_len:
        return False
    return not (causal and kmin > int(q_pos.max()))


def _visible(q_pos: torch.Tensor, k_pos: torch.Tensor, causal: bool, seq_len: int | None,
             groups: int) -> torch.Tensor:
    """(groups*tq, tk) boolean visibility, rows ordered like the folded query block (g-major)."""
    mask = torch.ones(q_pos.numel(), k_pos.numel(), dtype=torch.bool, device=k_pos.device)
    if causal:
        mask &= k_pos[None, :] <= q_pos[:, None]
    if seq_len is not None:
        mask &= (k_pos < seq_len)[None, :]
    return mask.repeat(groups, 1)


def _fold(x: torch.Tensor, hkv: int, start: int, end: int, dtype: torch.dtype) -> torch.Tensor:
    """Rows [start, end) of x (B, Hq, T, ...) as (B, Hkv, G*(end-start), ...) in `dtype`.

    Query head h = kv_head * G + g, so splitting dim 1 as (Hkv, G) puts each kv head's G query
    heads together; folding (G, t) into one row dimension lets one matmul serve all of them.
    """
    b, hq = x.shape[:2]
    part = x[:, :, start:end].to(dtype)
    return part.reshape(b, hkv, (hq // hkv) * (end - start), *x.shape[3:])


def _unfold(x: torch.Tensor, hq: int) -> torch.Tensor:
    """Inverse of _fold for one block: (B, Hkv, G*t, ...) -> (B, Hq, t, ...)."""
    b, hkv, rows = x.shape[:3]
    return x.reshape(b, hq, rows // (hq // hkv), *x.shape[3:])


def _check_shapes(q, k, v, q_pos, k_pos):
    if q.dim() != 4 or k.shape != v.shape or k.dim() != 4:
        raise ValueError(f"expected q (B,Hq,Tq,D), k/v (B,Hkv,Tk,D); got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"query heads {q.shape[1]} must be a multiple of kv heads {k.shape[1]}")
    if q_pos.numel() != q.shape[2] or k_pos.numel() != k.shape[2]:
        raise ValueError("q_pos / k_pos must have one position per query / key token")


def _attend_query_block(qb, k, v, block: _QueryBlock, q_pos, k_pos, causal, seq_len, groups):
    """Online softmax of one folded query block over its key blocks; returns (out, lse) rows."""
    dtype = qb.dtype
    m = qb.new_full(qb.shape[:-1], NEG_INF)  # running max of the scores
    den = qb.new_zeros(qb.shape[:-1])  # running softmax denominator, relative to m
    acc = qb.new_zeros(qb.shape[:-1] + v.shape[-1:])  # running un-normalised output
    for kb in block.keys:
        kk = k[:, :, kb.start:kb.end].to(dtype)
        vv = v[:, :, kb.start:kb.end].to(dtype)
        s = qb @ kk.transpose(-1, -2)
        if kb.needs_mask:
            visible = _visible(q_pos[block.start:block.end], k_pos[kb.start:kb.end], causal, seq_len, groups)
            s = s.masked_fill(~visible, NEG_INF)
        m_new = torch.maximum(m, s.amax(-1))
        # A row with no visible key so far has m_new = -inf; shifting by 0 instead avoids
        # (-inf) - (-inf) = NaN, and exp(-inf - 0) = 0 keeps its p and alpha at 0.
        shift = m_new.masked_fill(m_new == NEG_INF, 0.0)
        p = torch.exp(s - shift[..., None])
        alpha = torch.exp(m - shift)  # rescales the old partial sums to the new max (BPT eq. 2)
        den = den * alpha + p.sum(-1)
        acc = acc * alpha[..., None] + p @ vv
        m = m_new
    lse = m + torch.log(den)  # -inf + log(0) = -inf for rows that saw no key
    out = acc / torch.where(den > 0, den, torch.ones_like(den))[..., None]  # such rows stay 0
    return out, lse


def blockwise_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_pos: torch.Tensor,
                        k_pos: torch.Tensor, *, causal: bool, seq_len: int | None = None,
                        block_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact softmax attention, computed block by block.

    q (B, Hq, Tq, D); k, v (B, Hkv, Tk, D) with Hq % Hkv == 0; q_pos (Tq,), k_pos (Tk,) global
    positions. Returns out (B, Hq, Tq, D) and lse (B, Hq, Tq) in the accumulation dtype (fp32),
    lse = logsumexp_j(q . k_j / sqrt(D)). Rows with no visible key: out 0, lse -inf.
    """
    _check_shapes(q, k, v, q_pos, k_pos)
    b, hq, tq, d = q.shape
    hkv = k.shape[1]
    dtype = accumulation_dtype(q.dtype)
    scale = d ** -0.5
    out = q.new_zeros((b, hq, tq, v.shape[-1]), dtype=dtype)
    lse = q.new_full((b, hq, tq), NEG_INF, dtype=dtype)
    q_pos_dev, k_pos_dev = q_pos.to(q.device), k_pos.to(k.device)
    for block in plan_blocks(q_pos, k_pos, causal=causal, seq_len=seq_len, block_size=block_size):
        if not block.keys:
            continue  # nothing visible: out 0, lse -inf
        qb = _fold(q, hkv, block.start, block.end, dtype) * scale  # scale once, not per key block
        o, l = _attend_query_block(qb, k, v, block, q_pos_dev, k_pos_dev, causal, seq_len, hq // hkv)
        out[:, :, block.start:block.end] = _unfold(o, hq)
        lse[:, :, block.start:block.end] = _unfold(l, hq)
    return out, lse


def blockwise_attention_backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                                 lse: torch.Tensor, dout: torch.Tensor, q_pos: torch.Tensor,
                                 k_pos: torch.Tensor, *, causal: bool, seq_len: int | None = None,
                                 block_size: int = 512) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients (dq, dk, dv) of blockwise_attention, recomputing P from the saved lse.

    `out` and `lse` may be the *global* output and log-sum-exp of a larger attention of which
    (k, v) is one part (ring attention): P = exp(S - lse) is then exactly this part's slice of the
    global softmax, and the returned dq/dk/dv are this part's contributions (FlashAttention-2).
    dk/dv (B, Hkv, Tk, D) are summed over the query heads that share a kv head. Accumulation dtype.
    """
    _check_shapes(q, k, v, q_pos, k_pos)
    b, hq, tq, d = q.shape
    hkv, groups = k.shape[1], q.shape[1] // k.shape[1]
    dtype = accumulation_dtype(q.dtype)
    scale = d ** -0.5
    dq = q.new_zeros(q.shape, dtype=dtype)
    dk = k.new_zeros(k.shape, dtype=dtype)
    dv = v.new_zeros(v.shape, dtype=dtype)
    # D_i = rowsum(dO * O) (FA2 eq. for dS); lse = -inf only on rows with no visible key, whose
    # scores are all masked to -inf, so shifting by 0 there gives P = 0 instead of NaN.
    delta = (dout.to(dtype) * out.to(dtype)).sum(-1)
    lse = lse.to(dtype).masked_fill(lse == NEG_INF, 0.0)
    q_pos_dev, k_pos_dev = q_pos.to(q.device), k_pos.to(k.device)
    for block in plan_blocks(q_pos, k_pos, causal=causal, seq_len=seq_len, block_size=block_size):
        if not block.keys:
            continue
        qb = _fold(q, hkv, block.start, block.end, dtype) * scale
        dob = _fold(dout, hkv, block.start, block.end, dtype)
        lb = _fold(lse, hkv, block.start, block.end, dtype)[..., None]
        db = _fold(delta, hkv, block.start, block.end, dtype)[..., None]
        dqb = torch.zeros_like(qb)
        for kb in block.keys:
            ks, ke = kb.start, kb.end
            kk, vv = k[:, :, ks:ke].to(dtype), v[:, :, ks:ke].to(dtype)
            s = qb @ kk.transpose(-1, -2)
            if kb.needs_mask:
                visible = _visible(q_pos_dev[block.start:block.end], k_pos_dev[ks:ke], causal, seq_len, groups)
                s = s.masked_fill(~visible, NEG_INF)
            p = torch.exp(s - lb)  # P = exp(S - L): the softmax, without storing it in the forward
            dv[:, :, ks:ke] += p.transpose(-1, -2) @ dob  # dV += P^T dO (sums the G folded heads)
            ds = p * (dob @ vv.transpose(-1, -2) - db)  # dS = P * (dP - D_i), dP = dO V^T
            dqb += ds @ kk  # dQ += dS K (times scale below)
            dk[:, :, ks:ke] += ds.transpose(-1, -2) @ qb  # dK += dS^T Q * scale (qb is pre-scaled)
        dq[:, :, block.start:block.end] = _unfold(dqb * scale, hq)
    return dq, dk, dv


def merge(out1: torch.Tensor, lse1: torch.Tensor, out2: torch.Tensor,
          lse2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine two partial attentions over disjoint key sets (Ring Attention merge rule).

    lse = log(exp(lse1) + exp(lse2)); out = exp(lse1 - lse) * out1 + exp(lse2 - lse) * out2.
    Safe when either or both lse are -inf (a part with no visible key contributes nothing).
    Call it with fp32 tensors: merging in bf16 makes the error grow with the ring size.
    """
    lse = torch.logaddexp(lse1, lse2)
    shift = lse.masked_fill(lse == NEG_INF, 0.0)  # both parts empty: weights exp(-inf) = 0, not NaN
    out = torch.exp(lse1 - shift)[..., None] * out1 + torch.exp(lse2 - shift)[..., None] * out2
    return out, lse
