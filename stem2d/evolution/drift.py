"""Sample drift between movie frames, measured on the crystal lattice by FFT cross-correlation.

Why not ``skimage.registration.phase_cross_correlation`` as is:

- A crystal lattice is periodic, so the correlation surface of two frames has a peak at the true
  shift *and* at every lattice vector added to it, all of nearly the same height; skimage's
  global peak search can return a shift off by a lattice vector. Frame-to-frame drift is small
  (a few px, under half a lattice period), so :func:`estimate_drift` correlates *consecutive*
  frames, searches the peak only within ``max_step_px`` of zero, and accumulates the steps.
- Phase correlation whitens the spectrum, giving every spatial frequency equal weight; a lattice
  image carries signal only near its Bragg frequencies, so the rest (shot noise, window leakage)
  dominates. On synthetic WS2 honeycombs whitening gave 0.3 px errors without noise and several
  px at low dose, while the plain cross-power spectrum, band-passed (Gaussian low-pass against
  shot noise, Gaussian high-pass against a slow contamination background), stays under 0.1 px.

The peak is refined to sub-pixel precision with the matrix-multiply DFT of Guizar-Sicairos et al.
(Opt. Lett. 33, 156, 2008), the method skimage uses for ``upsample_factor``.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import fft as sp_fft

log = logging.getLogger(__name__)


def _spectrum(frame: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Half-plane FFT (``rfft2``) of a mean-subtracted, Hann-windowed frame (the window hides the
    frame edges). A real frame's spectrum is Hermitian, so the half holds all of it at half the cost."""
    return sp_fft.rfft2((frame - frame.mean()) * window)


def _window(shape: tuple[int, int]) -> np.ndarray:
    return np.outer(np.hanning(shape[0]), np.hanning(shape[1]))


def _bandpass(shape: tuple[int, int], lowpass_sigma_px: float, highpass_sigma_px: float) -> np.ndarray:
    """Fourier-space Gaussian band-pass on the ``rfft2`` half plane of a frame of ``shape``:
    smoothing by ``lowpass_sigma_px`` minus ``highpass_sigma_px``."""
    f2 = np.fft.fftfreq(shape[0])[:, None] ** 2 + np.fft.rfftfreq(shape[1])[None, :] ** 2
    gain = np.exp(-2 * np.pi**2 * lowpass_sigma_px**2 * f2)
    if highpass_sigma_px > 0:
        gain = gain * (1.0 - np.exp(-2 * np.pi**2 * highpass_sigma_px**2 * f2))
    return gain


def _upsampled_correlation(
    prod: np.ndarray, width: int, centre: np.ndarray, upsample_factor: int
) -> tuple[np.ndarray, np.ndarray]:
    """Correlation surface sampled at ``centre +- 1.5 px`` in steps of ``1/upsample_factor`` px.

    ``prod`` is the half-plane (``rfft2``) cross power of frames ``width`` px wide: each column
    but the zero and Nyquist ones stands for itself and its Hermitian mirror, whose terms of the
    inverse DFT are complex conjugates, so the real surface weights it twice.
    """
    n = int(np.ceil(1.5 * upsample_factor))
    offsets = np.arange(-n, n + 1) / upsample_factor
    rows, cols = centre[0] + offsets, centre[1] + offsets
    twice = np.full(prod.shape[1], 2.0)
    twice[0] = 1.0
    if width % 2 == 0:
        twice[-1] = 1.0
    e_row = np.exp(2j * np.pi * np.outer(rows, np.fft.fftfreq(prod.shape[0])))
    e_col = np.exp(2j * np.pi * np.outer(np.fft.rfftfreq(width), cols)) * twice[:, None]
    return (e_row @ prod @ e_col).real / (prod.shape[0] * width), offsets


