"""The progress line a job prints per logged step, and its parser (the CLI's progress bar), side by
side: `[ringbit] step=DONE/TOTAL key=value …`. Plain Python (no torch), so the CLI imports it
without loading the training stack."""

from __future__ import annotations

import re
from typing import Mapping

PROGRESS_PREFIX = "[ringbit] step="
PROGRESS = re.compile(r"\[ringbit\] step=(\d+)/(\d+)(.*)")


def format_progress(step: int, total: int, metrics: Mapping[str, float], *, fmt: str = ".6g",
                    note: str | None = None) -> str:
    """`[ringbit] step=3/10 train_loss=4.2 …`, with `note` appended after a space (e.g. a time)."""
    line = f"{PROGRESS_PREFIX}{step}/{total} " + " ".join(f"{k}={v:{fmt}}" for k, v in metrics.items())
    return f"{line} {note}" if note else line


def parse_progress(line: str) -> tuple[int, int, dict[str, float]] | None:
    """(step, total, {key: value}) of a progress line anywhere in `line`, else None; words that
    are not key=number (a note) are skipped."""
    m = PROGRESS.search(line)
    if not m:
        return None
    values = {}
    for kv in m.group(3).split():
        k, _, v = kv.partition("=")
        try:
            values[k] = float(v)
        except ValueError:
            pass
    return int(m.group(1)), int(m.group(2)), values
