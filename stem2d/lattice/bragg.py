"""The ideal periodic lattice of a frame: its Bragg reflections, measured and fitted."""

from __future__ import annotations

import numpy as np

from stem2d import CANONICAL_PIXEL_SIZE_A
from stem2d.lattice._blas import single_thread_blas
from stem2d.lattice._frame import check_frame
from stem2d.lattice.scale import measure_lattice_period
from stem2d.materials import Material

#: Reflections up to this multiple of the first-ring radius refine the reciprocal basis.
_REFINE_ORDER = 2.1
#: A basis hint's ring period may lie this factor beyond the search band (the second ring is a
#: factor sqrt(3) off).
_HINT_MARGIN = 1.1


def _reciprocal_lattice(img: np.ndarray, *, material: Material, pixel_size_A: float,
                        max_freq: float) -> np.ndarray:
    """Bragg vectors ``h g1 + k g2`` (cycles/px, (row, col)) with ``0 < |g| <= max_freq``, one
    of each Friedel pair, and the basis g1, g2 of the measured first ring."""
    lo, hi = _period_band(material, pixel_size_A)
    period, angle = measure_lattice_period(img, min_period_px=lo, max_period_px=hi)
    basis = []
    for rot in (0.0, 60.0):
        t = np.radians(angle + rot)
        basis.append(np.array([np.sin(t), np.cos(t)]) / period)
    g1, g2 = basis
    return _lattice_vectors(g1, g2, max_freq), g1, g2


def _period_band(material: Material, pixel_size_A: float) -> tuple[float, float]:
    """Periods (px) where the first Bragg ring of ``material`` is searched: +-25 % of its d100."""
    expected = material.d100_A / pixel_size_A
    return max(expected / 1.25, 2.1), expected * 1.25


def _lattice_vectors(g1: np.ndarray, g2: np.ndarray, max_freq: float) -> np.ndarray:
    """Reciprocal lattice vectors ``h g1 + k g2`` with ``0 < |g| <= max_freq``, one of each
    Friedel pair, (N, 2)."""
    n = int(np.ceil(max_freq / min(np.hypot(*g1), np.hypot(*g2)) * 2)) + 1
    h, k = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij")
    g = h.ravel()[:, None] * g1 + k.ravel()[:, None] * g2
    radius = np.hypot(g[:, 0], g[:, 1])
    half = (g[:, 0] > 1e-12) | ((np.abs(g[:, 0]) <= 1e-12) & (g[:, 1] > 0))
    return g[half & (radius > 0) & (radius <= max_freq)]


def _hinted_basis(img: np.ndarray, hint: np.ndarray, *, material: Material, pixel_size_A: float,
                  max_freq: float, min_peak_ratio: float = 8.0) -> tuple[np.ndarray, np.ndarray] | None:
    """The basis refined (:func:`_refine_basis`) from ``hint`` (another frame's (g1, g2), e.g.
    the previous frame of a movie) instead of a search of the whole spectrum, or None when the
    hint does not fit this frame.

    It fits when its ring is in the band the search would look in (:func:`_period_band`; with a
    margin of :data:`_HINT_MARGIN`: the search's refined peaks can end a little outside it), each
    first-ring reflection has its |DFT| maximum inside the refinement grid around the hinted
    frequency and at least ``min_peak_ratio`` times the background of the ring (the |DFT|
    midway between the reflections, 30 degrees off them), the test of
    :func:`~stem2d.lattice.scale.measure_lattice_period`; and the refined basis lies within half
    a DFT bin of the hint.
    """
    g1, g2 = (np.asarray(v, dtype=np.float64) for v in hint)
    lo, hi = _period_band(material, pixel_size_A)
    if not all(lo / _HINT_MARGIN <= 1.0 / np.hypot(*v) <= hi * _HINT_MARGIN for v in (g1, g2, g2 - g1)):
        return None
    g = _lattice_vectors(g1, g2, max_freq)
    g = g[np.hypot(g[:, 0], g[:, 1]) <= _REFINE_ORDER * np.hypot(*g1)]
    t = np.arctan2(g1[0], g1[1]) + np.radians([30.0, 90.0, 150.0])
    probes = np.hypot(*g1) * np.stack([np.sin(t), np.cos(t)], axis=1)
    found, amps, inside, mags = _reflection_peaks(img, np.concatenate([g, probes]))
    hk = np.rint(g @ np.linalg.inv(np.stack([g1, g2]))).astype(int)
    ring = np.abs(hk).max(axis=1) + (hk[:, 0] * hk[:, 1] > 0) == 1  # (1, 0), (0, 1), (1, -1)
    background = float(np.median(mags[len(g):]))
    if not (inside[:len(g)][ring].all() and amps[:len(g)][ring].min() >= min_peak_ratio * background):
        return None
    new = _fit_basis(hk, found[:len(g)], amps[:len(g)])
    if (np.abs(new - np.stack([g1, g2])) * img.shape > 0.5).any():
        return None
    return new[0], new[1]


