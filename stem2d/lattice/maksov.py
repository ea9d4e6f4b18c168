"""The original Fourier high-pass labels (Maksov et al., npj Comput. Mater. 5, 12 (2019))."""

from __future__ import annotations

import numpy as np

from stem2d import CANONICAL_PIXEL_SIZE_A
from stem2d.lattice._frame import check_frame
from stem2d.lattice.points import area_limits_px, mask_to_points
from stem2d.materials import Material


def maksov_mask(
    frame: np.ndarray, *, radius_fraction: float = 0.1, low: float = 0.25, high: float = 0.75
) -> np.ndarray:
    """Defect mask of the original Fourier method (Maksov et al. 2019).

    Parameters
    ----------
    frame : ndarray, shape (H, W)
        HAADF frame, any real dtype (the published method used ~0.3 A/px).
    radius_fraction : float, keyword-only, default 0.1
        Radius of the zeroed central FFT disk as a fraction of the frame size (N/10), i.e.
        frequencies below ``radius_fraction`` cycles/px are removed by the high-pass filter.
    low, high : float, keyword-only, default 0.25, 0.75
        Thresholds on the min-max normalised ``|image - filtered|``.

    Returns
    -------
    ndarray, bool, shape (H, W); True where the value is < ``low`` or > ``high``.
    """
    img = check_frame(frame)
    if not 0 < radius_fraction < 0.5:
        raise ValueError(f"radius_fraction must be in (0, 0.5), got {radius_fraction}")
    if not 0 <= low < high <= 1:
        raise ValueError(f"need 0 <= low < high <= 1, got low={low}, high={high}")
    fy = np.fft.fftfreq(img.shape[0])[:, None]
    fx = np.fft.fftfreq(img.shape[1])[None, :]
    spectrum = np.fft.fft2(img)
    spectrum[np.hypot(fy, fx) < radius_fraction] = 0.0
    filtered = np.fft.ifft2(spectrum).real
    diff = np.abs(img - filtered)
    span = np.ptp(diff)
    norm = (diff - diff.min()) / span if span > 0 else np.zeros_like(diff)
    return (norm < low) | (norm > high)


def maksov_points(frame: np.ndarray, *, material: Material, pixel_size_A: float = CANONICAL_PIXEL_SIZE_A) -> np.ndarray:
    """Defect positions (N, 2) from :func:`maksov_mask` with its published thresholds.

    ``material`` is unused by the method (kept for a common signature); the area limits scale
    with ``pixel_size_A`` from their 0.3 A/px values.
    """
    min_area_px, max_area_px = area_limits_px(pixel_size_A)
    return mask_to_points(maksov_mask(frame), min_area_px=min_area_px, max_area_px=max_area_px)
