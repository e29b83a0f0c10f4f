"""Ring attention and blockwise attention against a float64 full-attention reference.

The ring tests run real gloo process groups (tests/helpers.py spawn_gloo, from a preloaded forkserver),
one process group per world size; each worker loops over every case, rank 0 gathers the sharded
results, unshards them, drops the padding and returns the max errors per case to the parent.
The parent asserts per case.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import asdict, dataclass

import pytest
import torch
import torch.distributed as dist

from helpers import spawn_gloo

from ringbit.parallel.blockwise import blockwise_attention, blockwise_attention_backward, merge
from ringbit.parallel.layout import LAYOUTS, pad_to, padded_length, shard, shard_positions, unshard
from ringbit.parallel import ring as ring_module
from ringbit.parallel.ring import ring_attention

ATOL = 1e-5  # fp32 inputs: forward output, LSE and every gradient
# bf16: the results come back in bf16, whose rounding alone is up to 2^-9 of the value (|dv| ~ 9
# gives 0.03), on top of the bf16 rounding of the inputs; so scale the tolerance with the magnitude.
BF16_ATOL, BF16_RTOL = 2e-2, 2**-7
# fp32 LSE against the float64 reference on the *bf16-rounded* inputs: only fp32 accumulation error
# remains. A bf16 merge/accumulation would be off by ~1e-2 here (the bug the reference warns about).
BF16_LSE_EXACT_ATOL = 1e-4
HEADS = {"mha": (2, 2), "gqa": (4, 2), "mqa": (4, 1)}
FIELDS = ("out", "lse", "dq", "dk", "dv")


@dataclass(frozen=True)
class Case:
    layout: str
    causal: bool
    heads: str
    seq_len: int
    block_size: int
    dtype: str = "float32"
    subgroup: bool = False  # ring over the subgroups {0, 2} and {1, 3} of a world of 4

    @property
    def name(self) -> str:
        kind = "causal" if self.causal else "full"
        extra = ("-bf16" if self.dtype == "bfloat16" else "") + ("-subgroup" if self.subgroup else "")
        return f"{self.layout}-{kind}-{self.heads}-T{self.seq_len}-bs{self.block_size}{extra}"


def _cases(world: int) -> list[Case]:
    """Every layout x causal x head layout, at a length that pads and one that does not (for w>1)."""
    cases = []
    combos = itertools.product(LAYOUTS, (True, False), HEADS, (13, 24))
    for i, (layout, causal, heads, length) in enumerate(combos):
        cases.append(Case(layout, causal, heads, length, block_size=(3, 4, 64)[i % 3]))
    if world == 2:
        cases += [Case("zigzag", True, "gqa", 24, 4, dtype="bfloat16"),
                  Case("contiguous", False, "mqa", 13, 3, dtype="bfloat16")]
    if world == 4:
        cases += [Case("zigzag", True, "gqa", 13, 3, subgroup=True),
                  Case("striped", False, "mha", 24, 4, subgroup=True)]
    return cases


# ---------------------------------------------------------------------------------------------
# float64 reference: explicit softmax(Q K^T * scale + mask) V on the full, unpadded sequence


def _visibility(q_pos, k_pos, causal, seq_len=None):
    visible = torch.ones(len(q_pos), len(k_pos), dtype=torch.bool)
    if causal:
        visible &= k_pos[None, :] <= q_pos[:, None]
    if seq_len is not None:
        visible &= (k_pos < seq_len)[None, :]
    return visible


def reference(q, k, v, causal, q_pos=None, k_pos=None, seq_len=None):
    """(out, lse) in the inputs' dtype; differentiable. Rows with no visible key: out 0, lse -inf."""
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    q_pos = torch.arange(q.shape[2]) if q_pos is None else q_pos
    k_pos = torch.arange(k.shape[2]) if k_pos is None else k_pos
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    scores = scores.masked_fill(~_visibility(q_pos, k_pos, causal, seq_len), float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    probs = torch.exp(scores - lse.masked_fill(lse == float("-inf"), 0)[..., None])
    return probs @ v, lse


def _full_inputs(case: Case, seed: int):
    """Deterministic fp32 q, k, v, dout of the full sequence (B, H, T, D)."""
    gen = torch.Generator().manual_seed(seed)
    hq, hkv = HEADS[case.heads]
    batch, dim, t = 2, 8, case.seq_len
    q = torch.randn(batch, hq, t, dim, generator=gen)
    k = torch.randn(batch, hkv, t, dim, generator=gen)
    v = torch.randn(batch, hkv, t, dim, generator=gen)
    dout = torch.randn(batch, hq, t, dim, generator=gen)
    return q, k, v, dout


def _reference_results(case: Case, inputs) -> dict[str, torch.Tensor]:
    q, k, v, dout = (x.double().requires_grad_(i < 3) for i, x in enumerate(inputs))
    out, lse = reference(q, k, v, case.causal)
    out.backward(dout)
    return {"out": out.detach(), "lse": lse.detach(), "dq": q.grad, "dk": k.grad, "dv": v.grad}


# ---------------------------------------------------------------------------------------------
# distributed workers


def _gather_full(x: torch.Tensor, case: Case, world: int, group, length: int) -> torch.Tensor:
    """Every rank's shard along the sequence dim (2) -> full tensor without padding."""
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.contiguous(), group=group)
    return unshard(parts, 2, case.layout)[:, :, :length]


