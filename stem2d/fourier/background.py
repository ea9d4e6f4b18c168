"""Slow background and noise model of the lattice residual (see :func:`~stem2d.fourier.lattice.lattice_residual`)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

_MAD_TO_SIGMA = 1.4826
#: Intensity bins of the shot-noise model.
_NOISE_BINS = 16


def robust_background(raw: np.ndarray, *, sigma_s: float, sigma_bg: float, floor: float) -> np.ndarray:
    """Slow background (contamination) of the residual: a Gaussian-weighted local linear fit
    (unbiased up to the frame edges, unlike a plain blur) that leaves out defects (pixels beyond
    3 robust standard deviations of the smoothed residual above a first, plain fit, grown by the
    probe size), so a strong defect leaves no halo of opposite sign."""
    first = _coarse_local_linear(raw, np.ones_like(raw), sigma_bg)
    centred = ndimage.gaussian_filter(raw, sigma_s, mode="reflect") - first
    centred -= np.median(centred)
    sigma = max(_MAD_TO_SIGMA * np.median(np.abs(centred)), floor)
    outlier = ndimage.binary_dilation(np.abs(centred) > 3 * sigma, iterations=max(1, round(2 * sigma_s)))
    return _coarse_local_linear(raw, (~outlier).astype(np.float64), sigma_bg)


def _coarse_local_linear(values: np.ndarray, weights: np.ndarray, sigma: float) -> np.ndarray:
    """:func:`_local_linear` on ``b x b`` weighted block means (``b ~ sigma / 4``), interpolated
    back to full resolution: the background is smooth on the scale ``sigma``, so this is ~b^2
    times cheaper at no visible cost."""
    b = max(1, int(sigma // 4))
    if b == 1:
        return _local_linear(values, weights, sigma)
    rows, cols = values.shape
    pr, pc = -rows % b, -cols % b
    w = np.pad(weights, ((0, pr), (0, pc)))
    wv = np.pad(weights * values, ((0, pr), (0, pc)))
    shape = (w.shape[0] // b, b, w.shape[1] // b, b)
    wb, vb = w.reshape(shape).sum(axis=(1, 3)), wv.reshape(shape).sum(axis=(1, 3))
    coarse = _local_linear(np.where(wb > 0, vb / np.maximum(wb, 1e-12), 0.0), wb, sigma / b)
    r = (np.arange(rows) - (b - 1) / 2) / b
    c = (np.arange(cols) - (b - 1) / 2) / b
    rr, cc = np.meshgrid(r, c, indexing="ij")
    return ndimage.map_coordinates(coarse, [rr, cc], order=1, mode="nearest")


def _local_linear(values: np.ndarray, weights: np.ndarray, sigma: float) -> np.ndarray:
    """Value at every pixel of the weighted least-squares plane fitted under a Gaussian window
    of ``sigma`` px (pixels outside the frame or of zero weight do not count)."""
    rows, cols = values.shape
    y = ((np.arange(rows) - rows / 2) / sigma)[:, None] * np.ones((1, cols))
    x = ((np.arange(cols) - cols / 2) / sigma)[None, :] * np.ones((rows, 1))

    def g(a: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(a, sigma, mode="constant")

    wv = weights * values
    s1, sx, sy = g(weights), g(weights * x), g(weights * y)
    sxx, sxy, syy = g(weights * x * x), g(weights * x * y), g(weights * y * y)
    f, fx, fy = g(wv), g(wv * x), g(wv * y)
    # moments about each pixel: model v(x') = a + bx (x' - x) + by (y' - y)
    cx, cy = sx - x * s1, sy - y * s1
    cxx, cyy = sxx - 2 * x * sx + x * x * s1, syy - 2 * y * sy + y * y * s1
    cxy = sxy - x * sy - y * sx + x * y * s1
    ridge = 1e-6 * s1.max()
    m = np.stack([np.stack([s1 + ridge, cx, cy], -1), np.stack([cx, cxx + ridge, cxy], -1),
                  np.stack([cy, cxy, cyy + ridge], -1)], -2)
    rhs = np.stack([f, fx - x * f, fy - y * f], -1)[..., None]
    return np.linalg.solve(m, rhs)[..., 0, 0]


def noise_model(residual: np.ndarray, intensity: np.ndarray, *, floor: float) -> np.ndarray:
    """Noise std per pixel, ``sqrt(a + b * intensity)`` (shot + read noise), fitted to robust
    (MAD) variances of ``residual`` in intensity quantile bins; never below ``floor``."""
    edges = np.quantile(intensity, np.linspace(0, 1, _NOISE_BINS + 1))
    which = np.clip(np.searchsorted(edges, intensity, side="right") - 1, 0, _NOISE_BINS - 1)
    centres, variances = [], []
    for b in range(_NOISE_BINS):
        sel = which == b
        if sel.sum() < 50:
            continue
        r = residual[sel]
        centres.append(intensity[sel].mean())
        variances.append((_MAD_TO_SIGMA * np.median(np.abs(r - np.median(r)))) ** 2)
    centres, variances = np.array(centres), np.array(variances)
    if len(centres) >= 2 and np.ptp(centres) > 0:
        b, a = np.polyfit(centres, variances, 1)
        b = max(b, 0.0)
        a = max(a, 0.0) if b > 0 else float(np.median(variances))
    else:
        a, b = float(np.median(variances)) if len(variances) else 0.0, 0.0
    return np.sqrt(np.maximum(a + b * intensity, floor**2))
