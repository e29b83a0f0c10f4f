"""The import's `peak_rss_mb` is the command's own peak, not its parent's: Linux carries a
parent's ru_maxrss into a child across fork + exec (the real-import test, run from a 2.2 GB
pytest process, reported 2.2 GB)."""

from __future__ import annotations

import resource
import subprocess
import sys

from conftest import REPO


def test_a_child_of_a_big_parent_reports_its_own_peak():
    big = bytearray(600 * 2**20)
    for i in range(0, len(big), 4096):  # touch every page: resident
        big[i] = 1
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 >= 600
    code = ("import resource; from ringbit.registry import peak_rss_mb; "
            "print(peak_rss_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO / "platform")}).stdout.split()
    own, inherited = float(out[0]), float(out[1])
    del big
    assert inherited >= 600  # what ru_maxrss says in the child: the parent's peak
    assert own < 300, own    # the child itself: a Python importing ringbit.registry
