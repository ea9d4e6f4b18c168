"""Incoherent Z-contrast (HAADF) image formation and acquisition effects.

The clean image is a sum of probe profiles, one per atomic column, weighted by sum_i Z_i^n
(Rutherford-like scattering to the annular detector, n ~ 1.7). The probe is a Gaussian core plus
a weak broad Gaussian tail (the probe's aberration skirt). Because both are separable, the whole
image is two matrix products, so a 512 x 512 frame takes milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, sparse

from stem2d.sim.lattice import Columns, column_weights

_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))

#: Fraction of incident electrons scattered onto the HAADF detector with the probe on a W
#: column (order of magnitude of measured values for heavy columns); sets counts per dose.
HAADF_PEAK_FRACTION = 0.05


@dataclass(frozen=True)
class Probe:
    """Probe intensity: a Gaussian core of ``fwhm_A`` plus a broad skirt holding ``tail_fraction``
    of the integrated current."""

    fwhm_A: float = 0.9
    tail_fraction: float = 0.1
    tail_fwhm_A: float = 3.0

    def __post_init__(self) -> None:
        if self.fwhm_A <= 0 or self.tail_fwhm_A <= 0:
            raise ValueError(f"probe: fwhm_A and tail_fwhm_A must be > 0, got {self}")
        if not 0 <= self.tail_fraction < 1:
            raise ValueError(f"probe.tail_fraction must be in [0, 1), got {self.tail_fraction}")


@dataclass(frozen=True)
class Acquisition:
    """Acquisition settings of one frame.

    Attributes
    ----------
    dose_e_per_A2 : float
        Electron dose per frame; sets the Poisson shot noise. A W column then peaks at about
        ``dose * pixel_area * HAADF_PEAK_FRACTION`` counts.
    detector_sigma_counts : float
        Gaussian read-out noise of the detector, in counts.
    jitter_px : float
        RMS horizontal displacement of scan lines (flyback / line-sync jitter), in pixels.
    jitter_correlation : float
        Correlation of the jitter of neighbouring lines (0 = white, close to 1 = slow wobble).
    background_fraction : float
        Amplitude of a slow, smooth background (amorphous contamination), as a fraction of the
        W column peak.
    background_length_A : float
        Length scale of that background.
    """

    dose_e_per_A2: float = 1e5
    detector_sigma_counts: float = 1.0
    jitter_px: float = 0.3
    jitter_correlation: float = 0.5
    background_fraction: float = 0.1
    background_length_A: float = 20.0

    def __post_init__(self) -> None:
        if not self.dose_e_per_A2 > 0:
            raise ValueError(f"dose_e_per_A2 must be > 0, got {self.dose_e_per_A2}")
        for key in ("detector_sigma_counts", "jitter_px", "background_fraction"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)}")
        if not 0 <= self.jitter_correlation < 1:
            raise ValueError(f"jitter_correlation must be in [0, 1), got {self.jitter_correlation}")
        if self.background_length_A <= 0:
            raise ValueError(f"background_length_A must be > 0, got {self.background_length_A}")

    def peak_counts(self, pixel_size_A: float) -> float:
        """Expected counts at the peak of a pristine W column."""
        return self.dose_e_per_A2 * pixel_size_A**2 * HAADF_PEAK_FRACTION


def _check_sampling(shape: tuple[int, int], pixel_size_A: float) -> None:
    if not pixel_size_A > 0:
        raise ValueError(f"pixel_size_A must be > 0, got {pixel_size_A}")
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape must be (rows, cols) >= 1, got {shape}")


_DENSE_LIMIT = 100_000


def _dense_profiles(centres_px: np.ndarray, n: int, sigma_px: float) -> np.ndarray:
    """Gaussian profiles exp(-(x - c)^2 / 2 sigma^2) on pixels 0..n-1, shape (len(centres), n)."""
    x = np.arange(n, dtype=np.float64)
    return np.exp(-0.5 * ((x[None, :] - centres_px[:, None]) / sigma_px) ** 2)


def _profiles(centres_px: np.ndarray, n: int, sigma_px: float) -> sparse.csr_matrix:
    """Gaussian profiles exp(-(x - c)^2 / 2 sigma^2) on pixels 0..n-1, cut at 5 sigma.

    Returns a sparse (len(centres), n) matrix, so that rendering costs O(columns x window^2).
    """
    half = int(np.ceil(5 * sigma_px))
    start = np.floor(centres_px).astype(np.int64) - half
    idx = start[:, None] + np.arange(2 * half + 2)[None, :]
    vals = np.exp(-0.5 * ((idx - centres_px[:, None]) / sigma_px) ** 2)
    inside = (idx >= 0) & (idx < n)
    vals = np.where(inside, vals, 0.0)
    rows = np.repeat(np.arange(len(centres_px)), idx.shape[1])
    return sparse.csr_matrix(
        (vals.ravel(), (rows, np.clip(idx, 0, n - 1).ravel())), shape=(len(centres_px), n)
    )


def render_haadf(
    columns: Columns,
    *,
    shape: tuple[int, int],
    pixel_size_A: float,
    probe: Probe = Probe(),
    z_exponent: float = 1.7,
    z_reference: int = 74,
    drift_px_per_line: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Noise-free HAADF image of ``columns``.

    Parameters
    ----------
    columns : Columns
        Column positions in angstrom and their atoms.
    shape : (int, int)
        Image size in pixels.
    pixel_size_A : float
        Sampling in angstrom per pixel.
    probe : Probe
        Probe profile.
    z_exponent : float, default 1.7
        Exponent n of the Z^n contrast.
    z_reference : int, default 74 (W)
        A single atom of this Z gives a column peak of ~1.0.
    drift_px_per_line : (float, float)
        Slow specimen drift during the scan, in pixels per scan line (row, col): row r is
        acquired r line-times after row 0, so features there appear shifted by r times this.

    Returns
    -------
    ndarray, float64, shape ``shape``.
    """
    _check_sampling(shape, pixel_size_A)
    weights = column_weights(columns.atoms, z_exponent=z_exponent, z_reference=z_reference)
    keep = weights > 0
    pos = columns.pos_A[keep] / pixel_size_A
    weights = weights[keep]
    vr, vc = drift_px_per_line
    # a feature at true row y is scanned at line r where r = y + vr * r  ->  r = y / (1 - vr)
    rows = pos[:, 0] / (1.0 - vr)
    cols = pos[:, 1] + vc * rows
    # tail_fraction is a fraction of the integrated probe current: amplitude ~ fraction / sigma^2,
    # then peak-normalised so that a lone column peaks at its weight
    parts = [(1.0 - probe.tail_fraction, probe.fwhm_A), (probe.tail_fraction, probe.tail_fwhm_A)]
    amps = np.array([f / fwhm**2 for f, fwhm in parts])
    amps /= amps.sum()
    image = np.zeros(shape, dtype=np.float64)
    for amp, (fraction, fwhm) in zip(amps, parts):
        if fraction == 0:
            continue
        sigma = fwhm * _FWHM_TO_SIGMA / pixel_size_A
        if len(weights) * max(shape) <= _DENSE_LIMIT:  # small tiles: dense is faster
            gy = _dense_profiles(rows, shape[0], sigma) * (weights * amp)[:, None]
            image += gy.T @ _dense_profiles(cols, shape[1], sigma)
        else:
            gy = sparse.diags(weights * amp) @ _profiles(rows, shape[0], sigma)
            image += (gy.T @ _profiles(cols, shape[1], sigma)).toarray()
    return image


