"""Defect labels from Fourier filtering: the original high-pass method and a lattice-periodic one.

Two ways to tell a defect from the perfect crystal without any trained model:

- :func:`maksov_mask` (Maksov et al., npj Comput. Mater. 5, 12 (2019)): zero a central disk of
  the FFT (a high-pass filter), take ``|image - filtered|`` (the low-frequency content),
  min-max normalise and flag values below ``low`` or above ``high``.
- :func:`lattice_mask` / :func:`lattice_points`: rebuild the ideal periodic lattice from its
  Bragg reflections only (:func:`ideal_lattice`: reciprocal basis measured from the first Bragg
  ring and refined on the strong low orders, amplitudes of all reflections fitted by least
  squares over the whole frame, per-scan-line offsets fitted against jitter) and flag where the
  frame departs from it (:func:`lattice_residual`): the residual is smoothed by the probe size,
  freed of slow background (contamination) and divided by a shot-noise model
  ``sqrt(a + b * intensity)`` fitted to robust (MAD) variances, then thresholded on its absolute
  value: vacancies and lighter dopants are negative, heavier substituents positive.

:func:`mask_to_points` turns either mask into defect positions (connected components, centroids).
Both work at any sampling, but their defaults are tuned at the canonical 0.3 A/px.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from stem2d import CANONICAL_PIXEL_SIZE_A
from stem2d.io.scale import measure_lattice_period
from stem2d.materials import Material

__all__ = [
    "LABELERS",
    "ideal_lattice",
    "lattice_mask",
    "lattice_points",
    "lattice_residual",
    "maksov_mask",
    "maksov_points",
    "mask_to_points",
    "suppress_close",
]

log = logging.getLogger(__name__)

_MAD_TO_SIGMA = 1.4826
#: Probe-sized smoothing before the lattice residual (the Gaussian core sigma of a 0.9 A probe).
_SMOOTH_SIGMA_A = 0.38
#: Residual features wider than this are slow background (contamination), not defects.
_BACKGROUND_SIGMA_A = 4.0
#: The defect site area at 0.3 A/px: a column blurred by the probe covers ~10-60 px.
_MIN_AREA_PX, _MAX_AREA_PX = 4, 400
#: Reflections up to this multiple of the first-ring radius refine the reciprocal basis.
_REFINE_ORDER = 2.1
#: Intensity bins of the shot-noise model.
_NOISE_BINS = 16


def _check_frame(frame: np.ndarray) -> np.ndarray:
    img = np.asarray(frame, dtype=np.float64)
    if img.ndim != 2 or min(img.shape) < 16:
        raise ValueError(f"frame must be a 2D image of at least 16 x 16 px, got shape {img.shape}")
    if not np.isfinite(img).all():
        raise ValueError("frame contains NaN or Inf values")
    return img


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
    img = _check_frame(frame)
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


def _reciprocal_lattice(img: np.ndarray, *, material: Material, pixel_size_A: float,
                        max_freq: float) -> np.ndarray:
    """Bragg vectors ``h g1 + k g2`` (cycles/px, (row, col)) with ``0 < |g| <= max_freq``, one
    of each Friedel pair, and the basis g1, g2 of the measured first ring."""
    expected = material.d100_A / pixel_size_A
    period, angle = measure_lattice_period(img, min_period_px=max(expected / 1.25, 2.1),
                                           max_period_px=expected * 1.25)
    basis = []
    for rot in (0.0, 60.0):
        t = np.radians(angle + rot)
        basis.append(np.array([np.sin(t), np.cos(t)]) / period)
    g1, g2 = basis
    n = int(np.ceil(max_freq * period * 2)) + 1
    h, k = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij")
    g = h.ravel()[:, None] * g1 + k.ravel()[:, None] * g2
    radius = np.hypot(g[:, 0], g[:, 1])
    half = (g[:, 0] > 1e-12) | ((np.abs(g[:, 0]) <= 1e-12) & (g[:, 1] > 0))
    return g[half & (radius > 0) & (radius <= max_freq)], g1, g2


def _refine_basis(img: np.ndarray, g: np.ndarray, g1: np.ndarray, g2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares basis (g1, g2) from the sub-bin |DFT| maxima of the strongest reflections.

    Each reflection is refined on a fine grid of +-0.6 bin around its predicted frequency
    (Hann-windowed frame, parabolic vertex); high orders pin the basis down ``order`` times
    more precisely than the first ring, so even drift-sheared lattices are followed exactly.
    """
    n_r, n_c = img.shape
    rows, cols = np.arange(n_r), np.arange(n_c)
    win = (img - img.mean()) * np.outer(np.hanning(n_r), np.hanning(n_c))
    g = g[np.hypot(g[:, 0], g[:, 1]) <= _REFINE_ORDER * np.hypot(*g1)]
    hk = np.rint(g @ np.linalg.inv(np.stack([g1, g2]))).astype(int)
    steps = np.linspace(-0.6, 0.6, 9)
    found, amps = [], []
    for gy, gx in g:
        fy, fx = gy + steps / n_r, gx + steps / n_c
        mag = np.abs(np.exp(-2j * np.pi * np.outer(fy, rows)) @ win @ np.exp(-2j * np.pi * np.outer(cols, fx)))
        iy, ix = np.unravel_index(np.argmax(mag), mag.shape)
        iy, ix = min(max(iy, 1), len(steps) - 2), min(max(ix, 1), len(steps) - 2)
        lm = np.log(mag + 1e-300)
        dy = _vertex(lm[iy - 1:iy + 2, ix]) * (steps[1] - steps[0])
        dx = _vertex(lm[iy, ix - 1:ix + 2]) * (steps[1] - steps[0])
        found.append((fy[iy] + dy / n_r, fx[ix] + dx / n_c))
        amps.append(mag[iy, ix])
    found, amps = np.array(found), np.array(amps)
    strong = amps >= 0.05 * amps.max()
    w = np.sqrt(amps[strong])[:, None]
    basis, *_ = np.linalg.lstsq(hk[strong] * w, found[strong] * w, rcond=None)
    return basis[0], basis[1]


