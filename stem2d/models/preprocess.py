"""Intensity normalisation shared by training and inference."""

from __future__ import annotations

import numpy as np
import torch

_EPS = 1e-6


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
    med = np.median(x, axis=(-2, -1), keepdims=True)
    std = x.std(axis=(-2, -1), keepdims=True)
    return ((x - med) / (std + _EPS)).astype(np.float32)


def standardize_tiles_torch(tiles: torch.Tensor) -> torch.Tensor:
    """Torch twin of :func:`standardize_tiles` for tensors of shape (..., H, W)."""
    x = tiles.float()
    med = x.flatten(-2).median(dim=-1).values[..., None, None]
    std = x.std(dim=(-2, -1), keepdim=True, unbiased=False)
    return (x - med) / (std + _EPS)
