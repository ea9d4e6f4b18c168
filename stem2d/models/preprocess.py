"""Intensity normalisation shared by training and inference."""

from __future__ import annotations

import numpy as np

from stem2d.stats import frame_median

_EPS = 1e-6
#: One 2D frame at least this large takes its median from :func:`stem2d.stats.frame_median`.
_LARGE_FRAME_PX = 1 << 16


def standardize_tiles(tiles: np.ndarray) -> np.ndarray:
    """Per-tile robust standardisation: subtract the median, divide by the standard deviation.

    Makes the classifier blind to dose (counts scale) and to a constant background.

    Parameters
    ----------
    tiles : ndarray, shape (..., H, W)
        One tile or a stack of tiles, any real dtype.

    Returns
    -------
    ndarray, float32, same shape.
    """
    x = np.asarray(tiles, dtype=np.float32)
    if x.ndim == 2 and x.size >= _LARGE_FRAME_PX:  # a whole frame: the same median for less work
        med = np.full((1, 1), frame_median(x), dtype=np.float32)
    else:
        med = np.median(x, axis=(-2, -1), keepdims=True)
    std = x.std(axis=(-2, -1), keepdims=True)
    return ((x - med) / (std + _EPS)).astype(np.float32)