def _pair_shift(prod: np.ndarray, width: int, max_step_px: float, upsample_factor: int) -> np.ndarray:
    """Shift (row, col) in px of the moving frame relative to the reference, from their half-plane
    cross power (frames ``width`` px wide)."""
    surface = sp_fft.irfft2(prod, s=(prod.shape[0], width))
    h, w = surface.shape
    dr = np.fft.fftfreq(h, 1.0 / h)[:, None]
    dc = np.fft.fftfreq(w, 1.0 / w)[None, :]
    surface = np.where(dr**2 + dc**2 <= max_step_px**2, surface, -np.inf)
    peak = np.unravel_index(np.argmax(surface), surface.shape)
    coarse = np.array([dr[peak[0], 0], dc[0, peak[1]]], dtype=float)
    if upsample_factor <= 1:
        return coarse
    fine, offsets = _upsampled_correlation(prod, width, coarse, upsample_factor)
    i, j = np.unravel_index(np.argmax(fine), fine.shape)
    return coarse + np.array([offsets[i], offsets[j]])


def estimate_drift(
    frames: ArrayLike,
    *,
    max_step_px: float = 4.0,
    upsample_factor: int = 20,
    lowpass_sigma_px: float = 1.0,
    highpass_sigma_px: float = 10.0,
) -> np.ndarray:
    """Cumulative sample drift of every frame relative to frame 0, from the lattice.

    Parameters
    ----------
    frames : array_like, shape (T, H, W)
        The movie (any real dtype); T >= 1, H, W >= 8.
    max_step_px : float, default 4.0
        Largest drift between two consecutive frames, in px. Must be below half the lattice
        period in px (for WS2, a = 3.18 A: 5.3 px at 0.3 A/px), or a lattice vector can win.
    upsample_factor : int, default 20
        Sub-pixel refinement: the shift is resolved to ``1 / upsample_factor`` px.
    lowpass_sigma_px : float, default 1.0
        Gaussian low-pass (px) against shot noise; 0 disables it.
    highpass_sigma_px : float, default 10.0
        Gaussian high-pass (px) against slowly varying background (contamination, thickness);
        keep it at about one lattice period in px or more; 0 disables it.

    Returns
    -------
    drift : ndarray of float64, shape (T, 2)
        ``drift[t] = (row, col)`` position of a sample feature in frame t minus its position in
        frame 0, in px; ``drift[0] == (0, 0)``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> base = rng.random((40, 40))
    >>> movie = np.stack([base[4:36, 4:36], base[3:35, 2:34]])  # content moves by (+1, +2)
    >>> np.round(estimate_drift(movie), 2)[1].tolist()
    [1.0, 2.0]
    """
    stack = np.asarray(frames, dtype=np.float64)
    if stack.ndim != 3 or stack.shape[1] < 8 or stack.shape[2] < 8:
        raise ValueError(f"frames: expected an array of shape (T, H, W) with H, W >= 8, got shape {stack.shape}")
    if stack.shape[0] == 0:
        raise ValueError("frames: the movie has no frames (shape[0] == 0)")
    if not np.all(np.isfinite(stack)):
        bad = np.unique(np.nonzero(~np.isfinite(stack))[0])
        raise ValueError(f"frames: non-finite pixel values in frame(s) {bad[:10].tolist()}")
    tracker = DriftTracker(max_step_px=max_step_px, upsample_factor=upsample_factor,
                           lowpass_sigma_px=lowpass_sigma_px, highpass_sigma_px=highpass_sigma_px)
    for frame in stack:
        tracker.add(frame)
    drift = tracker.drift
    log.debug("drift over %d frames: final (row, col) = %s px", len(drift), drift[-1])
    return drift


