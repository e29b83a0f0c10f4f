"""Ulysses (all-to-all) and Ulysses x ring hybrid attention against single-process full attention.

Real gloo process groups (tests/helpers.py spawn_gloo: ranks forked from a forkserver with torch
preloaded), one start per world size; every case runs inside the same workers. Each rank pads
and shards the inputs with ringbit.parallel.layout, runs the strategy forward and backward, and
rank 0 unshards the results and compares them with a float64 reference on the unpadded sequence:
forward output, LSE, dq, dk, dv, fp32 atol 1e-5.
"""

from __future__ import annotations

import functools
import itertools

import pytest
import torch
import torch.distributed as dist

from helpers import spawn_gloo
from ringbit.parallel.layout import LAYOUTS, pad_to, padded_length, shard, shard_positions, unshard
from ringbit.parallel.ulysses import hybrid_attention, local_attention, make_sp_groups, ulysses_attention

ATOL = 1e-5
BATCH, HEAD_DIM = 2, 8
HEADS = ((4, 4), (4, 2), (4, 1))  # (Hq, Hkv): MHA, GQA, MQA
LENGTHS = (13, 24)  # 13 needs padding in every layout for world > 1; 24 divides 2*4
HYBRID_SPLITS = ((2, 2), (1, 4), (4, 1))  # (U, R) for world 4
QUANTITIES = ("out", "lse", "dq", "dk", "dv")


def hybrid_lengths(u: int) -> tuple[int, ...]:
    """U=2 x R=2 is the real hybrid; the degenerate splits (pure ring / pure Ulysses) get one length."""
    return LENGTHS if 1 < u < 4 else LENGTHS[:1]


# --------------------------------------------------------------------------- reference


def make_inputs(hq: int, hkv: int, length: int, seed: int):
    """fp32 q, k, v, dout (B, H, L, D); the reference uses these exact values in float64."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(BATCH, hq, length, HEAD_DIM, generator=g)
    k = torch.randn(BATCH, hkv, length, HEAD_DIM, generator=g)
    v = torch.randn(BATCH, hkv, length, HEAD_DIM, generator=g)
    dout = torch.randn(BATCH, hq, length, HEAD_DIM, generator=g)
    return q, k, v, dout


def reference(q, k, v, dout, causal: bool) -> dict[str, torch.Tensor]:
    """Explicit float64 masked softmax with LSE; gradients by autograd."""
    q, k, v = (x.double().requires_grad_() for x in (q, k, v))
    group = q.shape[1] // k.shape[1]
    kr, vr = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    s = q @ kr.transpose(-1, -2) / HEAD_DIM**0.5
    if causal:
        length = q.shape[2]
        s = s.masked_fill(~torch.ones(length, length, dtype=torch.bool).tril(), float("-inf"))
    lse = torch.logsumexp(s, dim=-1)
    out = torch.exp(s - lse[..., None]) @ vr
    out.backward(dout.double())
    return {"out": out, "lse": lse, "dq": q.grad, "dk": k.grad, "dv": v.grad}


# --------------------------------------------------------------------------- workers


def cases(lengths=LENGTHS):
    for causal, layout, (hq, hkv), length in itertools.product((True, False), LAYOUTS, HEADS, lengths):
        yield dict(causal=causal, layout=layout, hq=hq, hkv=hkv, length=length)


def case_name(case: dict, prefix: str) -> str:
    mask = "causal" if case["causal"] else "full"
    return f"{prefix}-{mask}-{case['layout']}-h{case['hq']}kv{case['hkv']}-L{case['length']}"


def run_case(attend, case: dict, seed: int, rank: int, world: int) -> dict[str, float] | None:
    """One strategy run on this rank's shard; on rank 0, the max abs errors against the reference."""
    layout, length = case["layout"], case["length"]
    full = make_inputs(case["hq"], case["hkv"], length, seed)
    padded = padded_length(length, layout, world)
    q, k, v, dout = (shard(pad_to(x, padded, dim=2), 2, layout, world, rank) for x in full)
    positions = shard_positions(padded, layout, world, rank)
    q, k, v = (x.requires_grad_() for x in (q, k, v))
    out, lse = attend(q, k, v, positions, causal=case["causal"], seq_len=length, return_lse=True)
    out.backward(dout)
    mine = {"out": out.detach(), "lse": lse.detach(), "dq": q.grad, "dk": k.grad, "dv": v.grad}
    parts = [None] * world if rank == 0 else None
    dist.gather_object(mine, parts, dst=0)
    if rank != 0:
        return None
    expected = reference(*full, causal=case["causal"])
    errors = {}
    for name in QUANTITIES:
        got = unshard([p[name] for p in parts], dim=2, layout=layout)[:, :, :length]
        assert got.dtype == torch.float32, (name, got.dtype)
        errors[name] = (got.double() - expected[name]).abs().max().item()
    return errors


def heads_error(fn) -> str:
    try:
        fn()
    except ValueError as e:
        return str(e)
    return "no error"


