"""Ring attention on CPU/gloo: memory per worker, context at a fixed budget, overlap, speed.

    python benchmarks/ring_attention.py [--quick] [--out benchmarks/results/ring_attention.json]

The unit of work is one attention layer's forward + backward: B=1, Hq=4, Hkv=2 (GQA), D=32, fp32,
causal, block_size 256. Ranks are real gloo process groups on this machine's CPUs (forked from a
forkserver that has torch preloaded; torch.set_num_threads(1) per rank). Sections:

1. Memory: the peak tensor memory per worker (max over ranks) against the total sequence length,
   for worlds 1, 2 and 4 (ring, zigzag layout), and single-process blockwise against naive full
   attention. Then the context at a fixed per-worker budget (world 1's peak at L0 tokens): the
   longest total length whose per-worker peak fits, found by doubling and bisection, for each world;
   the claim checked is longest(N) / longest(1) >= 0.9 N. Last, the same search for the whole model
   (section 1d): one training step (forward, loss, backward) of the ringbit Transformer, 2 layers of
   the demo dims, with ring attention in every layer; parameters and gradients count in the peak.
2. Overlap: the ring forward against the same blockwise calls with no communication (compute
   only) and the same batch_isend_irecv rotations with no compute (communication only);
   overlap efficiency = (compute + comm - ring) / min(compute, comm), clipped to [0, 1].
3. Speed at equal total length: fwd+bwd time of blockwise (world 1), ring (contiguous, zigzag,
   striped), Ulysses and the Ulysses x ring hybrid (world 4 = U2 x R2).
4. GPU (only if CUDA is available): one layer against torch SDPA, and bf16 ring errors against a
   float64 reference for growing shard counts; otherwise {"gpu": "not available"}.

Times are medians over repeats after a warm-up, each repeat timed as the slowest rank. On 2 CPU
cores, 4 ranks oversubscribe the cores: world-4 timings show that scaling is correct, not speed.
Prints tables, writes JSON (and a PNG next to it) to benchmarks/results/ and logs both to the MLflow
experiment `ringbit-benchmarks` (run `ring-attention`) when a tracking server answers.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import os
import socket
import statistics
import sys
import tempfile
import textwrap
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from ringbit.models.config import ModelConfig
from ringbit.models import Transformer, count_parameters
from ringbit.parallel.blockwise import any_visible, blockwise_attention, merge, plan_blocks
from ringbit.parallel.layout import LAYOUTS, chunk_count, shard_positions
from ringbit.parallel.ring import ring_attention
from ringbit.parallel.ulysses import hybrid_attention, local_attention, make_sp_groups, ulysses_attention

REPO = Path(__file__).resolve().parents[1]
B, HQ, HKV, D = 1, 4, 2, 32
BLOCK = 256
LAYOUT = "zigzag"  # the layout of the memory, context and overlap sections
WORLDS = (1, 2, 4)
TIMEOUT_S = 300  # gloo init and collective timeout: a hung rank fails the run instead of hanging it
MB = 2**20
# Section 1d: jobs/configs/demo.yaml's dims with 2 layers and GQA; max_seq_len is set per measurement
# to the total length (what a run at that context configures: every rank holds the whole RoPE table).
MODEL_DIMS = {"vocab_size": 4096, "d_model": 128, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2}
MODEL_SEED = 0  # the same initial weights on every rank
MODEL_SEARCH_STEP = 1.03  # the model's context is near N x longest(1): small steps bracket it in one
# probe (were it far below, the search would only take more probes)


@dataclass(frozen=True)
class Settings:
    mem_lengths: tuple[int, ...]  # total lengths of the memory sweep
    budget_len: int  # L0: the budget is world 1's per-worker peak at this length
    search_rel_tol: float  # bisection stops when (too long - fits) <= this fraction of "fits"
    compare_len: int  # blockwise vs naive full attention, single process
    compare_blocks: tuple[int, ...]
    overlap_lengths: tuple[int, ...]
    speed_len: int
    repeats: int  # timed rounds of the speed section
    overlap_repeats: int  # timed rounds of the overlap section (cheaper: forward only)
    warmup: int
    model_budget_len: int  # section 1d: the budget is the whole model's world-1 peak at this length
    model_rel_tol: float  # section 1d's search tolerance (each probe is a full training step)


DEFAULT = Settings(mem_lengths=(1024, 2048, 4096, 8192, 16384), budget_len=2048, search_rel_tol=0.01,
                   compare_len=4096, compare_blocks=(64, 256, 1024), overlap_lengths=(1024, 4096),
                   speed_len=4096, repeats=7, overlap_repeats=21, warmup=2,
                   model_budget_len=2048, model_rel_tol=0.02)
QUICK = Settings(mem_lengths=(1024, 2048, 4096), budget_len=1024, search_rel_tol=0.04,
                 compare_len=2048, compare_blocks=(64, 256), overlap_lengths=(2048,),
                 speed_len=2048, repeats=3, overlap_repeats=7, warmup=1,
                 model_budget_len=512, model_rel_tol=0.04)


# ============================================================================ the unit of work


def make_inputs(total_len: int, layout: str, world: int, rank: int, *, device="cpu", dtype=torch.float32):
    """This rank's q, k, v (leaves needing grad), dout and global positions for one layer."""
    positions = shard_positions(total_len, layout, world, rank)
    gen = torch.Generator().manual_seed(1000 * world + rank)
    t = positions.numel()

    def rand(heads: int) -> torch.Tensor:
        return torch.randn(B, heads, t, D, generator=gen).to(device, dtype)

    q, k, v = (rand(h).requires_grad_() for h in (HQ, HKV, HKV))
    return q, k, v, rand(HQ), positions.to(device)


def fwd_bwd(attend, q, k, v, dout, positions) -> None:
    """One layer: forward, then the gradients of q, k, v (returned by autograd.grad, so they are
    freed when this returns and repeats never accumulate into .grad)."""
    out = attend(q, k, v, positions)
    torch.autograd.grad(out, (q, k, v), dout)


