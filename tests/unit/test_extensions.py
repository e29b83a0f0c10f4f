"""Stale torch JIT build locks (left by a process killed mid-build) are removed with a message;
a young lock, or one in a folder where a process works, is left to the build that holds it."""

from __future__ import annotations

import os
import subprocess
import time

from ringbit.extensions import clear_stale_build_locks


def lock(folder, age_s: float):
    folder.mkdir(parents=True)
    path = folder / "lock"
    path.touch()
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_stale_locks_are_removed_live_ones_kept(tmp_path):
    stale = lock(tmp_path / "py311_cpu" / "deepspeed_shm_comm", 3600)
    young = lock(tmp_path / "py311_cpu" / "ringbit_lowbit", 5)
    flat = lock(tmp_path / "other_op", 3600)  # TORCH_EXTENSIONS_DIR layout: <root>/<name>/lock
    busy = lock(tmp_path / "py311_cpu" / "building", 3600)
    compiler = subprocess.Popen(["sleep", "30"], cwd=busy.parent)  # stands where a compiler would run
    try:
        time.sleep(0.2)
        lines = []
        removed = clear_stale_build_locks(tmp_path, log=lines.append)
    finally:
        compiler.kill()
    assert sorted(removed) == sorted([stale, flat])
    assert not stale.exists() and not flat.exists() and young.exists() and busy.exists()
    assert sum("removed a stale JIT build lock" in line for line in lines) == 2
    assert sum("waiting for the build that holds it" in line for line in lines) == 2


def test_nothing_to_do_without_locks(tmp_path):
    (tmp_path / "py311_cpu" / "op").mkdir(parents=True)
    assert clear_stale_build_locks(tmp_path, log=lambda line: (_ for _ in ()).throw(AssertionError(line))) == []