def _run_case(case: Case, index: int, group, world: int, rank: int) -> dict[str, float] | None:
    """Ring attention of this rank's shard; on the group's rank 0, max |error| per field."""
    inputs = _full_inputs(case, seed=1000 + index)
    padded = padded_length(case.seq_len, case.layout, world)
    dtype = getattr(torch, case.dtype)
    q, k, v, dout = (shard(pad_to(x, padded, 2), 2, case.layout, world, rank) for x in inputs)
    q, k, v = (x.to(dtype).requires_grad_() for x in (q, k, v))
    positions = shard_positions(padded, case.layout, world, rank)
    seq_len = case.seq_len if padded != case.seq_len else None  # also exercise seq_len=None
    out, lse = ring_attention(q, k, v, positions, causal=case.causal, group=group, seq_len=seq_len,
                              block_size=case.block_size, return_lse=True)
    out.backward(dout.to(dtype))
    got = {name: _gather_full(t.detach().float(), case, world, group, case.seq_len)
           for name, t in zip(FIELDS, (out, lse, q.grad, k.grad, v.grad))}
    if rank != 0:
        return None
    ref = _reference_results(case, inputs)
    errors = {name: (got[name].double() - ref[name]).abs().max().item() for name in FIELDS}
    errors.update({f"{name}_scale": ref[name].abs().max().item() for name in FIELDS})
    if dtype != torch.float32:
        rounded = _reference_results(case, [x.to(dtype).float() for x in inputs])
        errors["lse_vs_rounded_inputs"] = (got["lse"].double() - rounded["lse"]).abs().max().item()
    errors["lse_is_fp32"] = float(lse.dtype == torch.float32)
    errors["grad_dtype_ok"] = float(q.grad.dtype == k.grad.dtype == v.grad.dtype == dtype)
    errors["out_dtype_ok"] = float(out.dtype == dtype)
    return errors


def _count_communication(world: int, rank: int) -> dict[str, int]:
    """Run one forward+backward with counting wrappers round the torch.distributed calls."""
    counts = dict.fromkeys(("fwd_kv", "fwd_dkv", "bwd_kv", "bwd_dkv", "unpaired", "collectives"), 0)
    phase = ["fwd"]
    real_batch, real_gather = dist.batch_isend_irecv, dist.all_gather

    def batch(ops):
        sends = [op for op in ops if op.op is dist.isend]
        counts["unpaired"] += abs(2 * len(sends) - len(ops))  # each send must come with a recv
        for op in sends:
            counts[f"{phase[0]}_{'kv' if op.tag == ring_module._KV_TAG else 'dkv'}"] += 1
        return real_batch(ops)

    def gather(*args, **kwargs):
        counts["collectives"] += 1
        return real_gather(*args, **kwargs)

    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 4, 8, generator=gen).requires_grad_() for _ in range(3))
    positions = shard_positions(4 * world, "zigzag", world, rank)
    dist.batch_isend_irecv, dist.all_gather = batch, gather
    try:
        out = ring_attention(q, k, v, positions, causal=True, block_size=2)
        phase[0] = "bwd"
        out.sum().backward()
    finally:
        dist.batch_isend_irecv, dist.all_gather = real_batch, real_gather
    return counts


def _worker(rank: int, world: int) -> dict:
    """Every case on this rank (inside spawn_gloo's group); {(case name, reporting rank): errors}."""
    results = {}
    # Subgroups whose group ranks differ from the global ranks: {0, 2} and {1, 3}.
    pairs = [dist.new_group([0, 2]), dist.new_group([1, 3])] if world == 4 else []
    for index, case in enumerate(_cases(world)):
        group, sub_world, sub_rank = None, world, rank
        if case.subgroup:
            group = pairs[rank % 2]
            sub_world, sub_rank = 2, dist.get_rank(group)
        try:
            errors = _run_case(case, index, group, sub_world, sub_rank)
        except Exception as exc:  # name the failing case; re-raising fails the whole start
            raise RuntimeError(f"w{world} rank {rank}: case {case.name} failed: {exc!r}") from exc
        if errors is not None:
            results[(case.name, rank if case.subgroup else 0)] = errors
    results[("communication", rank)] = _count_communication(world, rank)
    dist.barrier()
    return results


