"""Torch JIT extension builds (DeepSpeed's CPU op, ringbit's packed kernel): stale build locks.

torch.utils.cpp_extension guards a build with a `lock` file in the extension's build folder
(FileBaton: created with O_EXCL, removed when the build ends) and every other process waits for
it to disappear, forever and silently. A process killed mid-build leaves the file behind, and from
then on every DeepSpeed job hangs in `deepspeed.initialize`. A lock is stale when it is older
than any build takes and no process works in that folder; such locks are removed with a message.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

STALE_AFTER_S = 600.0  # the builds here take 30-90 s; ten minutes is far beyond a live one


def extensions_root() -> Path:
    """Where torch puts JIT builds: TORCH_EXTENSIONS_DIR, else ~/.cache/torch_extensions."""
    from torch.utils.cpp_extension import get_default_build_root

    return Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root())


def _busy_folders() -> set[Path]:
    """Working directories of this machine's processes (a compiler or ninja building an extension
    runs inside its build folder)."""
    busy = set()
    for cwd in Path("/proc").glob("[0-9]*/cwd"):
        try:
            busy.add(Path(os.readlink(cwd)))
        except OSError:  # gone, or not ours to read
            continue
    return busy


def clear_stale_build_locks(root: Path | None = None, stale_after_s: float = STALE_AFTER_S,
                            log: Callable[[str], None] = print) -> list[Path]:
    """Remove build locks older than `stale_after_s` in folders no process works in; returns them.
    Younger locks are reported (a build may be running elsewhere: the caller will wait for it)."""
    root = root or extensions_root()
    locks = [*root.glob("*/lock"), *root.glob("*/*/lock")]  # <root>/<name> or <root>/py311_cpu/<name>
    if not locks:
        return []
    busy = _busy_folders()
    removed = []
    for lock in locks:
        try:
            age = time.time() - lock.stat().st_mtime
        except FileNotFoundError:  # the build just finished
            continue
        if age < stale_after_s or lock.parent.resolve() in busy:
            log(f"[ringbit] note: the JIT build of {lock.parent.name} is locked ({lock}, {age:.0f} s old); "
                "waiting for the build that holds it")
            continue
        lock.unlink(missing_ok=True)
        removed.append(lock)
        log(f"[ringbit] removed a stale JIT build lock {lock} ({age / 60:.0f} min old, no build running "
            "in that folder): a process interrupted while compiling left it, and every job would wait for it")
    return removed