def ring(q, k, v, positions, causal=True, block_size=BLOCK):
    return ring_attention(q, k, v, positions, causal=causal, block_size=block_size)


def blockwise(block_size=BLOCK):
    """Single-process blockwise attention (differentiable, FlashAttention-2-style backward)."""
    def attend(q, k, v, positions):
        return local_attention(q, k, v, positions, causal=True, seq_len=None, block_size=block_size)[0]
    return attend


def naive(q, k, v, positions):
    """Full attention with autograd: builds the (Hq, T, T) scores and probabilities."""
    return naive_with_lse(q, k, v, positions)[0]


def naive_with_lse(q, k, v, positions):
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    hidden = positions[None, :] > positions[:, None]
    scores = scores.masked_fill(hidden, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    return torch.exp(scores - lse[..., None]) @ v, lse


# ============================================================================ measuring


@contextlib.contextmanager
def _quiet_fd2():
    """Kineto writes two log lines per profiler start/stop straight to fd 2; hide them.
    Python exceptions still propagate (and print) once fd 2 is restored."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_bytes(fn, where: list | None = None) -> int:
    """Peak of the bytes that fn() holds live at once, counted at the CPU allocator.

    torch.profiler with profile_memory=True records one event per allocation (+bytes) and per
    free (-bytes) that goes through c10's CPU allocator, i.e. every tensor storage, including
    kernel temporaries and autograd buffers, with timestamps. The running sum of those events in
    time order is the tensor memory that fn() holds live; its maximum is the peak. Exact and
    deterministic, unlike RSS (which sees glibc caching, the interpreter and gloo's own buffers).
    fn() must allocate its inputs itself, so they are counted too (frees of memory allocated
    before the window are dropped by the profiler, so they cannot push the sum below zero).
    If `where` is a list, the name of the innermost op running at the peak is appended to it.
    """
    gc.collect()
    with _quiet_fd2(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                               profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())  # stable: same-timestamp events keep their order
    live = peak = peak_ns = 0
    for event in events:
        live += event.nbytes()
        if live > peak:
            peak, peak_ns = live, event.start_ns()
    if where is not None:
        running = [e for e in prof.profiler.kineto_results.events() if e.name() != "[memory]"
                   and e.start_ns() <= peak_ns <= e.start_ns() + e.duration_ns()]
        where.append(max(running, key=lambda e: e.start_ns()).name() if running else "?")
    return peak


def _reduce_max(value: float) -> float:
    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.item()


def layer_peak(attend, total_len: int, layout: str, world: int, rank: int) -> int:
    """Per-worker peak (max over ranks) of one layer's fwd+bwd, inputs and gradients included."""
    peak = peak_bytes(lambda: fwd_bwd(attend, *make_inputs(total_len, layout, world, rank)))
    return int(_reduce_max(peak))


def timed(fn) -> float:
    """Seconds from a common start (barrier) until the slowest rank has finished fn()."""
    dist.barrier()
    start = time.perf_counter()
    fn()
    return _reduce_max(time.perf_counter() - start)


def median_times(fns: dict, repeats: int, warmup: int) -> dict[str, float]:
    """Median seconds per function; the functions take turns (rotating order) in every round, so
    drift on a shared machine hits them alike. The first `warmup` rounds are not counted."""
    names, samples = list(fns), {name: [] for name in fns}
    for i in range(warmup + repeats):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            seconds = timed(fns[name])
            if i >= warmup:
                samples[name].append(seconds)
    return {name: statistics.median(s) for name, s in samples.items()}


# ============================================================================ 1. memory


def memory_sweep(world: int, rank: int, lengths) -> dict[int, int]:
    return {t: layer_peak(ring, t, LAYOUT, world, rank) for t in lengths}


def blockwise_vs_naive(length: int, blocks) -> dict[str, int]:
    """Single process: the peak is set by block_size for blockwise, by T^2 for naive."""
    peaks = {f"blockwise bs={bs}": layer_peak(blockwise(bs), length, "contiguous", 1, 0) for bs in blocks}
    peaks["naive full attention"] = layer_peak(naive, length, "contiguous", 1, 0)
    return peaks


def longest_at_budget(world: int, rank: int, budget: int, start: int, rel_tol: float,
                      peak=None, step: float = 2.0) -> dict:
    """Longest total length (a multiple of `unit`) whose per-worker peak is <= budget.

    peak(total_len) is the per-worker peak, reduced over ranks (default: one ring attention layer,
    section 1c). Multiplies (or divides) by `step` from `start` (default: doubles or halves) until
    the answer is bracketed, then bisects. Every rank takes the same decisions because the peak is
    reduced over ranks first.
    """
    unit = 8 * chunk_count(LAYOUT, world)  # zigzag needs a multiple of 2N chunks
    peak = peak or (lambda length: layer_peak(ring, length, LAYOUT, world, rank))
    probes: dict[int, int] = {}

    def fits(length: int) -> bool:
        probes[length] = peak(length)
        return probes[length] <= budget

    def grow(length: int) -> int:
        return max(length + unit, -(-int(length * step) // unit) * unit)

    def shrink(length: int) -> int:
        return int(length / step) // unit * unit

    length = max(unit, round(start / unit) * unit)
    if fits(length):
        lo, hi = length, grow(length)
        while fits(hi):
            lo, hi = hi, grow(hi)
    else:
        lo, hi = shrink(length), length
        while lo >= unit and not fits(lo):
            lo, hi = shrink(lo), lo
    while lo >= unit and hi - lo > max(unit, rel_tol * lo):
        mid = (lo + hi) // 2 // unit * unit
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return {"longest": max(lo, 0), "first_too_long": hi, "unit": unit,
            "probes_mb": {str(t): p / MB for t, p in sorted(probes.items())}}


# ============================================================================ 1d. whole model


def model_step(total_len: int, world: int, rank: int) -> None:
    """One training step of the whole model on this rank's zigzag shard of a total_len sequence:
    build the model (same seed on every rank) and its gradient buffers inside the measured window, so
    parameters and gradients count in the peak; forward with ring attention in every layer,
    cross-entropy over the local targets (sum / total_len, so the ranks' losses add up to the mean
    over the sequence) and backward into the gradients. All is freed when this returns. World 1 runs
    the same ring function, without communication.

    The gradients are allocated before the forward, as in a loop that keeps them (accumulation,
    DeepSpeed's gradient buffers): the peak comes early in the backward, before autograd would
    create most of them, so with lazily created .grad they would not count in it.
    """
    positions = shard_positions(total_len, LAYOUT, world, rank)

    def attend(q, k, v, *, causal):
        return ring_attention(q, k, v, positions, causal=causal, group=None, seq_len=total_len,
                              block_size=BLOCK)

    torch.manual_seed(MODEL_SEED)
    model = Transformer(ModelConfig(**MODEL_DIMS, max_seq_len=total_len), attend=attend)
    for param in model.parameters():
        param.grad = torch.zeros_like(param)
    gen = torch.Generator().manual_seed(1000 * world + rank)
    ids, targets = torch.randint(MODEL_DIMS["vocab_size"], (2, 1, positions.numel()), generator=gen)
    logits = model(ids, positions=positions[None])
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum") / total_len
    loss.backward()


def model_peak(total_len: int, world: int, rank: int, where: list | None = None) -> int:
    """Per-worker peak (max over ranks) of one whole-model training step (`where`: see peak_bytes)."""
    return int(_reduce_max(peak_bytes(lambda: model_step(total_len, world, rank), where)))


def model_context(world: int, rank: int, budget: int, start: int, settings: Settings,
                  known: dict[int, int] | None = None) -> dict:
    """Section 1c's search for the whole model, plus one point at half the longest length so the
    fit of fixed + per-token cost spans a factor 2 (the search's probes lie close together).
    `known` holds peaks already measured (the peak is deterministic: world 1's budget is one)."""
    peaks = dict(known or {})

    def peak(length: int) -> int:
        if length not in peaks:
            peaks[length] = model_peak(length, world, rank)
        return peaks[length]

    found = longest_at_budget(world, rank, budget, start, settings.model_rel_tol, peak=peak,
                              step=MODEL_SEARCH_STEP)
    half = found["longest"] // 2 // found["unit"] * found["unit"]
    if half >= found["unit"] and str(half) not in found["probes_mb"]:
        found["fit_point_mb"] = {str(half): peak(half) / MB}
    return found


# ============================================================================ 2. overlap


def compute_only(q, k, v, q_pos, all_pos, rank: int, world: int):
    """The ring forward's blockwise calls and merges, with no communication."""
    kv = torch.stack([k, v])
    out = lse = None
    for step in range(world):
        k_pos = all_pos[(rank - step) % world]
        if any_visible(q_pos, k_pos, causal=True, seq_len=None):
            part = blockwise_attention(q, kv[0], kv[1], q_pos, k_pos, causal=True, block_size=BLOCK)
            out, lse = part if out is None else merge(out, lse, *part)
    return out


def comm_only(k, v, q_pos, rank: int, world: int) -> None:
    """The ring forward's communication with no compute: the all_gather of every rank's positions
    and the N-1 batch_isend_irecv rotations of the stacked KV shard."""
    dist.all_gather([torch.empty_like(q_pos) for _ in range(world)], q_pos)
    kv = torch.stack([k, v])
    for _ in range(world - 1):
        incoming = torch.empty_like(kv)
        requests = dist.batch_isend_irecv([dist.P2POp(dist.isend, kv, (rank + 1) % world),
                                           dist.P2POp(dist.irecv, incoming, (rank - 1) % world)])
        for request in requests:
            request.wait()
        kv = incoming


def overlap(world: int, rank: int, total_len: int, settings: Settings) -> dict:
    q, k, v, _, q_pos = make_inputs(total_len, LAYOUT, world, rank)
    all_pos = [shard_positions(total_len, LAYOUT, world, r) for r in range(world)]
    fns = {"ring": lambda: ring(q, k, v, q_pos),
           "compute": lambda: compute_only(q, k, v, q_pos, all_pos, rank, world),
           "comm": lambda: comm_only(k, v, q_pos, rank, world)}
    with torch.no_grad():
        t = median_times(fns, settings.overlap_repeats, settings.warmup)
    hidden = t["compute"] + t["comm"] - t["ring"]
    efficiency = min(1.0, max(0.0, hidden / min(t["compute"], t["comm"])))
    return {"world": world, "total_len": total_len, "ring_s": t["ring"], "compute_s": t["compute"],
            "comm_s": t["comm"], "overlap_efficiency": efficiency,
            "ring_over_compute": t["ring"] / t["compute"], "comm_over_compute": t["comm"] / t["compute"]}


# ============================================================================ 3. speed


def speed(world: int, rank: int, settings: Settings) -> list[dict]:
    """fwd+bwd seconds of every strategy at the same total length."""
    if world == 1:
        methods = {("blockwise", "contiguous"): blockwise()}
    else:
        methods = {("ring", layout): ring for layout in LAYOUTS}
        methods[("ulysses", LAYOUT)] = lambda q, k, v, pos: ulysses_attention(q, k, v, pos, block_size=BLOCK)
        if world == 4:
            ulysses_group, ring_group = make_sp_groups(world, rank, ulysses_size=2)
            methods[("hybrid U2xR2", LAYOUT)] = lambda q, k, v, pos: hybrid_attention(
                q, k, v, pos, ulysses_group=ulysses_group, ring_group=ring_group, block_size=BLOCK)
    fns = {}
    for (method, layout), attend in methods.items():
        inputs = make_inputs(settings.speed_len, layout, world, rank)
        fns[f"{method}|{layout}"] = lambda attend=attend, inputs=inputs: fwd_bwd(attend, *inputs)
    times = median_times(fns, settings.repeats, settings.warmup)
    return [{"world": world, "method": name.split("|")[0], "layout": name.split("|")[1], "seconds": s,
             "tokens_per_s": settings.speed_len / s} for name, s in times.items()]


def ring_work(total_len: int, layout: str, world: int) -> dict[str, int]:
    """Causal (query block, key block) pairs the busiest rank computes, and how many need a mask:
    what the layouts trade (zigzag skips whole blocks; striped skips few and masks more)."""
    positions = [shard_positions(total_len, layout, world, r) for r in range(world)]
    per_rank = []
    for q_pos in positions:
        pairs = masked = 0
        for k_pos in positions:
            if any_visible(q_pos, k_pos, causal=True, seq_len=None):
                for block in plan_blocks(q_pos, k_pos, causal=True, seq_len=None, block_size=BLOCK):
                    pairs += len(block.keys)
                    masked += sum(key.needs_mask for key in block.keys)
        per_rank.append((pairs, masked))
    pairs, masked = max(per_rank)
    return {"busiest_rank_blocks": pairs, "busiest_rank_masked_blocks": masked,
            "all_ranks_blocks": sum(p for p, _ in per_rank)}


# ============================================================================ ranks


def rank_work(world: int, rank: int, job: dict) -> dict:
    """Everything one world size measures; returns the same (reduced) figures on every rank."""
    settings = Settings(**job["settings"])
    result = {"memory_bytes": memory_sweep(world, rank, settings.mem_lengths)}
    if world == 1:
        result["blockwise_vs_naive_bytes"] = blockwise_vs_naive(settings.compare_len, settings.compare_blocks)
        job["budget_bytes"] = layer_peak(ring, settings.budget_len, LAYOUT, 1, 0)
        result["budget_bytes"] = job["budget_bytes"]
    result["context"] = longest_at_budget(world, rank, job["budget_bytes"], job["search_start"],
                                          settings.search_rel_tol)
    known = {}
    if world == 1:
        where = []
        job["model_budget_bytes"] = known[settings.model_budget_len] = model_peak(settings.model_budget_len, 1, 0,
                                                                                  where)
        result["model_budget_bytes"], result["model_peak_op"] = job["model_budget_bytes"], where[0]
    result["model_context"] = model_context(world, rank, job["model_budget_bytes"], job["model_search_start"],
                                            settings, known)
    if world > 1:
        result["overlap"] = [overlap(world, rank, t, settings) for t in settings.overlap_lengths]
    result["speed"] = speed(world, rank, settings)
    return result


def rank_main(rank: int, world: int, port: int, job: dict, out_dir: str) -> None:
    torch.set_num_threads(1)  # 2 cores shared by up to 4 ranks
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=TIMEOUT_S))
    try:
        result = rank_work(world, rank, job)
        if rank == 0:
            Path(out_dir, "result.json").write_text(json.dumps(result))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(world: int, job: dict) -> dict:
    """Run rank_work on `world` gloo ranks forked from a forkserver with torch (and this module)
    preloaded, so a rank starts in milliseconds instead of re-importing torch."""
    mp.get_context("forkserver").set_forkserver_preload(["torch", "torch.distributed", "__main__"])
    with tempfile.TemporaryDirectory() as tmp:
        mp.start_processes(rank_main, args=(world, _free_port(), job, tmp), nprocs=world, join=True,
                           start_method="forkserver")
        return json.loads(Path(tmp, "result.json").read_text())


# ============================================================================ 4. GPU


def gpu_section(quick: bool) -> dict:
    if not torch.cuda.is_available():
        return {"gpu": "not available"}
    device = torch.device("cuda")
    lengths = (4096,) if quick else (4096, 16384)
    return {"gpu": torch.cuda.get_device_name(device),
            "vs_sdpa": [time_vs_sdpa(device, t, repeats=5) for t in lengths],
            "bf16_errors": bf16_ring_errors(device, 2048 if quick else 4096, (1, 2, 4, 8, 16, 32, 64))}


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_vs_sdpa(device, total_len: int, repeats: int, dtype=torch.bfloat16) -> dict:
    """One layer fwd+bwd, single device: blockwise attention (the ring's per-device kernel) vs SDPA."""
    q, k, v, dout, pos = make_inputs(total_len, "contiguous", 1, 0, device=device, dtype=dtype)
    sdpa = lambda q, k, v, pos: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)  # noqa: E731
    result = {"total_len": total_len, "dtype": str(dtype).removeprefix("torch.")}
    for name, attend in (("blockwise_s", blockwise(1024)), ("sdpa_s", sdpa)):
        samples = []
        for i in range(repeats + 1):
            _sync(device)
            start = time.perf_counter()
            fwd_bwd(attend, q, k, v, dout, pos)
            _sync(device)
            if i:  # the first one is the warm-up
                samples.append(time.perf_counter() - start)
        result[name] = statistics.median(samples)
    result["blockwise_over_sdpa"] = result["blockwise_s"] / result["sdpa_s"]
    return result


def simulated_ring(q, k, v, pos, shards: int, merge_dtype=torch.float32):
    """The ring forward's arithmetic on one device: per-KV-shard blockwise attention, merged in
    `merge_dtype` (fp32 as the ring does; bf16 is the known bug whose error grows with shards)."""
    out = lse = None
    for k_part, v_part, k_pos in zip(k.chunk(shards, 2), v.chunk(shards, 2), pos.chunk(shards)):
        if not any_visible(pos, k_pos, causal=True, seq_len=None):
            continue
        o, l = blockwise_attention(q, k_part, v_part, pos, k_pos, causal=True,
                                   block_size=min(512, k_part.shape[2]))
        o, l = o.to(merge_dtype), l.to(merge_dtype)
        out, lse = (o, l) if out is None else merge(out, lse, o, l)
    return out, lse


def bf16_ring_errors(device, total_len: int, shard_counts) -> list[dict]:
    """Max |error| of a bf16 ring forward against float64 attention of the same bf16 inputs."""
    q, k, v, _, pos = make_inputs(total_len, "contiguous", 1, 0, device=device, dtype=torch.bfloat16)
    q, k, v = (x.detach() for x in (q, k, v))
    with torch.no_grad():
        ref_out, ref_lse = naive_with_lse(q.double(), k.double(), v.double(), pos)
        rows = []
        for n in shard_counts:
            row = {"shards": n}
            for label, merge_dtype in (("fp32_merge", torch.float32), ("bf16_merge", torch.bfloat16)):
                out, lse = simulated_ring(q, k, v, pos, n, merge_dtype)
                row[f"{label}_out_err"] = (out.double() - ref_out).abs().max().item()
                row[f"{label}_lse_err"] = (lse.double() - ref_lse).abs().max().item()
            rows.append(row)
    return rows


# ============================================================================ report


def memory_fit(world: int, peaks: dict[str, int]) -> dict[str, float]:
    """Least-squares line peak = C + c * (total length / world): C is the block working set
    (set by block_size), c the bytes each local token costs (inputs, outputs, gradients, buffers)."""
    xs = [int(t) / world for t in peaks]
    ys = list(peaks.values())
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return {"bytes_per_local_token": slope, "constant_mb": (my - slope * mx) / MB}


def summarize(runs: dict[int, dict], settings: Settings, gpu: dict) -> dict:
    w1 = runs[1]
    budget = w1["budget_bytes"]
    longest1 = w1["context"]["longest"]
    context = []
    for world, run in runs.items():
        ratio = run["context"]["longest"] / longest1
        context.append({"world": world, "longest_total_len": run["context"]["longest"],
                        "first_too_long": run["context"]["first_too_long"], "ratio": ratio,
                        "claim_ratio_ge_0.9N": ratio >= 0.9 * world, "probes_mb": run["context"]["probes_mb"]})
    fits = {str(w): memory_fit(w, run["memory_bytes"]) for w, run in runs.items()}
    for row in context:  # what the fit predicts: C cancels, so longest(N) / longest(1) = N c_1 / c_N
        row["predicted_ratio_from_fit"] = row["world"] * fits["1"]["bytes_per_local_token"] / \
            fits[str(row["world"])]["bytes_per_local_token"]
    speed = [row for run in runs.values() for row in run["speed"]]
    for row in speed:
        if row["method"] in ("ring", "blockwise"):
            row.update(ring_work(settings.speed_len, row["layout"], row["world"]))
    speedups = {}
    for world in WORLDS[1:]:
        by_layout = {r["layout"]: r["seconds"] for r in speed if r["world"] == world and r["method"] == "ring"}
        for layout in ("zigzag", "striped"):
            speedups[f"w{world}_{layout}_over_contiguous"] = by_layout["contiguous"] / by_layout[layout]
    return {
        "shape": {"B": B, "Hq": HQ, "Hkv": HKV, "D": D, "dtype": "float32", "causal": True,
                  "block_size": BLOCK, "layout": LAYOUT},
        "settings": asdict(settings),
        "memory": {
            "per_worker_peak_mb": {str(w): {str(t): b / MB for t, b in run["memory_bytes"].items()}
                                   for w, run in runs.items()},
            "fit": fits,
            "blockwise_vs_naive_mb": {"total_len": settings.compare_len,
                                      **{k: b / MB for k, b in w1["blockwise_vs_naive_bytes"].items()}},
        },
        "context_at_budget": {"budget_len": settings.budget_len, "budget_mb": budget / MB, "rows": context},
        "model_context_at_budget": summarize_model(runs, settings),
        "overlap": [row for run in runs.values() for row in run.get("overlap", [])],
        "speed": {"total_len": settings.speed_len, "rows": speed, "speedups": speedups,
                  "note": "2 CPU cores: world-4 ranks oversubscribe the cores, so world-4 times show "
                          "correct scaling, not speed (they follow the work of all ranks together, not "
                          "the busiest rank's, so balanced layouts cannot help there)"},
        "gpu": gpu,
    }


def summarize_model(runs: dict[int, dict], settings: Settings) -> dict:
    """Section 1d: the whole model's context at world 1's peak at model_budget_len tokens."""
    longest1 = runs[1]["model_context"]["longest"]
    fits, rows = {}, []
    for world, run in runs.items():
        found = run["model_context"]
        peaks = {t: mb * MB for t, mb in {**found["probes_mb"], **found.get("fit_point_mb", {})}.items()}
        fits[str(world)] = memory_fit(world, peaks)
        ratio = found["longest"] / longest1
        rows.append({"world": world, "longest_total_len": found["longest"],
                     "longest_local_len": found["longest"] // world, "first_too_long": found["first_too_long"],
                     "ratio": ratio, "claim_ratio_ge_0.9N": ratio >= 0.9 * world,
                     "probes_mb": found["probes_mb"], "fit_point_mb": found.get("fit_point_mb", {})})
    c1 = fits["1"]["bytes_per_local_token"]
    for row in rows:  # as in 1c: the fixed cost C cancels, longest(N) / longest(1) = N c_1 / c_N
        cn = fits[str(row["world"])]["bytes_per_local_token"]
        row["predicted_ratio_from_fit"] = row["world"] * c1 / cn
        row["extra_bytes_per_local_token_vs_w1"] = cn - c1
    params = count_parameters(Transformer(ModelConfig(**MODEL_DIMS)))
    head_dim = MODEL_DIMS["d_model"] // MODEL_DIMS["n_heads"]
    return {
        "model": {**MODEL_DIMS, "ffn_hidden": ModelConfig(**MODEL_DIMS).hidden, "max_seq_len": "total length",
                  "attention": f"ring_attention ({LAYOUT}, block {BLOCK}) in every layer", "dtype": "float32",
                  "step": "forward + cross-entropy (sum / total length) + backward; no optimizer",
                  "init_seed": MODEL_SEED},
        "parameters": params,
        "params_and_grads_mb": 2 * 4 * params / MB,  # fp32 parameters + their gradients, on every rank
        "rope_bytes_per_total_token": 2 * 4 * head_dim // 2,  # cos + sin tables, whole sequence, every rank
        "budget_len": settings.model_budget_len,
        "budget_mb": runs[1]["model_budget_bytes"] / MB,
        "peak_op_world1": runs[1]["model_peak_op"],  # the op running at the world-1 budget peak
        "search_rel_tol": settings.model_rel_tol,
        "rows": rows,
        "fit": fits,
    }


def print_tables(r: dict) -> None:
    s = r["shape"]
    print(f"\nOne layer fwd+bwd: B={s['B']} Hq={s['Hq']} Hkv={s['Hkv']} D={s['D']} {s['dtype']} causal, "
          f"block {s['block_size']}; gloo ranks on CPU, 1 thread each; times = median, slowest rank")

    mem = r["memory"]["per_worker_peak_mb"]
    lengths = list(next(iter(mem.values())))
    print(f"\n1a. Peak tensor memory per worker, MB (ring, {s['layout']} layout)")
    print(f"{'total tokens':>12s}" + "".join(f"{'world ' + w:>10s}" for w in mem))
    for t in lengths:
        print(f"{t:>12s}" + "".join(f"{mem[w][t]:10.2f}" for w in mem))
    fits = r["memory"]["fit"]
    print("    fit peak = C + c x local tokens:  "
          + "   ".join(f"w{w}: C {f['constant_mb']:.2f} MB, c {f['bytes_per_local_token']:.0f} B" for w, f in fits.items()))
    print("    at fixed tokens per worker (should stay flat as the world grows):")
    for t in lengths:
        cells = [f"w{w}: {mem[w][str(int(t) * int(w))]:.2f}" for w in mem if str(int(t) * int(w)) in mem[w]]
        if len(cells) > 1:
            print(f"    {t:>6s} tokens/worker  " + "   ".join(cells))

    cmp_ = r["memory"]["blockwise_vs_naive_mb"]
    print(f"\n1b. Single process at {cmp_['total_len']} tokens: peak MB (memory set by the block size)")
    for name, value in cmp_.items():
        if name != "total_len":
            print(f"{name:>24s} {value:10.2f}")

    ctx = r["context_at_budget"]
    print(f"\n1c. Context at a fixed per-worker budget of {ctx['budget_mb']:.2f} MB "
          f"(world-1 peak at {ctx['budget_len']} tokens)")
    print(f"{'workers':>8s} {'longest total':>14s} {'ratio vs 1':>11s} {'0.9 N':>6s} {'ratio >= 0.9 N':>15s} "
          f"{'N c1/cN (fit)':>14s}")
    for row in ctx["rows"]:
        print(f"{row['world']:>8d} {row['longest_total_len']:>14d} {row['ratio']:>11.2f} "
              f"{0.9 * row['world']:>6.1f} {str(row['claim_ratio_ge_0.9N']):>15s} "
              f"{row['predicted_ratio_from_fit']:>14.2f}")
    print("    the block working set C cancels out of the ratio; what lowers it is the ring's extra buffers"
          "\n    per local token (KV in flight, dK/dV accumulator and its receive buffer), c_N > c_1.")
    print_model_context(r["model_context_at_budget"], r["memory"]["fit"])

    print("\n2. Overlap of communication and compute, ring forward (ms)")
    print(f"{'world':>6s} {'tokens':>7s} {'ring':>9s} {'compute':>9s} {'comm':>9s} {'overlap eff':>12s} "
          f"{'ring/compute':>13s}")
    for o in r["overlap"]:
        print(f"{o['world']:>6d} {o['total_len']:>7d} {1e3 * o['ring_s']:>9.2f} {1e3 * o['compute_s']:>9.2f} "
              f"{1e3 * o['comm_s']:>9.2f} {o['overlap_efficiency']:>12.2f} {o['ring_over_compute']:>13.3f}")
    print("    overlap eff = (compute + comm - ring) / min(compute, comm), clipped to [0, 1]; when comm is a"
          "\n    few % of compute it is within timing noise, and ring/compute is the figure that matters.")

    sp = r["speed"]
    print(f"\n3. Speed at equal total length ({sp['total_len']} tokens), fwd+bwd")
    print(f"{'world':>6s} {'method':>13s} {'layout':>11s} {'ms':>9s} {'tokens/s':>10s} "
          f"{'block pairs: busiest rank (masked) / all ranks':>47s}")
    for row in sp["rows"]:
        work = (f"{row['busiest_rank_blocks']} ({row['busiest_rank_masked_blocks']}) / {row['all_ranks_blocks']}"
                if "all_ranks_blocks" in row else "")
        print(f"{row['world']:>6d} {row['method']:>13s} {row['layout']:>11s} {1e3 * row['seconds']:>9.1f} "
              f"{row['tokens_per_s']:>10.0f} {work:>47s}")
    print("    speed-up over contiguous ring (causal): "
          + ", ".join(f"{k.replace('_over_contiguous', '')} {v:.2f}x" for k, v in sp["speedups"].items()))
    print(textwrap.fill(f"note: {sp['note']}", width=100, initial_indent="    ", subsequent_indent="    "))

    gpu = r["gpu"]
    if gpu.get("gpu") == "not available":
        print("\n4. GPU: not available (CUDA not found): SDPA timing and bf16 error growth skipped")
    else:
        print(f"\n4. GPU ({gpu['gpu']})")
        for row in gpu["vs_sdpa"]:
            print(f"    T={row['total_len']} {row['dtype']}: blockwise {1e3 * row['blockwise_s']:.2f} ms, "
                  f"SDPA {1e3 * row['sdpa_s']:.2f} ms ({row['blockwise_over_sdpa']:.1f}x)")
        print(f"    {'shards':>6s} {'out err fp32 merge':>19s} {'lse err fp32':>13s} {'out err bf16 merge':>19s}")
        for row in gpu["bf16_errors"]:
            print(f"    {row['shards']:>6d} {row['fp32_merge_out_err']:>19.2e} {row['fp32_merge_lse_err']:>13.2e} "
                  f"{row['bf16_merge_out_err']:>19.2e}")


def print_model_context(m: dict, layer_fits: dict) -> None:
    dims = m["model"]
    print(f"\n1d. Whole model: longest context at a fixed per-worker budget of {m['budget_mb']:.2f} MB "
          f"(world-1 peak at {m['budget_len']} tokens)")
    print(f"    ringbit Transformer: vocab {dims['vocab_size']}, d_model {dims['d_model']}, {dims['n_layers']} layers, "
          f"{dims['n_heads']} heads ({dims['n_kv_heads']} KV), SwiGLU {dims['ffn_hidden']}, fp32; ring attention\n"
          f"    ({LAYOUT}, block {BLOCK}) in every layer, world 1 included; one step = forward + cross-entropy + backward")
    print(f"{'workers':>8s} {'longest total':>14s} {'per worker':>11s} {'ratio vs 1':>11s} {'0.9 N':>6s} "
          f"{'ratio >= 0.9 N':>15s} {'N c1/cN (fit)':>14s}")
    for row in m["rows"]:
        print(f"{row['world']:>8d} {row['longest_total_len']:>14d} {row['longest_local_len']:>11d} "
              f"{row['ratio']:>11.2f} {0.9 * row['world']:>6.1f} {str(row['claim_ratio_ge_0.9N']):>15s} "
              f"{row['predicted_ratio_from_fit']:>14.2f}")
    fits = m["fit"]
    print("    fit peak = C + c x local tokens:  "
          + "   ".join(f"w{w}: C {f['constant_mb']:.2f} MB, c {f['bytes_per_local_token']:.0f} B" for w, f in fits.items()))
    print(textwrap.fill(
        f"The model and its gradient buffers are built inside each measured step, so every peak counts its "
        f"{m['parameters'] / 1e6:.2f} M fp32 parameters and their gradients ({m['params_and_grads_mb']:.2f} MB "
        "together, the same on every rank: part of a real per-worker budget; an optimizer's state, not included, "
        "would add a fixed amount per rank too) and the RoPE tables of the whole sequence "
        f"({m['rope_bytes_per_total_token']} B per total token, on every rank: they grow with N at a fixed local "
        "length).", width=100, initial_indent="    ", subsequent_indent="    "))
    passing = [row["world"] for row in m["rows"] if row["world"] > 1 and row["claim_ratio_ge_0.9N"]]
    failing = [row["world"] for row in m["rows"] if row["world"] > 1 and not row["claim_ratio_ge_0.9N"]]
    verdict = (f"holds at N = {', '.join(map(str, passing))}" if passing else "") + \
        ("; " if passing and failing else "") + (f"FAILS at N = {', '.join(map(str, failing))}" if failing else "")
    c1, layer_c1 = fits["1"]["bytes_per_local_token"], layer_fits["1"]["bytes_per_local_token"]
    rope = m["rope_bytes_per_total_token"]
    print(f"    claim ratio >= 0.9 N for the whole model: {verdict}. What N workers add per local token,"
          f"\n    c_N - c_1 (fit), against the model's c_1 = {c1:.0f} B (RoPE tables: {rope} (N-1) B of it):")
    for row in m["rows"]:
        w = str(row["world"])
        if row["world"] > 1 and w in layer_fits:
            extra, layer_extra = row["extra_bytes_per_local_token_vs_w1"], layer_fits[w]["bytes_per_local_token"] - layer_c1
            print(f"      w{w}: {extra:.0f} B = {100 * extra / c1:.1f}% of c_1, RoPE {rope * (row['world'] - 1)} B; "
                  f"1c's lone layer: {layer_extra:.0f} B = {100 * layer_extra / layer_c1:.0f}% of its c_1")
    op = m["peak_op_world1"]
    if "softmax" in op or "nll" in op or "cross_entropy" in op:
        why = (f"Why: the model's peak (world 1) is in {op}, the loss's backward over the logits (local tokens x "
               f"{dims['vocab_size']} vocabulary, fp32) with every layer's saved activations live; the ring's buffers "
               "(KV in flight, dK/dV accumulators) exist only inside one attention layer's forward or backward, when "
               "the model holds less, so they hardly raise its peak. A lone layer (1c) holds nothing else, so there "
               "they set the peak.")
    else:
        why = f"The model's peak (world 1) is in {op}."
    print(textwrap.fill(f"{why} The ratio stays under N by what N workers add per local token (above) and by "
                        "the search's unit (16 N tokens); fixed costs C cancel out of it.",
                        width=100, initial_indent="    ", subsequent_indent="    "))


def plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for world, series in r["memory"]["per_worker_peak_mb"].items():
        lengths = [int(t) for t in series]
        left.plot(lengths, list(series.values()), marker="o", label=f"{world} worker{'s' * (world != '1')}")
    ctx = r["context_at_budget"]
    left.axhline(ctx["budget_mb"], color="grey", linestyle="--", label="budget")
    left.set(xscale="log", yscale="log", xlabel="total sequence length (tokens)",
             ylabel="peak tensor memory per worker (MB)", title="Memory per worker, ring (zigzag)")
    left.set_xticks(lengths, [str(t) for t in lengths])
    left.yaxis.set_major_formatter(ScalarFormatter())
    left.yaxis.set_minor_formatter(ScalarFormatter())
    left.legend()
    worlds = [row["world"] for row in ctx["rows"]]
    longest = [row["longest_total_len"] for row in ctx["rows"]]
    model = r["model_context_at_budget"]
    model_longest = [row["longest_total_len"] for row in model["rows"]]
    right.plot(worlds, longest, marker="o", label=f"one attention layer (1c), {ctx['budget_mb']:.1f} MB")
    right.plot(worlds, model_longest, marker="s", label=f"whole model (1d), {model['budget_mb']:.0f} MB")
    right.plot(worlds, [w * longest[0] for w in worlds], linestyle="--", color="grey", label="N x longest(1)")
    right.plot(worlds, [0.9 * w * longest[0] for w in worlds], linestyle=":", color="grey", label="0.9 N x longest(1)")
    if model_longest[0] != longest[0]:  # different L0: the model's own reference lines
        right.plot(worlds, [w * model_longest[0] for w in worlds], linestyle="--", color="grey")
        right.plot(worlds, [0.9 * w * model_longest[0] for w in worlds], linestyle=":", color="grey")
    right.set(xlabel="workers", ylabel="longest total length (tokens)", xticks=worlds,
              title="Context at a fixed budget per worker (world-1 peak)")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _flat_metrics(r: dict) -> dict[str, float]:
    m = {}
    for world, series in r["memory"]["per_worker_peak_mb"].items():
        for t, mb in series.items():
            m[f"memory.w{world}.T{t}_mb"] = mb
    for name, mb in r["memory"]["blockwise_vs_naive_mb"].items():
        if name != "total_len":
            m[f"memory.single.{name.replace(' ', '_').replace('=', '')}_mb"] = mb
    for world, fit in r["memory"]["fit"].items():
        m[f"memory.w{world}.bytes_per_local_token"] = fit["bytes_per_local_token"]
        m[f"memory.w{world}.constant_mb"] = fit["constant_mb"]
    m["context.budget_mb"] = r["context_at_budget"]["budget_mb"]
    for row in r["context_at_budget"]["rows"]:
        m[f"context.w{row['world']}.longest"] = row["longest_total_len"]
        m[f"context.w{row['world']}.ratio"] = row["ratio"]
    model = r["model_context_at_budget"]
    m["model_context.budget_mb"] = model["budget_mb"]
    m["model_context.params_and_grads_mb"] = model["params_and_grads_mb"]
    for row in model["rows"]:
        m[f"model_context.w{row['world']}.longest"] = row["longest_total_len"]
        m[f"model_context.w{row['world']}.ratio"] = row["ratio"]
    for world, fit in model["fit"].items():
        m[f"model_context.w{world}.bytes_per_local_token"] = fit["bytes_per_local_token"]
        m[f"model_context.w{world}.constant_mb"] = fit["constant_mb"]
    for o in r["overlap"]:
        for k in ("ring_s", "compute_s", "comm_s", "overlap_efficiency", "ring_over_compute"):
            m[f"overlap.w{o['world']}.T{o['total_len']}.{k}"] = o[k]
    for row in r["speed"]["rows"]:
        m[f"speed.w{row['world']}.{row['method'].replace(' ', '_')}.{row['layout']}_s"] = row["seconds"]
    for k, v in r["speed"]["speedups"].items():
        m[f"speed.{k}"] = v
    return m


def log_to_mlflow(r: dict, png: Path) -> str | None:
    try:
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient

        from ringbit.tracking import experiment_id, resolve_tracking_uri

        uri = resolve_tracking_uri()
        if uri.startswith("http"):  # fail fast instead of waiting out MLflow's retries
            urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=3).read()
        client = MlflowClient(uri)
        run = client.create_run(experiment_id(client, "ringbit-benchmarks"), run_name="ring-attention")
    except Exception as exc:  # no server: the JSON file is the record
        print(f"(MLflow not reachable, not logged: {type(exc).__name__})")
        return None
    rid, now = run.info.run_id, int(time.time() * 1000)
    params = {**{f"shape.{k}": v for k, v in r["shape"].items()},
              **{f"settings.{k}": v for k, v in r["settings"].items()}, "gpu": r["gpu"].get("gpu"),
              **{f"model_context.model.{k}": v for k, v in r["model_context_at_budget"]["model"].items()}}
    metrics = [Metric(k, float(v), now, 0) for k, v in _flat_metrics(r).items()]
    client.log_batch(rid, params=[Param(k, str(v)) for k, v in params.items()])
    for i in range(0, len(metrics), 500):
        client.log_batch(rid, metrics=metrics[i:i + 500])
    with contextlib.suppress(Exception):  # artifacts need a reachable artifact store
        client.log_dict(rid, r, "ring_attention.json")
        client.log_artifact(rid, str(png))
    client.set_terminated(rid)
    return rid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="shorter lengths and fewer repeats (~1.5 min)")
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/ring_attention.json"))
    ap.add_argument("--gpu-only", action="store_true",
                    help="section 4 alone (one CUDA device: bf16 ring arithmetic, blockwise vs SDPA)")
    args = ap.parse_args()
    if args.gpu_only:
        result = gpu_section(args.quick)
        print(json.dumps(result, indent=2))
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
        return
    settings = QUICK if args.quick else DEFAULT
    started = time.perf_counter()
    job = {"settings": asdict(settings), "budget_bytes": None, "search_start": settings.budget_len,
           "model_budget_bytes": None, "model_search_start": settings.model_budget_len}
    runs = {1: spawn(1, job)}
    for world in WORLDS[1:]:  # the searches start at the ideal: N times world 1's context
        runs[world] = spawn(world, {**job, "budget_bytes": runs[1]["budget_bytes"],
                                    "search_start": world * runs[1]["context"]["longest"],
                                    "model_budget_bytes": runs[1]["model_budget_bytes"],
                                    "model_search_start": world * runs[1]["model_context"]["longest"]})
    result = summarize(runs, settings, gpu_section(args.quick))
    result["runtime_s"] = time.perf_counter() - started
    print_tables(result)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    png = out.with_suffix(".png")
    plot(result, png)
    result["mlflow_run"] = log_to_mlflow(result, png)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nruntime {result['runtime_s']:.0f} s")
    print(f"wrote {out}")
    print(f"wrote {png}")


if __name__ == "__main__":
    main()
