"""Exact order statistics of large arrays for less work than numpy's (frame-sized medians)."""

from __future__ import annotations

import numpy as np

__all__ = ["BracketedMedian", "frame_median"]


class BracketedMedian:
    """``np.median`` of a large array filled a band at a time, the same number from less work:
    only the values between the ``0.5 -+ width`` quantiles of ``sample`` (a smaller array of
    about the same distribution, e.g. every fourth pixel of every fourth row) are kept (and
    partitioned), the others counted, each band by :meth:`add` while it is in the CPU cache
    (np.median partitions a copy of the whole array). :meth:`of` gives the median: np.median
    itself when those quantiles do not bracket it. The values must be finite (np.median's NaN
    rule is not reproduced)."""

    def __init__(self, *, sample: np.ndarray, width: float = 0.02):
        self.lo, self.hi = np.quantile(sample, [0.5 - width, 0.5 + width])
        self.below, self.kept = 0, []

    def add(self, band: np.ndarray) -> None:
        self.below += np.count_nonzero(band < self.lo)
        self.kept.append(band[(band >= self.lo) & (band <= self.hi)])

    def of(self, values: np.ndarray) -> float:
        """The median of ``values``, the array whose bands were added (the mean of the middle two
        in the dtype of ``values``, as np.median takes it)."""
        between = np.concatenate([np.ravel(k) for k in self.kept])
        ranks = np.array([(values.size - 1) // 2, values.size // 2]) - self.below  # the middle one or two
        if ranks[0] < 0 or ranks[1] >= between.size:
            return float(np.median(values))
        return float(np.mean(np.partition(between, ranks)[ranks]))


def frame_median(frame: np.ndarray, *, rows_per_band: int = 64) -> float:
    """``float(np.median(frame))`` of a finite 2D array by :class:`BracketedMedian` (bracketed by
    every fourth pixel of every fourth row): a 1607 x 1607 float32 frame in ~6 instead of ~24 ms."""
    frame = np.asarray(frame)
    median = BracketedMedian(sample=frame[::4, ::4])
    for start in range(0, frame.shape[0], rows_per_band):
        median.add(frame[start:start + rows_per_band])
    return median.of(frame)
