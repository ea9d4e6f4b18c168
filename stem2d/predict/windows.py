"""Cutting classifier windows out of a frame and merging overlapping grid detections."""

from __future__ import annotations

import numpy as np

from stem2d import TILE_SIZE_PX


def extract_windows(frame: np.ndarray, points: np.ndarray, *, size: int = TILE_SIZE_PX) -> np.ndarray:
    """Cut ``size`` x ``size`` windows centred on ``points`` (reflect-padded at the frame edge).

    The window of a point at (r, c) starts at ``round(r) - size // 2``, so the point lies at
    ``size // 2 + (r - round(r))`` inside it (see :func:`window_origins`).

    Parameters
    ----------
    frame : ndarray, (H, W)
    points : ndarray, (N, 2)
        Centres (row, col) in frame pixels.
    size : int, default 64

    Returns
    -------
    ndarray, float32, (N, size, size)
    """
    frame = np.asarray(frame, dtype=np.float32)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(points) == 0:
        return np.zeros((0, size, size), np.float32)
    padded = np.pad(frame, size, mode="reflect")
    origins = window_origins(points, size=size) + size
    idx = np.arange(size)
    rows = origins[:, 0, None] + idx[None, :]
    cols = origins[:, 1, None] + idx[None, :]
    rows = np.clip(rows, 0, padded.shape[0] - 1)
    cols = np.clip(cols, 0, padded.shape[1] - 1)
    return padded[rows[:, :, None], cols[:, None, :]]


def window_origins(points: np.ndarray, *, size: int = TILE_SIZE_PX) -> np.ndarray:
    """Top-left pixel (row, col) of the window :func:`extract_windows` cuts around each point."""
    return np.rint(np.asarray(points, dtype=np.float64).reshape(-1, 2)).astype(np.int64) - size // 2


def grid_centres(shape: tuple[int, int], *, stride: int, size: int = TILE_SIZE_PX) -> np.ndarray:
    """Centres of windows tiling a frame with ``stride`` (the original study's grid mode)."""
    if stride < 1:
        raise ValueError(f"stride={stride} must be >= 1")
    half = size // 2
    rows = np.arange(half, max(shape[0] - half, half) + 1, stride)
    cols = np.arange(half, max(shape[1] - half, half) + 1, stride)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    return np.stack([rr.ravel(), cc.ravel()], axis=1).astype(np.float64)
