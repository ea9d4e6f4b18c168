"""summary.json's peak_rss_mb is the process's own peak, not its parent's (issue #16)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/status and fork+exec semantics of Linux")
def test_peak_rss_of_a_child_does_not_count_the_parent():
    big = np.ones(400 * 2**20 // 8)  # 400 MB resident in this (parent) process
    big[::512] = 2.0
    code = "from stem2d.predict.result import _peak_rss_mb; print(_peak_rss_mb())"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert float(out.stdout.strip()) < 300, "the child's peak includes the parent's memory (ru_maxrss after fork)"
    assert big.sum() > 0