def _vertex(v: np.ndarray) -> float:
    denom = v[0] - 2 * v[1] + v[2]
    return 0.0 if denom == 0 else float(np.clip(0.5 * (v[0] - v[2]) / denom, -0.5, 0.5))


def _fit_amplitudes(target: np.ndarray, pr: np.ndarray, pc: np.ndarray, amp: np.ndarray,
                    sweeps: int) -> np.ndarray:
    """Least-squares amplitudes of the real waves ``2 Re(A_g pr_g[r] pc_g[c])``.

    Jacobi sweeps of exact Fourier coefficients of the residual (two matrix products each): the
    reflections are nearly orthogonal over a whole frame, so a couple of sweeps converge.
    """
    amp = amp.copy()
    for _ in range(sweeps):
        residual = target - _synthesise(amp, pr, pc)
        amp += np.einsum("gw,gw->g", pr.conj() @ residual, pc.conj()) / residual.size
    return amp


def _synthesise(amp: np.ndarray, pr: np.ndarray, pc: np.ndarray) -> np.ndarray:
    """``sum_g 2 Re(A_g pr_g[r] pc_g[c])`` as one matrix product, shape (H, W)."""
    return 2.0 * ((pr * amp[:, None]).T @ pc).real


def ideal_lattice(
    frame: np.ndarray,
    *,
    material: Material,
    pixel_size_A: float = CANONICAL_PIXEL_SIZE_A,
    max_freq: float = 0.45,
    jitter_iterations: int = 3,
) -> np.ndarray:
    """The perfect periodic lattice that best fits a frame (its Bragg reflections only).

    The reciprocal basis is measured (first ring, then refined on all strong reflections, so a
    lattice sheared by drift is followed exactly); the complex amplitude of every reflection
    ``h g1 + k g2`` with ``|g| <= max_freq`` is fitted by least squares over the whole frame
    (Gauss-Seidel sweeps of exact, non-integer-bin Fourier coefficients), so frame edges need
    no window and a point defect changes the fit by only ``cell area / frame area``. Scan-line
    jitter is followed too: the horizontal offset of every scan line is fitted by Gauss-Newton
    steps (the lattice is a sum of plane waves, so a shifted line is an exact phase factor).
    Slow background (the mean and contamination) is not part of the result.

    Parameters
    ----------
    frame : ndarray, shape (H, W)
    material : Material, keyword-only
    pixel_size_A : float, keyword-only, default 0.3
    max_freq : float, keyword-only, default 0.45
        Highest Bragg frequency kept, cycles/px.
    jitter_iterations : int, keyword-only, default 3
        Gauss-Newton steps of the per-line offsets (0: rigid lattice).

    Returns
    -------
    ndarray, float64, shape (H, W), zero mean.
    """
    img = _check_frame(frame)
    if not pixel_size_A > 0:
        raise ValueError(f"pixel_size_A must be > 0, got {pixel_size_A}")
    g, g1, g2 = _reciprocal_lattice(img, material=material, pixel_size_A=pixel_size_A, max_freq=max_freq)
    g1, g2 = _refine_basis(img, g, g1, g2)
    g = np.rint(g @ np.linalg.inv(np.stack([g1, g2]))) @ np.stack([g1, g2])
    rows, cols = np.arange(img.shape[0]), np.arange(img.shape[1])
    pc = np.exp(2j * np.pi * np.outer(g[:, 1], cols))
    target = img - img.mean()
    shift = np.zeros(img.shape[0])
    amp = np.zeros(len(g), dtype=complex)
    for step in range(jitter_iterations + 1):
        pr = np.exp(2j * np.pi * (np.outer(g[:, 0], rows) - np.outer(g[:, 1], shift)))
        amp = _fit_amplitudes(target, pr, pc, amp, sweeps=3 if step == 0 else 1)
        if step == jitter_iterations:
            break
        slope = 2.0 * ((pr * (amp * 2j * np.pi * g[:, 1])[:, None]).T @ pc).real  # d ideal / d col
        residual = target - _synthesise(amp, pr, pc)
        shift -= (residual * slope).sum(axis=1) / np.maximum((slope**2).sum(axis=1), 1e-12)
        shift -= shift.mean()
    return _synthesise(amp, pr, pc)


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
    img = _check_frame(frame)
    if not pixel_size_A > 0:
        raise ValueError(f"pixel_size_A must be > 0, got {pixel_size_A}")
    ideal = ideal_lattice(img, material=material, pixel_size_A=pixel_size_A, max_freq=max_freq)
    raw = img - ideal
    sigma_s, sigma_bg = smooth_sigma_A / pixel_size_A, background_sigma_A / pixel_size_A
    lo, hi = np.percentile(img, [1, 99])
    floor = max(noise_floor * (hi - lo), 1e-12)
    background = _robust_background(raw, sigma_s=sigma_s, sigma_bg=sigma_bg, floor=floor)
    residual = ndimage.gaussian_filter(raw - background, sigma_s, mode="reflect")
    residual -= np.median(residual)
    # shot noise grows with the signal: its variance after smoothing follows the expected
    # intensity seen through the squared kernel (a Gaussian of sigma / sqrt(2))
    intensity = ndimage.gaussian_filter(ideal + background, sigma_s / np.sqrt(2), mode="reflect")
    noise = _noise_model(residual, intensity, floor=floor)
    return residual / noise


