"""Defect labels from the departure of a frame from its ideal periodic lattice."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from stem2d import CANONICAL_PIXEL_SIZE_A
from stem2d.lattice._blas import single_thread_blas
from stem2d.lattice._frame import check_frame
from stem2d.lattice.background import noise_model, robust_background
from stem2d.lattice.bragg import ideal_lattice
from stem2d.lattice.points import (
    area_limits_px,
    components,
    label_maxima,
    suppress_close,
)
from stem2d.materials import Material

#: Probe-sized smoothing before the lattice residual (the Gaussian core sigma of a 0.9 A probe).
_SMOOTH_SIGMA_A = 0.38
#: Residual features wider than this are slow background (contamination), not defects.
_BACKGROUND_SIGMA_A = 4.0


def lattice_residual(
    frame: np.ndarray,
    *,
    material: Material,
    pixel_size_A: float = CANONICAL_PIXEL_SIZE_A,
    smooth_sigma_A: float = _SMOOTH_SIGMA_A,
    background_sigma_A: float = _BACKGROUND_SIGMA_A,
    max_freq: float = 0.45,
    noise_floor: float = 0.002,
) -> np.ndarray:
    """Robust z-score of the departure of a frame from its ideal periodic lattice.

    Parameters
    ----------
    frame : ndarray, shape (H, W)
        HAADF frame of an MX2 monolayer.
    material : Material, keyword-only
        Host lattice (its ``d100_A`` sets where the first Bragg ring is searched).
    pixel_size_A : float, keyword-only, default 0.3
        Sampling of ``frame`` in angstrom per pixel.
    smooth_sigma_A : float, keyword-only, default 0.38
        Gaussian smoothing (probe-core sigma) applied before the comparison, against shot noise.
    background_sigma_A : float, keyword-only, default 4
        Gaussian low-pass of the residual taken as slow background (contamination) and removed.
    max_freq : float, keyword-only, default 0.45
        Highest Bragg frequency kept, cycles/px.
    noise_floor : float, keyword-only, default 0.002
        Lower bound of the noise scale as a fraction of the smoothed frame's 1-99 % range, so that
        a noise-free frame does not turn rounding errors into defects.

    Returns
    -------
    ndarray, float64, shape (H, W): ``(residual - median) / max(1.4826 MAD, floor)``.

    Raises
    ------
    ValueError
        Bad frame or no lattice of ``material`` found at ``pixel_size_A``.
    """
    img = check_frame(frame)
    if not pixel_size_A > 0:
        raise ValueError(f"pixel_size_A must be > 0, got {pixel_size_A}")
    with single_thread_blas():  # also for the period measurement
        ideal = ideal_lattice(img, material=material, pixel_size_A=pixel_size_A, max_freq=max_freq)
    raw = img - ideal
    sigma_s, sigma_bg = smooth_sigma_A / pixel_size_A, background_sigma_A / pixel_size_A
    lo, hi = np.percentile(img, [1, 99])
    floor = max(noise_floor * (hi - lo), 1e-12)
    background = robust_background(raw, sigma_s=sigma_s, sigma_bg=sigma_bg, floor=floor)
    residual = ndimage.gaussian_filter(raw - background, sigma_s, mode="reflect")
    residual -= np.median(residual)
    # shot noise grows with the signal: its variance after smoothing follows the expected
    # intensity seen through the squared kernel (a Gaussian of sigma / sqrt(2))
    intensity = ndimage.gaussian_filter(ideal + background, sigma_s / np.sqrt(2), mode="reflect")
    noise = noise_model(residual, intensity, floor=floor)
    residual /= noise
    return residual


def lattice_points(
    frame: np.ndarray,
    *,
    material: Material,
    pixel_size_A: float = CANONICAL_PIXEL_SIZE_A,
    threshold: float = 4.0,
    merge_dist_A: float = 1.6,
    border_px: int = 2,
) -> np.ndarray:
    """Defect positions from the lattice residual.

    Components of ``|z| > threshold`` (:func:`lattice_residual`), centroids weighted by ``|z|``;
    components closer than ``merge_dist_A`` keep only the one of highest peak ``|z|`` (a dopant
    displaced from its site leaves a negative and a positive lobe); the outer ``border_px`` rows
    and columns are ignored (scan-line and resampling edge artefacts).

    Returns
    -------
    ndarray, float64, shape (N, 2): (row, col) in pixels of ``frame``.
    """
    z = lattice_residual(frame, material=material, pixel_size_A=pixel_size_A)
    np.abs(z, out=z)
    if border_px > 0:
        z[:border_px], z[-border_px:], z[:, :border_px], z[:, -border_px:] = 0, 0, 0, 0
    mask = z > threshold
    min_area_px, max_area_px = area_limits_px(pixel_size_A)
    labels, keep, points = components(mask, min_area_px=min_area_px, max_area_px=max_area_px, weights=z)
    if len(points) == 0:
        return points
    peaks = label_maxima(z, labels, keep)
    return points[suppress_close(points, peaks, min_dist_px=merge_dist_A / pixel_size_A)]