def _refine_basis(img: np.ndarray, g: np.ndarray, g1: np.ndarray, g2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares basis (g1, g2) from the sub-bin |DFT| maxima of the strongest reflections.

    Each reflection is refined on a fine grid of +-0.6 bin around its predicted frequency
    (Hann-windowed frame, parabolic vertex); high orders pin the basis down ``order`` times
    more precisely than the first ring, so even drift-sheared lattices are followed exactly.
    """
    g = g[np.hypot(g[:, 0], g[:, 1]) <= _REFINE_ORDER * np.hypot(*g1)]
    hk = np.rint(g @ np.linalg.inv(np.stack([g1, g2]))).astype(int)
    found, amps, _, _ = _reflection_peaks(img, g)
    basis = _fit_basis(hk, found, amps)
    return basis[0], basis[1]


def _fit_basis(hk: np.ndarray, found: np.ndarray, amps: np.ndarray) -> np.ndarray:
    """(2, 2) basis whose ``hk`` multiples best fit the reflections ``found`` (least squares
    weighted by sqrt amplitude, over those of at least 5 % of the strongest)."""
    strong = amps >= 0.05 * amps.max()
    w = np.sqrt(amps[strong])[:, None]
    basis, *_ = np.linalg.lstsq(hk[strong] * w, found[strong] * w, rcond=None)
    return basis


def _reflection_peaks(img: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sub-bin |DFT| maximum near each frequency of ``g`` (N, 2), on a grid of +-0.6 bin.

    Returns the maxima (N, 2) cycles/px, their magnitudes (N,), whether each lies inside the
    grid (N,) bool (not on its edge), and the grid magnitudes (N, 9, 9).
    """
    n_r, n_c = img.shape
    steps = np.linspace(-0.6, 0.6, 9)
    fy = g[:, :1] + steps / n_r  # (n_g, 9) fine frequencies of every reflection
    fx = g[:, 1:] + steps / n_c
    # the transform of the Hann-windowed, centred frame (img - mean) hann_r[r] hann_c[c] with the
    # window folded into the waves and the mean's share (mean * sum_r ey[r]) taken off the row
    # transforms: no windowed copy of the frame
    ey = (_fine_waves(g[:, 0], steps / n_r, n_r) * np.hanning(n_r)).reshape(-1, n_r)
    ex = _fine_waves(g[:, 1], steps / n_c, n_c) * np.hanning(n_c)  # (n_g, 9, W)
    # one real matrix product for all row transforms (the frame is real), then small ones
    left = _real_left(ey)
    half = left @ img
    half -= img.mean() * left.sum(axis=1)[:, None]
    rowft = (half[:len(ey)] + 1j * half[len(ey):]).reshape(len(g), len(steps), n_c)
    mags = np.abs(np.matmul(rowft, ex.transpose(0, 2, 1)))  # (n_g, 9, 9)
    found, amps, inside = [], [], []
    for mag, fyi, fxi in zip(mags, fy, fx):
        iy, ix = np.unravel_index(np.argmax(mag), mag.shape)
        inside.append(0 < iy < len(steps) - 1 and 0 < ix < len(steps) - 1)
        iy, ix = min(max(iy, 1), len(steps) - 2), min(max(ix, 1), len(steps) - 2)
        lm = np.log(mag + 1e-300)
        dy = _vertex(lm[iy - 1:iy + 2, ix]) * (steps[1] - steps[0])
        dx = _vertex(lm[iy, ix - 1:ix + 2]) * (steps[1] - steps[0])
        found.append((fyi[iy] + dy / n_r, fxi[ix] + dx / n_c))
        amps.append(mag[iy, ix])
    return np.array(found), np.array(amps), np.array(inside, dtype=bool), mags


def _fine_waves(f: np.ndarray, df: np.ndarray, n: int) -> np.ndarray:
    """``exp(-2 pi i (f[a] + df[b]) x)`` for ``x = 0 .. n - 1``, (len(f), len(df), n), as the
    product of the waves of ``f`` and of ``df`` (len(f) + len(df) complex exponentials per sample,
    not their product)."""
    x = np.arange(n)
    return np.exp(-2j * np.pi * np.outer(f, x))[:, None, :] * np.exp(-2j * np.pi * np.outer(df, x))[None]


def _vertex(v: np.ndarray) -> float:
    denom = v[0] - 2 * v[1] + v[2]
    return 0.0 if denom == 0 else float(np.clip(0.5 * (v[0] - v[2]) / denom, -0.5, 0.5))


def _real_left(z: np.ndarray) -> np.ndarray:
    """``[Re z; Im z]`` stacked along the first axis: a complex product with a real matrix as
    one real product (a third of the work of a complex one)."""
    return np.concatenate([z.real, z.imag])


def _fit_amplitudes(target: np.ndarray, pr: np.ndarray, right: np.ndarray, amp: np.ndarray,
                    sweeps: int, residual: np.ndarray) -> np.ndarray:
    """Least-squares amplitudes of the real waves ``2 Re(A_g pr_g[r] pc_g[c])``.

    Jacobi sweeps of exact Fourier coefficients of the residual (two matrix products each): the
    reflections are nearly orthogonal over a whole frame, so a couple of sweeps converge.
    ``right`` is :func:`_wave_right` of the column factors ``pc``; ``residual`` (shape of
    ``target``) is scratch space, overwritten.
    """
    amp = amp.copy()
    n = len(amp)
    pr_real = _real_left(pr)  # conj(pr) @ x = (Re pr @ x) - i (Im pr @ x)
    pc_re, pc_im = right[:n] / 2, right[n:] / -2
    for _ in range(sweeps):
        np.matmul(_wave_left(pr * amp[:, None]), right, out=residual)
        np.subtract(target, residual, out=residual)
        half = pr_real @ residual
        a, b = half[:n], half[n:]  # coefficient: sum_c (a - i b)(Re pc - i Im pc)
        re = np.einsum("gw,gw->g", a, pc_re) - np.einsum("gw,gw->g", b, pc_im)
        im = -(np.einsum("gw,gw->g", a, pc_im) + np.einsum("gw,gw->g", b, pc_re))
        amp += (re + 1j * im) / residual.size
    return amp


def _wave_right(pc: np.ndarray) -> np.ndarray:
    """``2 [Re pc; -Im pc]``: the right factor of :func:`_synthesise`."""
    return 2.0 * np.concatenate([pc.real, -pc.imag])


def _wave_left(coef: np.ndarray) -> np.ndarray:
    """``[Re coef, Im coef]`` transposed, shape (H, 2G): ``2 Re(coef.T @ pc)`` is this times
    :func:`_wave_right` of ``pc``."""
    return np.concatenate([coef.real, coef.imag]).T


def _synthesise(amp: np.ndarray, pr: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``sum_g 2 Re(A_g pr_g[r] pc_g[c])`` as one real matrix product, shape (H, W)."""
    return _wave_left(pr * amp[:, None]) @ right


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
    img = check_frame(frame)
    if not pixel_size_A > 0:
        raise ValueError(f"pixel_size_A must be > 0, got {pixel_size_A}")
    g, g1, g2 = _reciprocal_lattice(img, material=material, pixel_size_A=pixel_size_A, max_freq=max_freq)
    with single_thread_blas():
        g1, g2 = _refine_basis(img, g, g1, g2)
        g = np.rint(g @ np.linalg.inv(np.stack([g1, g2]))) @ np.stack([g1, g2])
        return _fit_lattice(img - img.mean(), g, jitter_iterations)


def _fit_lattice(target: np.ndarray, g: np.ndarray, jitter_iterations: int) -> np.ndarray:
    """Amplitudes of the reflections ``g`` and per-line offsets fitted to ``target`` (zero mean);
    returns the fitted lattice (see :func:`ideal_lattice`)."""
    rows, cols = np.arange(target.shape[0]), np.arange(target.shape[1])
    right = _wave_right(np.exp(2j * np.pi * np.outer(g[:, 1], cols)))
    shift = np.zeros(len(rows))
    amp = np.zeros(len(g), dtype=complex)
    # scratch for the lattice and its column derivative, reused by every step (fresh frame-sized
    # arrays cost page faults, which dominate on a busy machine)
    both = np.empty((2 * len(rows), len(cols)))
    residual, slope = both[:len(rows)], both[len(rows):]
    for step in range(jitter_iterations + 1):
        pr = np.exp(2j * np.pi * (np.outer(g[:, 0], rows) - np.outer(g[:, 1], shift)))
        amp = _fit_amplitudes(target, pr, right, amp, sweeps=3 if step == 0 else 1, residual=residual)
        if step == jitter_iterations:
            break
        # the lattice and its column derivative from one product
        coef = pr * amp[:, None]
        np.matmul(np.concatenate([_wave_left(coef), _wave_left(coef * (2j * np.pi * g[:, 1:]))]), right, out=both)
        np.subtract(target, residual, out=residual)
        shift -= np.einsum("rc,rc->r", residual, slope) / np.maximum(np.einsum("rc,rc->r", slope, slope), 1e-12)
        shift -= shift.mean()
    return _synthesise(amp, pr, right)
