"""Input check shared by the Fourier labelling methods."""

from __future__ import annotations

import numpy as np


def check_frame(frame: np.ndarray) -> np.ndarray:
    img = np.asarray(frame, dtype=np.float64)
    if img.ndim != 2 or min(img.shape) < 16:
        raise ValueError(f"frame must be a 2D image of at least 16 x 16 px, got shape {img.shape}")
    if not np.isfinite(img).all():
        raise ValueError("frame contains NaN or Inf values")
    return img