def _central_crop(frame: np.ndarray, side: int | None) -> np.ndarray:
    """The central ``side`` x ``side`` part of ``frame`` (each axis cut only when longer)."""
    if side is None:
        return frame
    r0, c0 = (max(0, (n - side) // 2) for n in frame.shape[-2:])
    return frame[..., r0:r0 + side, c0:c0 + side]


class DriftTracker:
    """:func:`estimate_drift` one frame at a time, for movies streamed through memory.

    ``add(frame)`` for every frame in order; ``drift`` is then the same (T, 2) array
    ``estimate_drift`` gives for the stacked frames (the window, band-pass and previous spectrum
    are kept between calls). Frames larger than ``max_side_px`` are cut to their central
    ``max_side_px`` square first: drift is a shift of the whole frame, and its FFTs then take
    bounded time and memory (a 4096 x 4096 frame needed ~1.2 GB of spectra; the crop ~90 MB).
    """

    def __init__(self, *, max_step_px: float = 4.0, upsample_factor: int = 20,
                 lowpass_sigma_px: float = 1.0, highpass_sigma_px: float = 10.0,
                 max_side_px: int | None = 1024) -> None:
        if not max_step_px >= 1.0:
            raise ValueError(f"max_step_px={max_step_px!r}: must be >= 1 px")
        if int(upsample_factor) < 1:
            raise ValueError(f"upsample_factor={upsample_factor!r}: must be >= 1")
        if lowpass_sigma_px < 0 or highpass_sigma_px < 0:
            raise ValueError(
                f"lowpass_sigma_px={lowpass_sigma_px!r}, highpass_sigma_px={highpass_sigma_px!r}: must be >= 0"
            )
        self.max_step_px, self.upsample_factor = float(max_step_px), int(upsample_factor)
        self.lowpass_sigma_px, self.highpass_sigma_px = float(lowpass_sigma_px), float(highpass_sigma_px)
        if max_side_px is not None and int(max_side_px) < 8:
            raise ValueError(f"max_side_px={max_side_px!r}: must be >= 8 or None")
        self.max_side_px = None if max_side_px is None else int(max_side_px)
        self._drift: list[np.ndarray] = []
        self._prev = self._window = self._gain = None

    @property
    def drift(self) -> np.ndarray:
        """(T, 2) cumulative drift of the frames added so far, px."""
        return np.array(self._drift).reshape(-1, 2)

    def add(self, frame: ArrayLike) -> None:
        """Add the next frame (H, W)."""
        # spectra in single precision (complex64): ~30 % less time per 1024 px crop than double
        # precision, the same drift on the benchmark's 512 and 2048 px movies (the peak is refined
        # on a 1/upsample_factor px grid, in double precision)
        frame = np.asarray(_central_crop(np.asarray(frame), self.max_side_px), dtype=np.float32)
        if self._prev is None:
            self._window = _window(frame.shape).astype(np.float32)
            self._gain = _bandpass(frame.shape, self.lowpass_sigma_px, self.highpass_sigma_px).astype(np.float32)
            self._prev = _spectrum(frame, self._window)
            self._drift.append(np.zeros(2))
            return
        cur = _spectrum(frame, self._window)
        step = _pair_shift(np.conj(self._prev) * cur * self._gain, frame.shape[1], self.max_step_px,
                           self.upsample_factor)
        self._drift.append(self._drift[-1] + step)
        self._prev = cur


def correct_positions(df: pd.DataFrame, drift: ArrayLike) -> pd.DataFrame:
    """Subtract each frame's drift from detection positions (into frame-0 sample coordinates).

    Parameters
    ----------
    df : DataFrame
        Table with integer ``frame`` and float ``row``, ``col`` (px) columns; other columns are kept.
    drift : array_like, shape (T, 2)
        From :func:`estimate_drift`; every ``frame`` in ``df`` must be in ``[0, T)``.

    Returns
    -------
    DataFrame
        A copy with ``row -= drift[frame, 0]`` and ``col -= drift[frame, 1]``.
    """
    drift = np.asarray(drift, dtype=np.float64)
    if drift.ndim != 2 or drift.shape[1] != 2:
        raise ValueError(f"drift: expected shape (T, 2), got {drift.shape}")
    for key in ("frame", "row", "col"):
        if key not in df.columns:
            raise ValueError(f"detections: missing column {key!r} (have {list(df.columns)})")
    frame = df["frame"].to_numpy()
    if len(frame) and (frame.min() < 0 or frame.max() >= len(drift)):
        raise ValueError(
            f"detections: frame values span [{frame.min()}, {frame.max()}] but drift covers "
            f"frames [0, {len(drift) - 1}]"
        )
    out = df.copy()
    idx = frame.astype(np.int64)
    out["row"] = df["row"].to_numpy(dtype=np.float64) - drift[idx, 0]
    out["col"] = df["col"].to_numpy(dtype=np.float64) - drift[idx, 1]
    return out