@functools.lru_cache(maxsize=None)
def _run_world(world: int) -> dict:
    """Start `world` gloo ranks once; per-case errors keyed by (case name, reporting rank).

    The ranks fork from a forkserver that has torch and this module imported (spawn_gloo's
    preload): with the default "spawn", every rank re-imports torch (~4 s each, with 4 ranks on
    2 cores), which dominated the runtime; forked from a preloaded server, a rank starts in
    milliseconds. The server itself is single-threaded, so forking it is safe (unlike forking
    pytest). The preload is ignored if this process already runs a forkserver.
    """
    try:
        per_rank = spawn_gloo(_worker, world, preload=[__name__], timeout_s=60,
                              num_threads=1)  # 2 cores shared by up to 4 processes
    except Exception as exc:  # cached, so one failed spawn is reported by every case, not re-run
        return {"spawn_error": repr(exc)}
    return {key: errs for results in per_rank for key, errs in results.items()}


def _ring_params():
    for world in (1, 2, 4):
        for case in _cases(world):
            yield pytest.param(world, case, id=f"w{world}-{case.name}")


@pytest.mark.parametrize(("world", "case"), list(_ring_params()))
def test_ring_attention_matches_float64_reference(world: int, case: Case):
    results = _run_world(world)
    assert "spawn_error" not in results, f"w{world} workers failed: {results.get('spawn_error')}"
    reporters = (0, 1) if case.subgroup else (0,)  # group rank 0 of each subgroup is global 0 / 1
    for reporter in reporters:
        errors = results.get((case.name, reporter))
        assert errors is not None, f"w{world} {case.name}: no result from rank {reporter}"
        assert "error" not in errors, f"w{world} {case.name}: {errors['error']}"
        for field in FIELDS:
            atol = ATOL if case.dtype == "float32" else BF16_ATOL + BF16_RTOL * errors[f"{field}_scale"]
            assert errors[field] <= atol, (
                f"w{world} {case.name} ({asdict(case)}): max |{field} - ref| = {errors[field]:.3g} > {atol}")
        if case.dtype != "float32":
            assert errors["lse_vs_rounded_inputs"] <= BF16_LSE_EXACT_ATOL, (
                f"w{world} {case.name}: lse not accumulated in fp32: {errors['lse_vs_rounded_inputs']:.3g}")
        assert errors["lse_is_fp32"] == 1.0, f"w{world} {case.name}: lse is not fp32"
        assert errors["out_dtype_ok"] == 1.0, f"w{world} {case.name}: out not in the input dtype"
        assert errors["grad_dtype_ok"] == 1.0, f"w{world} {case.name}: grads not in the input dtype"


@pytest.mark.parametrize("world", [1, 2, 4])
def test_ring_communication_pattern(world: int):
    """World 1 talks to nobody; otherwise N-1 KV hops forward, N-1 KV hops + N dK/dV hops backward
    (the last hop returns each accumulator to its owner), one all_gather of positions, and every
    send paired with a receive in its batch."""
    results = _run_world(world)
    assert "spawn_error" not in results, f"w{world} workers failed: {results.get('spawn_error')}"
    hops = world - 1
    expected = {"fwd_kv": hops, "fwd_dkv": 0, "bwd_kv": hops, "bwd_dkv": world if world > 1 else 0,
                "unpaired": 0, "collectives": 1 if world > 1 else 0}
    for rank in range(world):
        assert results[("communication", rank)] == expected, f"w{world} rank {rank}"


# ---------------------------------------------------------------------------------------------
# single process


def test_ring_attention_without_process_group_is_plain_attention():
    case = Case("contiguous", True, "gqa", 13, 4)
    q, k, v, dout = _full_inputs(case, seed=7)
    q, k, v = (x.requires_grad_() for x in (q, k, v))
    out, lse = ring_attention(q, k, v, torch.arange(13), causal=True, block_size=4, return_lse=True)
    out.backward(dout)
    ref = _reference_results(case, (q.detach(), k.detach(), v.detach(), dout))
    for name, got in zip(FIELDS, (out, lse, q.grad, k.grad, v.grad)):
        assert (got.detach().double() - ref[name]).abs().max() <= ATOL, name


def _blockwise_case(seed: int, tq: int, tk: int, hq: int = 4, hkv: int = 2):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(2, hq, tq, 8, generator=gen, dtype=torch.float64)
    k = torch.randn(2, hkv, tk, 8, generator=gen, dtype=torch.float64)
    v = torch.randn(2, hkv, tk, 8, generator=gen, dtype=torch.float64)
    dout = torch.randn(2, hq, tq, 8, generator=gen, dtype=torch.float64)
    # Shuffled positions: masking must not assume sorted shards.
    q_pos = torch.randperm(tq, generator=gen)
    k_pos = torch.randperm(tk, generator=gen)
    return q, k, v, dout, q_pos, k_pos


