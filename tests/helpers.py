"""Test-only helpers shared by both tiers (tests/ is on sys.path: `from helpers import ...`).

- free_port(): a TCP port that was free a moment ago (bind to port 0, read it back).
- spawn_gloo(fn, world_size, *args): fn(rank, world_size, *args) in world_size fresh processes,
  each inside a gloo process group on a free localhost port; returns fn's return values by rank
  and re-raises a worker's exception (with the worker's traceback) in the calling test.

Not part of the library: nothing in platform/ imports this.
"""

from __future__ import annotations

import datetime
import socket
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["free_port", "spawn_gloo"]


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now. host "" checks every interface (what Ray binds)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _gloo_entry(rank: int, fn: Callable, world_size: int, port: int, timeout_s: float,
                num_threads: int | None, returns, args: tuple) -> None:
    import torch
    import torch.distributed as dist

    if num_threads is not None:
        torch.set_num_threads(num_threads)  # world_size ranks share the machine's cores
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world_size, timeout=datetime.timedelta(seconds=timeout_s))
    try:
        returns[rank] = fn(rank, world_size, *args)
    finally:
        dist.destroy_process_group()


def spawn_gloo(fn: Callable, world_size: int, *args: Any, start_method: str = "forkserver",
               preload: Sequence[str] = (), timeout_s: float = 60,
               num_threads: int | None = None) -> list:
    """Run fn(rank, world_size, *args) on world_size ranks of a fresh gloo group; [return by rank].

    fn and args must pickle (fn at module level). A failing rank raises here: torch's
    ProcessRaisedException / ProcessExitedException naming the rank, with its traceback.
    The default "forkserver" forks ranks from a server that has already imported torch (and the
    modules in `preload`, e.g. [__name__] of the test module): a rank then starts in milliseconds
    instead of re-importing torch for ~4 s on 2 cores. The server is single-threaded, so forking it
    is safe (unlike forking pytest). The preload list only counts for the first forkserver of the
    pytest process; later ranks import their test module when unpickling fn (torch is already in).
    start_method="spawn" gives every rank a fresh interpreter.
    """
    import torch.multiprocessing as mp

    context = mp.get_context(start_method)
    if start_method == "forkserver":
        context.set_forkserver_preload(["torch", "torch.distributed", __name__, *preload])
    with context.Manager() as manager:
        returns = manager.dict()
        mp.start_processes(_gloo_entry, nprocs=world_size, join=True, start_method=start_method,
                           args=(fn, world_size, free_port(), timeout_s, num_threads, returns, args))
        return [returns[rank] for rank in range(world_size)]