def _robust_background(raw: np.ndarray, *, sigma_s: float, sigma_bg: float, floor: float) -> np.ndarray:
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


def _noise_model(residual: np.ndarray, intensity: np.ndarray, *, floor: float) -> np.ndarray:
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


def lattice_mask(
    frame: np.ndarray,
    *,
    material: Material,
    pixel_size_A: float = CANONICAL_PIXEL_SIZE_A,
    threshold: float = 4.0,
) -> np.ndarray:
    """Defect mask: ``|lattice_residual| > threshold`` (robust standard deviations).

    See :func:`lattice_residual` for the parameters. Returns a bool array of shape (H, W).
    """
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    z = lattice_residual(frame, material=material, pixel_size_A=pixel_size_A)
    return np.abs(z) > threshold


def mask_to_points(
    mask: np.ndarray,
    *,
    min_area_px: int = _MIN_AREA_PX,
    max_area_px: int = _MAX_AREA_PX,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Centroids of the connected components of a mask whose area is in range.

    Parameters
    ----------
    mask : ndarray, bool, shape (H, W)
    min_area_px, max_area_px : int, keyword-only, default 4, 400
        Components outside ``[min_area_px, max_area_px]`` pixels are dropped (noise specks,
        large contaminated or amorphous regions).
    weights : ndarray, shape (H, W), optional
        Non-negative pixel weights for the centroid (e.g. ``|residual|``); uniform when None.

    Returns
    -------
    ndarray, float64, shape (N, 2): (row, col) in pixels, in label order (raster order of each
    component's first pixel).

    Examples
    --------
    >>> m = np.zeros((8, 8), bool); m[1:4, 2:5] = True
    >>> mask_to_points(m, min_area_px=1, max_area_px=100)
    array([[2., 3.]])
    """
    return _components(mask, min_area_px=min_area_px, max_area_px=max_area_px, weights=weights)[2]


def _components(mask, *, min_area_px, max_area_px, weights):
    """Labels, kept label indices and their centroids (see :func:`mask_to_points`)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2D, got shape {mask.shape}")
    if not 0 < min_area_px <= max_area_px:
        raise ValueError(f"need 0 < min_area_px <= max_area_px, got {min_area_px}, {max_area_px}")
    labels, n = ndimage.label(mask)
    index = np.arange(1, n + 1)
    area = ndimage.sum_labels(mask, labels, index) if n else np.zeros(0)
    keep = index[(area >= min_area_px) & (area <= max_area_px)]
    if keep.size == 0:
        return labels, keep, np.zeros((0, 2))
    w = mask.astype(np.float64) if weights is None else np.where(mask, np.asarray(weights, float), 0.0)
    return labels, keep, np.array(ndimage.center_of_mass(w, labels, keep), dtype=np.float64).reshape(-1, 2)


def maksov_points(frame: np.ndarray, *, material: Material, pixel_size_A: float = CANONICAL_PIXEL_SIZE_A) -> np.ndarray:
    """Defect positions (N, 2) from :func:`maksov_mask` with its published thresholds.

    ``material`` is unused by the method (kept for a common signature); the area limits scale
    with ``pixel_size_A`` from their 0.3 A/px values.
    """
    scale = (CANONICAL_PIXEL_SIZE_A / pixel_size_A) ** 2
    return mask_to_points(maksov_mask(frame), min_area_px=max(1, round(_MIN_AREA_PX * scale)),
                          max_area_px=max(1, round(_MAX_AREA_PX * scale)))


def suppress_close(points: np.ndarray, scores: np.ndarray, *, min_dist_px: float) -> np.ndarray:
    """Indices of points kept by greedy non-maximum suppression (highest score first).

    A point closer than ``min_dist_px`` to an already kept, higher-scoring point is dropped:
    one defect seen as two blobs (a displaced dopant's dipole) becomes one detection.

    Returns
    -------
    ndarray, int, sorted indices into ``points``.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    kept: list[int] = []
    for i in order:
        if not kept or np.min(np.hypot(*(points[kept] - points[i]).T)) >= min_dist_px:
            kept.append(int(i))
    return np.sort(np.array(kept, dtype=int))


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
    z = np.abs(lattice_residual(frame, material=material, pixel_size_A=pixel_size_A))
    if border_px > 0:
        z[:border_px], z[-border_px:], z[:, :border_px], z[:, -border_px:] = 0, 0, 0, 0
    mask = z > threshold
    scale = (CANONICAL_PIXEL_SIZE_A / pixel_size_A) ** 2
    labels, keep, points = _components(mask, min_area_px=max(1, round(_MIN_AREA_PX * scale)),
                                       max_area_px=max(1, round(_MAX_AREA_PX * scale)), weights=z)
    if len(points) == 0:
        return points
    peaks = np.asarray(ndimage.maximum(z, labels, keep))
    return points[suppress_close(points, peaks, min_dist_px=merge_dist_A / pixel_size_A)]


#: Label methods by name: ``fn(frame, *, material, pixel_size_A) -> (N, 2) positions``.
LABELERS: dict[str, Callable[..., np.ndarray]] = {"fourier": maksov_points, "lattice": lattice_points}