def smooth_field(shape: tuple[int, int], *, length_px: float, rng=None) -> np.ndarray:
    """Smooth random field in [0, 1] with correlation length ``length_px``.

    Emulates a slowly varying background (amorphous carbon / hydrocarbon contamination): a sum
    of Gaussian bumps of width ``length_px`` on a grid of the same spacing with random
    amplitudes, computed as two small matrix products.
    """
    rng = np.random.default_rng(rng)
    length_px = max(float(length_px), 1.0)

    def kernel(n: int) -> np.ndarray:
        nodes = np.arange(-length_px, n + length_px, length_px)
        return np.exp(-0.5 * ((np.arange(n)[:, None] - nodes[None, :]) / length_px) ** 2)

    ky, kx = kernel(shape[0]), kernel(shape[1])
    field = ky @ rng.standard_normal((ky.shape[1], kx.shape[1])) @ kx.T
    field -= field.min()
    return field / (field.max() + 1e-12)


def smooth_background(
    shape: tuple[int, int], *, pixel_size_A: float, length_A: float, rng=None
) -> np.ndarray:
    """:func:`smooth_field` with its correlation length in angstrom."""
    return smooth_field(shape, length_px=length_A / pixel_size_A, rng=rng)


def scan_jitter(image: np.ndarray, *, jitter_px: float, correlation: float = 0.5, rng=None) -> np.ndarray:
    """Shift every scan line (row) sideways by an AR(1) random offset of RMS ``jitter_px``.

    Emulates flyback / line-synchronisation jitter of the scan coils (bilinear interpolation,
    edge values repeated).
    """
    from scipy import signal  # here, not at the top: slow to import (infer.py's start-up, issue #16)

    rng = np.random.default_rng(rng)
    if jitter_px == 0:
        return np.array(image, dtype=np.float64)
    n_rows, n_cols = image.shape
    innovations = rng.standard_normal(n_rows) * jitter_px * np.sqrt(1.0 - correlation**2)
    innovations[0] = rng.standard_normal() * jitter_px
    shifts = signal.lfilter([1.0], [1.0, -correlation], innovations)
    x = np.clip(np.arange(n_cols)[None, :] - shifts[:, None], 0, n_cols - 1)
    i0 = np.minimum(np.floor(x).astype(np.intp), n_cols - 2)
    w = x - i0
    left = np.take_along_axis(image, i0, axis=1)
    right = np.take_along_axis(image, i0 + 1, axis=1)
    return left * (1.0 - w) + right * w


def acquire(
    clean: np.ndarray,
    *,
    pixel_size_A: float,
    acq: Acquisition = Acquisition(),
    blur_px: float = 0.0,
    rng=None,
) -> np.ndarray:
    """Turn a clean image (W column peak ~1) into detector counts.

    Applies, in the order they happen: residual probe broadening / vibration (Gaussian blur of
    ``blur_px``), contamination background, scan-line jitter, Poisson shot noise at the dose,
    Gaussian detector noise.

    Returns
    -------
    ndarray, float32, same shape as ``clean``; counts.
    """
    rng = np.random.default_rng(rng)
    signal_ = ndimage.gaussian_filter(clean, blur_px) if blur_px > 0 else clean
    if acq.background_fraction > 0:
        bg = smooth_background(clean.shape, pixel_size_A=pixel_size_A,
                               length_A=acq.background_length_A, rng=rng)
        signal_ = signal_ + acq.background_fraction * bg
    if acq.jitter_px > 0:
        signal_ = scan_jitter(signal_, jitter_px=acq.jitter_px, correlation=acq.jitter_correlation, rng=rng)
    counts = rng.poisson(np.clip(signal_, 0, None) * acq.peak_counts(pixel_size_A)).astype(np.float64)
    if acq.detector_sigma_counts > 0:
        counts += rng.normal(0.0, acq.detector_sigma_counts, size=counts.shape)
    return counts.astype(np.float32)
