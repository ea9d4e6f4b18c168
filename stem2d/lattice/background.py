"""Slow background and noise model of the lattice residual (see :func:`~stem2d.lattice.residual.lattice_residual`)."""

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
    first = _coarse_local_linear(raw, None, sigma_bg)
    dev = ndimage.gaussian_filter(raw, sigma_s, mode="reflect")
    dev -= first
    dev -= np.median(dev)
    np.abs(dev, out=dev)
    sigma = max(_MAD_TO_SIGMA * np.median(dev), floor)
    outlier = ndimage.binary_dilation(dev > 3 * sigma, iterations=max(1, round(2 * sigma_s)))
    return _coarse_local_linear(raw, (~outlier).astype(np.float64), sigma_bg)


def _coarse_local_linear(values: np.ndarray, weights: np.ndarray | None, sigma: float) -> np.ndarray:
    """:func:`_local_linear` on ``b x b`` weighted block means (``b ~ sigma / 4``), interpolated
    back to full resolution: the background is smooth on the scale ``sigma``, so this is ~b^2
    times cheaper at no visible cost. ``weights`` None: all ones."""
    b = max(1, int(sigma // 4))
    if b == 1:
        return _local_linear(values, np.ones_like(values) if weights is None else weights, sigma)
    if weights is None:  # pixels per block: b x b, fewer in the last row and column of blocks
        wb, vb = np.outer(_block_counts(values.shape[0], b), _block_counts(values.shape[1], b)), _block_sum(values, b)
    else:
        wb, vb = _block_sum(weights, b), _block_sum(weights * values, b)
    coarse = _local_linear(np.where(wb > 0, vb / np.maximum(wb, 1e-12), 0.0), wb, sigma / b)
    rows, cols = values.shape
    return _interp_linear(coarse, (np.arange(rows) - (b - 1) / 2) / b, (np.arange(cols) - (b - 1) / 2) / b)


def _block_sum(a: np.ndarray, b: int) -> np.ndarray:
    """Sums over ``b x b`` blocks, the frame zero-padded at its bottom and right edges."""
    rows, cols = a.shape
    nr, nc = -(-rows // b), -(-cols // b)
    padded = np.zeros((nr * b, nc * b))
    padded[:rows, :cols] = a
    return padded.reshape(nr, b, nc * b).sum(axis=1).reshape(nr, nc, b).sum(axis=2)


def _block_counts(n: int, b: int) -> np.ndarray:
    """Pixels of each of the ``ceil(n / b)`` blocks of ``b`` along an axis of ``n`` pixels."""
    return np.minimum(np.arange(b, n + b, b), n) - np.arange(0, n, b)


def _interp_linear(grid: np.ndarray, r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of ``grid`` at the points ``(r[i], c[j])`` (grid index units,
    clamped to the grid: ``map_coordinates(order=1, mode="nearest")`` on a separable grid)."""
    r0, fr = _linear_weights(r, grid.shape[0])
    c0, fc = _linear_weights(c, grid.shape[1])
    # along the columns first, on the small grid; then whole rows, which gather contiguously
    along_c = grid[:, c0] * (1 - fc) + grid[:, c0 + 1] * fc if grid.shape[1] > 1 else grid[:, c0]
    if grid.shape[0] == 1:
        return along_c[r0]
    return along_c[r0] * (1 - fr)[:, None] + along_c[r0 + 1] * fr[:, None]


def _linear_weights(x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Left neighbour index (at most ``n - 2``) and fraction of ``x`` clamped to ``[0, n - 1]``."""
    x = np.clip(x, 0, n - 1)
    i = np.minimum(np.floor(x).astype(int), max(n - 2, 0))
    return i, x - i


def _local_linear(values: np.ndarray, weights: np.ndarray, sigma: float) -> np.ndarray:
    """Value at every pixel of the weighted least-squares plane fitted under a Gaussian window
    of ``sigma`` px (pixels outside the frame or of zero weight do not count)."""
    rows, cols = values.shape
    y = ((np.arange(rows) - rows / 2) / sigma)[:, None]
    x = ((np.arange(cols) - cols / 2) / sigma)[None, :]

    def g_rows(a: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter1d(a, sigma, axis=-2, mode="constant")

    def g_cols(a: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter1d(a, sigma, axis=-1, mode="constant")

    # the Gaussian is separable and x (y) is constant along columns (rows): filter along the
    # columns first, multiply by y, then filter along the rows (14 one-axis passes, not 18)
    wv = weights * values
    cw, cwx, cwxx = g_cols(np.stack([weights, weights * x, weights * x * x]))
    cf, cfx = g_cols(np.stack([wv, wv * x]))
    s1, sy, syy, sx, sxy, sxx, f, fy, fx = g_rows(
        np.stack([cw, cw * y, cw * y * y, cwx, cwx * y, cwxx, cf, cf * y, cfx]))
    # moments about each pixel: model v(x') = a + bx (x' - x) + by (y' - y)
    cx, cy = sx - x * s1, sy - y * s1
    cxx, cyy = sxx - 2 * x * sx + x * x * s1, syy - 2 * y * sy + y * y * s1
    cxy = sxy - x * sy - y * sx + x * y * s1
    ridge = 1e-6 * s1.max()
    return _solve_sym3_first(s1 + ridge, cx, cy, cxx + ridge, cxy, cyy + ridge, f, fx - x * f, fy - y * f)


def _solve_sym3_first(a, b, c, d, e, f, r0, r1, r2):
    """First unknown of the symmetric 3 x 3 systems ``[[a, b, c], [b, d, e], [c, e, f]] u = r``
    (element-wise arrays), by cofactors."""
    c0, c1, c2 = d * f - e * e, c * e - b * f, b * e - c * d
    return (r0 * c0 + r1 * c1 + r2 * c2) / (a * c0 + b * c1 + c * c2)


def noise_model(residual: np.ndarray, intensity: np.ndarray, *, floor: float) -> np.ndarray:
    """Noise std per pixel, ``sqrt(a + b * intensity)`` (shot + read noise), fitted to robust
    (MAD) variances of ``residual`` in intensity quantile bins; never below ``floor``."""
    edges = np.quantile(intensity, np.linspace(0, 1, _NOISE_BINS + 1))
    which = _bin_index(intensity.ravel(), edges)
    # group the pixels by bin once (a stable sort keeps each bin's pixels in raster order)
    order = np.argsort(which, kind="stable")
    stops = np.cumsum(np.bincount(which, minlength=_NOISE_BINS))
    res_sorted, int_sorted = residual.ravel()[order], intensity.ravel()[order]
    centres, variances = [], []
    for start, stop in zip(np.concatenate([[0], stops[:-1]]), stops):
        if stop - start < 50:
            continue
        r = res_sorted[start:stop]
        centres.append(int_sorted[start:stop].mean())
        variances.append((_MAD_TO_SIGMA * np.median(np.abs(r - np.median(r)))) ** 2)
    centres, variances = np.array(centres), np.array(variances)
    if len(centres) >= 2 and np.ptp(centres) > 0:
        b, a = np.polyfit(centres, variances, 1)
        b = max(b, 0.0)
        a = max(a, 0.0) if b > 0 else float(np.median(variances))
    else:
        a, b = float(np.median(variances)) if len(variances) else 0.0, 0.0
    noise = intensity * b
    noise += a
    np.maximum(noise, floor**2, out=noise)
    return np.sqrt(noise, out=noise)


def _bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value, uint8: ``clip(searchsorted(edges, values, "right") - 1, 0, n - 1)``
    for ``n = len(edges) - 1 <= 255`` bins and values within ``[edges[0], edges[-1]]``, counted
    as the inner edges each value reaches (no binary search over unsorted values)."""
    which = np.zeros(values.shape, np.uint8)
    for edge in edges[1:-1]:
        which += values >= edge
    return which
