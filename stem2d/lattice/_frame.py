"""The one input check of the lattice code: a finite 2D frame of a minimum size."""

from __future__ import annotations

import numpy as np


def check_frame(frame: np.ndarray, *, min_px: int = 16, allow_constant: bool = True) -> np.ndarray:
    """``frame`` as float64, or ``ValueError`` naming the problem.

    ``min_px``: smallest side (16 for the Fourier labels, 32 to measure the pixel size);
    ``allow_constant=False``: a constant frame is refused as having no lattice.
    """
    img = np.asarray(frame, dtype=np.float64)
    if img.ndim != 2 or min(img.shape) < min_px:
        raise ValueError(f"frame must be a 2D image of at least {min_px} x {min_px} px, got shape {img.shape}")
    if not np.isfinite(img).all():
        raise ValueError("frame contains NaN or Inf values")
    if not allow_constant and np.ptp(img) == 0:
        raise ValueError("no lattice found: the frame is constant")
    return img