def _worker(rank: int, world: int) -> dict:
    """Every case on this rank (inside spawn_gloo's group); rank 0's errors per case name."""
    results = {}
    # block_size 4: several query and key blocks even on these short sequences.
    attend = functools.partial(ulysses_attention, block_size=4)
    for seed, case in enumerate(cases()):
        errors = run_case(attend, case, seed, rank, world)
        if rank == 0:
            results[case_name(case, f"ulysses-w{world}")] = errors
    if world == 4:
        for u, r in HYBRID_SPLITS:
            ug, rg = make_sp_groups(world, rank, u)
            attend = functools.partial(hybrid_attention, ulysses_group=ug, ring_group=rg, block_size=4)
            for seed, case in enumerate(cases(hybrid_lengths(u))):
                errors = run_case(attend, case, seed, rank, world)
                if rank == 0:
                    results[case_name(case, f"hybrid-u{u}r{r}")] = errors
    if world > 1:
        # Raised on every rank before any communication, so nothing hangs.
        x = torch.randn(1, world - 1, 4, HEAD_DIM)
        results[f"heads-error-ulysses-{rank}"] = heads_error(lambda: ulysses_attention(x, x, x, torch.arange(4)))
        if world == 4:
            ug, rg = make_sp_groups(world, rank, 2)
            y = torch.randn(1, 3, 4, HEAD_DIM)
            results[f"heads-error-hybrid-{rank}"] = heads_error(
                lambda: hybrid_attention(y, y, y, torch.arange(4), ulysses_group=ug, ring_group=rg)
            )
    return results


@functools.cache
def run_world(world: int) -> dict:
    # world ranks share 2 cores: one thread each
    per_rank = spawn_gloo(_worker, world, preload=[__name__], timeout_s=60, num_threads=1)
    return {name: value for results in per_rank for name, value in results.items()}


def assert_exact(results: dict, prefix: str, expected_cases: int):
    checked = {name: errs for name, errs in results.items() if name.startswith(prefix)}
    assert len(checked) == expected_cases
    bad = {name: errs for name, errs in checked.items() if max(errs.values()) > ATOL}
    assert not bad, bad


# --------------------------------------------------------------------------- tests


N_CASES = len(list(cases()))


@pytest.mark.parametrize("world", [1, 2, 4])
def test_ulysses_matches_full_attention(world):
    assert_exact(run_world(world), f"ulysses-w{world}-", N_CASES)


@pytest.mark.parametrize("u,r", HYBRID_SPLITS)
def test_hybrid_matches_full_attention(u, r):
    assert_exact(run_world(4), f"hybrid-u{u}r{r}-", len(list(cases(hybrid_lengths(u)))))


@pytest.mark.parametrize("world", [2, 4])
def test_heads_not_divisible_by_group_is_an_error(world):
    results = run_world(world)
    for rank in range(world):
        message = results[f"heads-error-ulysses-{rank}"]
        assert f"n_heads ({world - 1})" in message and "sequence_parallel" in message, message
    if world == 4:
        for rank in range(world):
            message = results[f"heads-error-hybrid-{rank}"]
            assert "n_heads (3)" in message and "ulysses_size" in message, message


def test_ulysses_size_must_divide_the_world():
    with pytest.raises(ValueError, match="ulysses_size"):
        make_sp_groups(4, 0, 3)  # raised before any dist.new_group call


def test_without_process_group_is_plain_attention():
    """No torch.distributed at all: a group of one, i.e. ordinary masked attention."""
    assert not dist.is_initialized()
    q, k, v, dout = make_inputs(4, 1, 11, seed=7)
    q, k, v = (x.requires_grad_() for x in (q, k, v))
    out, lse = ulysses_attention(q, k, v, torch.arange(11), causal=True, return_lse=True)
    out.backward(dout)
    expected = reference(q.detach(), k.detach(), v.detach(), dout, causal=True)
    for name, got in zip(QUANTITIES, (out, lse, q.grad, k.grad, v.grad)):
        assert (got.double() - expected[name]).abs().max().item() < ATOL, name


def test_local_attention_blocks_and_seq_len_mask():
    """Blocking gives the same result as one block; keys at positions >= seq_len are ignored."""
    q, k, v, dout = make_inputs(4, 2, 10, seed=3)
    pos = torch.arange(10)
    runs = []
    for block_size in (64, 3):
        qq, kk, vv = (x.clone().requires_grad_() for x in (q, k, v))
        out, lse = local_attention(qq, kk, vv, pos, causal=False, seq_len=7, block_size=block_size)
        out.backward(dout)
        runs.append((out, lse, qq.grad, kk.grad, vv.grad))
    for one, blocked in zip(*runs):
        torch.testing.assert_close(blocked, one)
    expected = reference(q, k[:, :, :7], v[:, :, :7], dout, causal=False)
    for name, got in zip(QUANTITIES, runs[0]):
        want = expected[name]
        if name in ("dk", "dv"):  # hidden keys get no gradient
            assert got[:, :, 7:].abs().max().item() == 0.0
            got = got[:, :, :7]
        assert (got.double() - want).abs().max().item() < ATOL, name