def _assert_blockwise_matches(q, k, v, dout, q_pos, k_pos, causal, seq_len, block_size, atol):
    out, lse = blockwise_attention(q, k, v, q_pos, k_pos, causal=causal, seq_len=seq_len,
                                   block_size=block_size)
    dq, dk, dv = blockwise_attention_backward(q, k, v, out, lse, dout, q_pos, k_pos, causal=causal,
                                              seq_len=seq_len, block_size=block_size)
    qr, kr, vr = (x.detach().double().requires_grad_() for x in (q, k, v))
    ref_out, ref_lse = reference(qr, kr, vr, causal, q_pos, k_pos, seq_len)
    ref_out.backward(dout.double())
    for got in (out, lse, dq, dk, dv):
        assert not torch.isnan(got).any()
    assert torch.equal(torch.isinf(lse), torch.isinf(ref_lse))
    finite = ~torch.isinf(ref_lse)
    if finite.any():
        assert (lse - ref_lse)[finite].abs().max() <= atol
    for name, got, want in (("out", out, ref_out), ("dq", dq, qr.grad), ("dk", dk, kr.grad), ("dv", dv, vr.grad)):
        err = (got.double() - want.detach()).abs().max().item()
        assert err <= atol, f"{name}: {err:.3g} (causal={causal}, seq_len={seq_len}, block={block_size})"
    return out, lse, dq, dk, dv


@pytest.mark.parametrize("block_size", [1, 3, 5, 64])  # 1, non-divisible, larger than T
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("heads", list(HEADS))
def test_blockwise_matches_reference(block_size, causal, heads):
    hq, hkv = HEADS[heads]
    q, k, v, dout, q_pos, k_pos = _blockwise_case(3, tq=13, tk=11, hq=hq, hkv=hkv)
    _assert_blockwise_matches(q, k, v, dout, q_pos, k_pos, causal, 9, block_size, atol=1e-12)
    _assert_blockwise_matches(q.float(), k.float(), v.float(), dout.float(), q_pos, k_pos, causal, None,
                              block_size, atol=ATOL)


def test_blockwise_rows_without_visible_keys_are_zero():
    q, k, v, dout, _, _ = _blockwise_case(5, tq=6, tk=6)
    q_pos = torch.tensor([0, 1, 2, 3, 4, 5])
    k_pos = torch.tensor([3, 4, 5, 6, 7, 8])  # causal: queries 0..2 see nothing
    out, lse, dq, _, _ = _assert_blockwise_matches(q, k, v, dout, q_pos, k_pos, True, None, 2, atol=1e-12)
    assert torch.all(out[:, :, :3] == 0) and torch.all(lse[:, :, :3] == float("-inf"))
    assert torch.all(dq[:, :, :3] == 0)
    # every key is padding: all rows empty
    out, lse, dq, dk, dv = _assert_blockwise_matches(q, k, v, dout, q_pos, k_pos, False, 2, 4, atol=1e-12)
    assert torch.all(out == 0) and torch.all(lse == float("-inf"))
    assert torch.all(dq == 0) and torch.all(dk == 0) and torch.all(dv == 0)


def test_blockwise_output_is_fp32_for_low_precision_inputs():
    q, k, v, dout, q_pos, k_pos = _blockwise_case(9, tq=10, tk=10)
    out, lse = blockwise_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), q_pos, k_pos, causal=True,
                                   block_size=4)
    assert out.dtype == lse.dtype == torch.float32
    ref_out, _ = reference(q, k, v, True, q_pos, k_pos)
    assert (out.double() - ref_out).abs().max() <= BF16_ATOL


def test_merge_of_two_halves_equals_whole_and_handles_empty_parts():
    q, k, v, _, q_pos, k_pos = _blockwise_case(11, tq=8, tk=10)
    whole_out, whole_lse = blockwise_attention(q, k, v, q_pos, k_pos, causal=True)
    halves = [blockwise_attention(q, k[:, :, s], v[:, :, s], q_pos, k_pos[s], causal=True)
              for s in (slice(0, 5), slice(5, 10))]
    out, lse = merge(*halves[0], *halves[1])
    assert torch.allclose(out, whole_out, atol=1e-12) and torch.allclose(lse, whole_lse, atol=1e-12)
    empty_out, empty_lse = torch.zeros_like(out), torch.full_like(lse, float("-inf"))
    out2, lse2 = merge(empty_out, empty_lse, out, lse)
    assert torch.equal(out2, out) and torch.equal(lse2, lse)
    out3, lse3 = merge(empty_out, empty_lse, empty_out, empty_lse)
    assert not torch.isnan(out3).any() and torch.all(out3 == 0) and torch.all(lse3 == float("-inf"))
