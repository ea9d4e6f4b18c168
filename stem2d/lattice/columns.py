"""Column quantification: every metal, chalcogen and hollow site of an MX2 frame, with its intensity.

The atom-by-atom analysis microscopists do by hand (atomap's workflow), in four vectorised steps:

1. **Lattice** (:func:`fit_lattice`): the reciprocal basis of the first Bragg ring is measured and
   refined (:mod:`stem2d.lattice.bragg`); geometric phase analysis (Hytch et al., Ultramicroscopy
   74, 131 (1998)) of two first-ring reflections then gives a smooth *local* fractional lattice
   coordinate at every pixel, so scan distortion, drift shear and slow bending (10-15 %) are
   followed, not averaged. The unit cell averaged in these local coordinates tells which of the
   three honeycomb sites is metal, chalcogen and hollow.
2. **Sites**: every pixel votes for the site of each sublattice it is nearest to (in local lattice
   coordinates); one position per site, with its integer lattice indices.
3. **Refinement**: metal and chalcogen columns move to the background-subtracted centre of mass
   of a disk around them (atomap's ``refine_position_using_center_of_mass``, all columns as one
   array operation); hollows stay on the lattice.
4. **Intensity**: the integrated intensity of a disk (radius ``integration_radius_A``) minus the
   local background (the mean level of the nearest hollows), divided by the local median of the
   same sublattice: ``intensity_rel`` ~1 for a normal column, ~0 for a vacancy, the Z^1.7 ratio
   for a substituent. Hollows are divided by the local chalcogen median instead (an empty hollow
   is ~0, an adatom stands out).

:func:`quantify_columns` runs all of it and returns a :class:`ColumnQuantification`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import fft as sfft
from scipy import ndimage
from skimage.restoration import unwrap_phase

from stem2d.lattice import _patches as P
from stem2d.lattice._blas import single_thread_blas
from stem2d.lattice._frame import check_frame
from stem2d.lattice._neighbours import IndexNeighbours, continuous
from stem2d.lattice.background import _linear_weights
from stem2d.lattice.bragg import _hinted_basis, _reciprocal_lattice, _refine_basis
from stem2d.materials import Material
from stem2d.stats import BracketedMedian

__all__ = ["SUBLATTICES", "ColumnQuantification", "LatticeFit", "fit_lattice", "quantify_columns"]

#: Sublattice names, in the order of :attr:`LatticeFit.offsets`.
SUBLATTICES = ("metal", "chalcogen", "hollow")
#: The same names as an object array: a table column indexed from it holds the three str objects
#: (pandas takes it as it is; from a numpy unicode array it builds every string anew, 3x slower).
_SUBLATTICE_NAMES = np.array(SUBLATTICES, dtype=object)
#: Fractional offsets (in the 120-degree real basis dual to two first-ring reflections 60 degrees
#: apart) of the two other honeycomb sites relative to one of them.
_HONEYCOMB = np.array([[1 / 3, 2 / 3], [2 / 3, 1 / 3]])
#: Table columns of :attr:`ColumnQuantification.table`.
COLUMNS = ("row", "col", "sublattice", "i", "j", "intensity", "intensity_rel", "z", "fit_quality",
           "shift_A", "bragg", "background")
_MOTIF_BINS = 24
#: The geometric phase is unwrapped on every third sample of its (already coarse) grid (it changes
#: by ~0.3 rad per sample at 15 % strain: ~1 rad per three, well under pi).
_UNWRAP_STRIDE = 3
#: Frame pixels per chunk of the demodulation (its temporaries stay in the CPU cache).
_DEMODULATE_CHUNK_PX = 1 << 16


@dataclass(frozen=True)
class LatticeFit:
    """The local lattice of a frame.

    Attributes
    ----------
    basis : ndarray, (2, 2)
        First-ring reciprocal vectors g1, g2 (rows; (row, col) cycles/px), 60 degrees apart.
    frac : ndarray, float64, (2, H, W)
        Local fractional lattice coordinates ``f_k = g_k . (r - u(r)) + const`` (unwrapped
        geometric phase over 2 pi): a site of sublattice s sits where ``f = offsets[s] mod 1``.
    offsets : ndarray, (3, 2)
        Fractional position of the metal, chalcogen and hollow sites in ``frac``, in [0, 1).
    bragg : ndarray, float64, (H, W)
        Local first-ring Bragg amplitude over its frame median (~1 on lattice; low on holes,
        amorphous patches and thick contamination).
    motif : ndarray, (24, 24)
        The unit cell averaged over the frame in local lattice coordinates.
    strain : float
        Non-uniform distortion: 95th percentile of ``|F(r) - median F|`` with ``F`` the local
        deformation gradient (0 for a rigid or uniformly sheared lattice, ~0.1 where the scan
        stretches one part of the frame 10 % more than another). Computed when first asked for
        (a movie's frames mostly are not: ~12 ms of a 1607 px frame saved), then kept.
    """

    basis: np.ndarray
    frac: np.ndarray
    offsets: np.ndarray
    bragg: np.ndarray
    motif: np.ndarray

    @functools.cached_property
    def strain(self) -> float:
        return _strain(self.frac, self.basis, self.bragg)


@dataclass(frozen=True)
class ColumnQuantification:
    """Result of :func:`quantify_columns`.

    Attributes
    ----------
    table : DataFrame
        One row per site inside the frame: ``row, col`` (float, frame px, refined for metal and
        chalcogen columns), ``sublattice`` (``metal`` / ``chalcogen`` / ``hollow``), ``i, j``
        (int lattice indices), ``intensity`` (background-subtracted disk sum, frame units x px),
        ``intensity_rel`` (over the local median of the sublattice; hollows over the local
        chalcogen median), ``z`` (``(intensity_rel - 1)`` over the sublattice's robust spread;
        hollows ``intensity_rel`` over theirs), ``fit_quality`` (correlation in [-1, 1] of the
        site's neighbourhood with the sublattice's median neighbourhood: ~1 on clean lattice,
        low on holes, amorphous or contaminated patches), ``shift_A`` (refinement shift from the
        lattice position), ``bragg`` (local Bragg amplitude, see :class:`LatticeFit`),
        ``background`` (the local background level per pixel, frame units).
    lattice : LatticeFit
    pixel_size_A : float
    ratio_metal_chalcogen : float
        Median metal over median chalcogen intensity (theory for incoherent Z^1.7 contrast:
        ``Z_M^1.7 / (2 Z_X^1.7)``, 2.6 for MoS2).
    neighbours : IndexNeighbours
        Nearest sites by lattice index over the table's rows (sublattice 0 metal, 1 chalcogen,
        2 hollow), as the quantification used them: ``neighbours.nearest(2, rows, 7)`` gives
        the 7 nearest hollows of ``rows`` (the KD-tree's sets, mostly without one).
    integration_radius_A : float
        Radius of the integrated disks.
    """

    table: pd.DataFrame
    lattice: LatticeFit
    pixel_size_A: float
    ratio_metal_chalcogen: float
    neighbours: IndexNeighbours = field(repr=False, compare=False)
    integration_radius_A: float = 0.75

    def sites(self, sublattice: str) -> pd.DataFrame:
        """The rows of one sublattice."""
        if sublattice not in SUBLATTICES:
            raise ValueError(f"sublattice={sublattice!r} must be one of {SUBLATTICES}")
        return self.table[self.table["sublattice"] == sublattice]


def fit_lattice(
    frame: np.ndarray,
    *,
    material: Material,
    pixel_size_A: float,
    resolution_A: float | None = None,
    basis_hint: np.ndarray | None = None,
) -> LatticeFit:
    """Fit the local (distortion-following) honeycomb lattice of an MX2 frame.

    Parameters
    ----------
    frame : ndarray, (H, W)
        HAADF frame, any real dtype.
    material : Material, keyword-only
        Host lattice: its ``d100_A`` sets where the first Bragg ring is searched and its atomic
        numbers which of the two column sites is the brighter.
    pixel_size_A : float, keyword-only
        Sampling of ``frame`` (within ~20 % of the truth; measure it with
        :func:`stem2d.lattice.scale.measure_pixel_size`).
    resolution_A : float or None, keyword-only
        Spatial resolution of the displacement field (the inverse width of the geometric-phase
        mask); None: 2.5 lattice constants.
    basis_hint : ndarray, (2, 2), optional, keyword-only
        The basis of another frame of the same lattice (e.g. the previous frame of a movie):
        refined on this frame instead of searching its whole spectrum for the first Bragg ring;
        the search still runs when the hint does not fit (first-ring reflections not found
        within half a DFT bin of it, or weaker than the search would accept).

    Returns
    -------
    LatticeFit

    Raises
    ------
    ValueError
        Bad frame, or no hexagonal lattice of ``material`` near ``pixel_size_A``.
    """
    return _fit_checked(frame, check_frame(frame), material=material, pixel_size_A=pixel_size_A,
                        resolution_A=resolution_A, basis_hint=basis_hint)


def _fit_checked(frame: np.ndarray, img: np.ndarray, *, material: Material, pixel_size_A: float,
                 resolution_A: float | None, basis_hint: np.ndarray | None) -> LatticeFit:
    """:func:`fit_lattice` of ``frame`` with ``img`` its :func:`check_frame` (checked once)."""
    if not pixel_size_A > 0:
        raise ValueError(f"pixel_size_A must be > 0, got {pixel_size_A}")
    max_freq = min(0.45, 2.2 * pixel_size_A / material.d100_A)
    with single_thread_blas():
        hinted = None if basis_hint is None else _hinted_basis(
            img, basis_hint, material=material, pixel_size_A=pixel_size_A, max_freq=max_freq)
        if hinted is None:
            g, g1, g2 = _reciprocal_lattice(img, material=material, pixel_size_A=pixel_size_A, max_freq=max_freq)
            g1, g2 = _refine_basis(img, g, g1, g2)
        else:
            g1, g2 = hinted
    basis = np.stack([g1, g2])
    resolution_px = (2.5 * material.a_A if resolution_A is None else resolution_A) / pixel_size_A
    # the Bragg filter works on a grid coarser than the lattice period (no aliasing of the other
    # reflections into the band); the smooth phase and amplitude are interpolated back
    step = max(1, int(1.0 / (3.0 * np.hypot(*g1))))
    upsample = _upsampler(img.shape, step)
    waves = (g1, g2, g2 - g1)
    block_sums = _demodulator(img, step)(waves)
    smooth_blocks = _frame_smoother(img.shape, step, resolution_px / 2)
    turns, amp = [], 0.0
    for k, sums in enumerate(block_sums):
        local = smooth_blocks(sums)
        amp = amp + np.abs(local)
        if k < 2:  # the phase on the block grid: a frame pass less
            turns.append(_unwrap(np.angle(local)) / (2 * np.pi))
    del block_sums
    # f_k = g_k . r + phase / 2 pi and the amplitude at full sampling, a band of rows at a time
    # (in the CPU cache, the median's counts too)
    frac, bragg = np.empty((2, *img.shape)), np.empty(img.shape)
    median = BracketedMedian(sample=amp[::2, ::2])
    for band in P.row_bands(img.shape[0]):
        for k in (0, 1):
            upsample(turns[k], out=frac[k, band], rows=band, plane=waves[k])
        median.add(upsample(amp, out=bragg[band], rows=band))
    bragg /= max(median.of(bragg), 1e-12)
    smooth = ndimage.gaussian_filter(_filter_input(frame, img), 0.25 * material.mx_distance_A / pixel_size_A,
                                     output=np.float64)
    motif = _motif(smooth, frac)
    offsets = _assign_sites(motif, material)
    return LatticeFit(basis, frac, offsets, bragg, motif)


def quantify_columns(
    frame: np.ndarray,
    *,
    material: Material,
    pixel_size_A: float,
    integration_radius_A: float = 0.75,
    refine_radius_A: float = 0.7,
    max_shift_A: float = 0.6,
    neighbours: int = 18,
    lattice: LatticeFit | None = None,
    basis_hint: np.ndarray | None = None,
) -> ColumnQuantification:
    """Find, refine and integrate every column and hollow of an MX2 frame.

    Parameters
    ----------
    frame : ndarray, (H, W)
        HAADF frame (raw counts or any linear scale).
    material : Material, keyword-only
    pixel_size_A : float, keyword-only
        Sampling of ``frame``; the work scales with the pixel count (a 512 x 512 frame at
        0.3 A/px takes ~0.1 s on one core, ~0.08 s with ``basis_hint``).
    integration_radius_A : float, keyword-only, default 0.75
        Radius of the disk integrated per site (less than half the 1.8 A site spacing).
    refine_radius_A : float, keyword-only, default 0.7
        Radius of the centre-of-mass disk of the refinement.
    max_shift_A : float, keyword-only, default 0.6
        A refinement moving a column further than this is undone (a vacancy's centre of mass
        runs to its neighbours); the lattice position is kept.
    neighbours : int, keyword-only, default 18
        Number of nearest sites of the same sublattice whose median normalises a site.
    lattice : LatticeFit, optional
        A fit of this frame from :func:`fit_lattice` (computed when omitted).
    basis_hint : ndarray, (2, 2), optional, keyword-only
        Passed to :func:`fit_lattice` when ``lattice`` is omitted (the basis of the previous frame
        of a movie: its Bragg search is then skipped).

    Returns
    -------
    ColumnQuantification
    """
    img = check_frame(frame)
    if lattice is None:
        lattice = _fit_checked(frame, img, material=material, pixel_size_A=pixel_size_A, resolution_A=None,
                               basis_hint=basis_hint)
    if lattice.frac.shape[1:] != img.shape:
        raise ValueError(f"lattice fit of shape {lattice.frac.shape[1:]} does not match the frame {img.shape}")
    r_int = integration_radius_A / pixel_size_A
    margin = int(np.ceil(max(r_int, refine_radius_A / pixel_size_A))) + 1
    inv = np.linalg.inv(lattice.basis)  # d(row, col) = inv @ d(frac)
    sites = _sites(lattice.frac, lattice.offsets, inv, margin)
    pos = np.concatenate([s[0] for s in sites])
    ij = np.concatenate([s[1] for s in sites])
    sub = np.concatenate([np.full(len(s[0]), k) for k, s in enumerate(sites)])
    lattice_pos = pos.copy()
    # smoothed, edge-padded for the refinement's disks and fit_quality's patches
    quality_radius, quality_step = material.a_A / pixel_size_A, max(1, round(0.5 / pixel_size_A))
    reach = max(P.patch_reach(quality_radius, quality_step), P.patch_reach(refine_radius_A / pixel_size_A))
    smooth, smooth_padded = P.smoothed_padded(_filter_input(frame, img), 0.15 * material.mx_distance_A / pixel_size_A,
                                              reach)
    # background: mean level of each hollow's disk; per column the median of its 3 nearest hollows,
    # per hollow that of its 6 nearest other hollows (a median: an adatom on one does not count)
    hollow = sub == 2
    area = np.pi * r_int**2
    # every site on the lattice (refined columns again below, from the same padded frame; a
    # float32 frame as it is: the same sums as from its float64 copy, half the memory to gather)
    src = _filter_input(frame, img)
    disk_frame = P.padded_for(src, *P.disk_stencil(r_int))
    means = P.disk_means(src, pos, r_int, padded=disk_frame)
    by_index = continuous(lattice.frac, lattice.basis)
    near = IndexNeighbours(lattice_pos, ij, sub, lattice.offsets, inv, by_index=by_index)
    bg = means.copy()  # a lone hollow: its own level
    if (~hollow).any():
        bg[~hollow] = P.row_median(means[near.nearest(2, np.flatnonzero(~hollow), 3)])
    if hollow.sum() > 1:
        bg[hollow] = P.row_median(means[near.nearest(2, np.flatnonzero(hollow), 6, self_match=True)])
    # refine only columns that are there (a vacancy's centre of mass runs to its neighbours)
    first = means * area - bg * np.pi * r_int**2
    columns = ~hollow
    for k in (0, 1):
        sel = sub == k
        columns[sel] &= first[sel] > 0.4 * np.median(first[sel])
    pos[columns] = P.refine(smooth, pos[columns], bg[columns], refine_radius_A / pixel_size_A,
                            max_shift_A / pixel_size_A, padded=(smooth_padded, reach))
    moved = (pos != lattice_pos).any(axis=1)
    means[moved] = P.disk_means(src, pos[moved], r_int, padded=disk_frame)
    intensity = means * area - bg * np.pi * r_int**2
    rel = np.empty(len(pos))
    near = IndexNeighbours(pos, ij, sub, lattice.offsets, inv, by_index=by_index)
    for k in (0, 1, 2):
        sel = sub == k
        rel[sel] = intensity[sel] / _local_median(near, intensity, 1 if k == 2 else k, np.flatnonzero(sel),
                                                  neighbours, self_match=k != 2)
    z = np.empty(len(pos))
    for k in (0, 1, 2):
        sel = sub == k
        centre = 0.0 if k == 2 else 1.0
        spread = 1.4826 * np.median(np.abs(rel[sel] - np.median(rel[sel]))) if sel.any() else 1.0
        z[sel] = (rel[sel] - centre) / max(spread, 1e-6)
    quality = P.fit_quality(smooth, lattice_pos, sub, quality_radius, step=quality_step,
                            padded=(smooth_padded, reach))
    shift = np.hypot(*(pos - lattice_pos).T) * pixel_size_A
    bragg = _bilinear(lattice.bragg, pos)
    table = pd.DataFrame({
        "row": pos[:, 0], "col": pos[:, 1], "sublattice": _SUBLATTICE_NAMES[sub],
        "i": ij[:, 0].astype(np.int64), "j": ij[:, 1].astype(np.int64), "intensity": intensity,
        "intensity_rel": rel, "z": z, "fit_quality": quality, "shift_A": shift, "bragg": bragg,
        "background": bg,
    }, columns=list(COLUMNS))
    good = (quality > 0.5) & (bragg > 0.5)
    m = np.median(intensity[(sub == 0) & good]) if ((sub == 0) & good).any() else np.nan
    x = np.median(intensity[(sub == 1) & good]) if ((sub == 1) & good).any() else np.nan
    return ColumnQuantification(table, lattice, float(pixel_size_A), float(m / x) if x else float("nan"), near,
                                float(integration_radius_A))


def _filter_input(frame: np.ndarray, img: np.ndarray) -> np.ndarray:
    """The frame as a Gaussian filter reads it: a float32 frame as it is (scipy filters in float64
    either way: the same numbers as from its float64 copy ``img``, from half the memory)."""
    return frame if isinstance(frame, np.ndarray) and frame.dtype == np.float32 and frame.ndim == 2 else img


def _demodulator(image: np.ndarray, step: int):
    """``demodulate(gs)``: for each wave vector g of ``gs`` the ``step``-px block sums of
    ``(image - mean) * exp(-2 pi i g . r)`` (frame zero-padded to whole blocks), with
    ``demodulate.weight`` the number of frame pixels per block.

    The plane wave factorises into a row and a column wave, so each block sum is a row-weighted
    then a column-weighted sum (two small passes instead of a complex wave over the frame). All
    waves are done a chunk of block rows at a time, the chunk centred and padded as copied: the
    frame is read once, and every temporary stays in the CPU cache (~2x faster than frame-wide
    passes per wave and part, and no padded copy of the frame).
    """
    h, w = image.shape
    hb, wb = -(-h // step), -(-w // step)
    mean = image.mean()
    rows, cols = np.arange(hb * step), np.arange(wb * step)
    chunk = max(1, _DEMODULATE_CHUNK_PX // (step * step * wb))  # block rows

    def demodulate(gs) -> list[np.ndarray]:
        row_waves = [np.exp(-2j * np.pi * g[0] * rows).reshape(hb, step) for g in gs]
        col_waves = [np.exp(-2j * np.pi * g[1] * cols) for g in gs]
        out = [np.empty((hb, wb), dtype=complex) for _ in gs]
        padded = np.zeros((chunk * step, wb * step))  # the right edge stays zero
        scratch = np.empty((chunk, wb * step), dtype=complex)
        for start in range(0, hb, chunk):
            part = slice(start, min(start + chunk, hb))
            n_rows = min(part.stop * step, h) - part.start * step
            np.subtract(image[part.start * step:part.start * step + n_rows], mean, out=padded[:n_rows, :w])
            padded[n_rows:] = 0.0  # below the frame (the last chunk)
            src = padded[:(part.stop - part.start) * step].reshape(-1, step, wb * step)
            by_rows = scratch[:part.stop - part.start]
            for wr, wc, sums in zip(row_waves, col_waves, out):
                # real and imaginary row weights separately: no complex copy of the frame
                by_rows.real = np.einsum("bsw,bs->bw", src, wr[part].real)
                by_rows.imag = np.einsum("bsw,bs->bw", src, wr[part].imag)
                by_rows *= wc[None, :]
                # the block sums, left to right as .sum(axis=2) adds them (strided adds: faster)
                blocks = by_rows.reshape(-1, wb, step)
                np.copyto(sums[part], blocks[:, :, 0])
                for k in range(1, step):
                    sums[part] += blocks[:, :, k]
        return out

    demodulate.weight = _block_weight(image.shape, step)
    return demodulate


def _block_weight(shape: tuple[int, int], step: int) -> np.ndarray:
    """Frame pixels per ``step``-px block of :func:`_demodulator`: full blocks hold step x step,
    the last row and column of blocks less."""
    h, w = shape
    per_row = np.minimum(step, h - step * np.arange(-(-h // step))).astype(np.float64)
    per_col = np.minimum(step, w - step * np.arange(-(-w // step))).astype(np.float64)
    return np.outer(per_row, per_col)


@functools.lru_cache(maxsize=4)
def _frame_smoother(shape: tuple[int, int], step: int, sigma_px: float):
    """:func:`_block_smoother` of the blocks of a frame of ``shape``, kept (the frames of a movie
    share it: its normalisation, a Gaussian filter of the block grid, is computed once)."""
    return _block_smoother(_block_weight(shape, step), sigma_px, step)


def _block_smoother(weight: np.ndarray, sigma_px: float, step: int):
    """``smooth(blocks)``: Gaussian low-pass (``sigma_px``) of complex block sums as a normalised
    convolution with zero padding (frame edges need no window): the local Bragg amplitude and
    phase on the coarse grid of :func:`_upsampler`. ``weight``: frame pixels per block.

    The convolution is ``ndimage.gaussian_filter(mode="constant")``'s (the same truncated,
    normalised kernel) done by FFT over a grid padded by the kernel's reach, so nothing wraps
    around: the same numbers to rounding, ~2x faster than the direct filter of the real and the
    imaginary part (the kernel spans ~37 blocks).
    """
    s = sigma_px / step
    norm = np.maximum(ndimage.gaussian_filter(weight, s, mode="constant"), 1e-12)
    norm.setflags(write=False)
    kernel = _gaussian_kernel(s)
    reach = len(kernel) // 2
    shape = weight.shape
    size = tuple(sfft.next_fast_len(n + 2 * reach) for n in shape)
    # the output of block b sits at b + reach of the full linear convolution; the kernel is
    # separable: one axis at a time, no grid-sized transfer function kept
    along_rows, along_cols = sfft.fft(kernel, size[0])[:, None], sfft.fft(kernel, size[1])
    inner = tuple(slice(reach, reach + n) for n in shape)

    def smooth(blocks: np.ndarray) -> np.ndarray:
        spectrum = sfft.fft(blocks, size[0], axis=0)  # axis 0, then axis 1
        spectrum *= along_rows
        by_rows = sfft.ifft(spectrum, axis=0, overwrite_x=True)[inner[0]]
        spectrum = sfft.fft(by_rows, size[1], axis=1)
        spectrum *= along_cols
        out = sfft.ifft(spectrum, axis=1, overwrite_x=True)[:, inner[1]]
        out /= norm
        return out

    return smooth


def _gaussian_kernel(sigma: float) -> np.ndarray:
    """The 1D kernel of ``ndimage.gaussian_filter1d(sigma)`` (default truncation): its response to
    a unit impulse."""
    reach = int(4.0 * sigma + 0.5)
    impulse = np.zeros(2 * reach + 1)
    impulse[reach] = 1.0
    return ndimage.gaussian_filter1d(impulse, sigma, mode="constant")


def _unwrap(phase: np.ndarray, stride: int = _UNWRAP_STRIDE) -> np.ndarray:
    """:func:`skimage.restoration.unwrap_phase` of a smooth phase map, run on every ``stride``-th
    sample (a ``stride**2`` smaller problem): each sample then takes the multiple of 2 pi that
    brings it nearest to the coarse unwrapped map interpolated (the same map as unwrapping all
    samples where the phase changes by well under pi per ``stride`` samples, up to a constant)."""
    if min(phase.shape) < 8 * stride:
        return unwrap_phase(phase)
    coarse = unwrap_phase(phase[::stride, ::stride])
    taps = [_linear_taps_at(np.arange(n) / stride, coarse.shape[a]) for a, n in enumerate(phase.shape)]
    (r0, r1, rw), (c0, c1, cw) = taps
    by_rows = coarse[r0] * (1.0 - rw)[:, None] + coarse[r1] * rw[:, None]
    guide = by_rows[:, c0] * (1.0 - cw) + by_rows[:, c1] * cw
    return phase + (2 * np.pi) * np.rint((guide - phase) / (2 * np.pi))


def _upsampler(shape: tuple[int, int], step: int):
    """Linear interpolation from the ``step``-px block grid of :func:`_demodulator` back to full
    sampling (block b holds pixels b*step .. b*step+step-1, centre (b + 0.5) * step - 0.5; beyond
    the outer block centres the edge value), as two separable passes: ``upsample(a, out, rows,
    plane)`` fills ``out`` (the rows ``rows`` of the full frame, all by default), plus
    ``plane[0] * row + plane[1] * col`` when ``plane`` is given.

    The plane is added on the block grid (the column part at the block centres: interpolation
    reproduces it exactly between the outer centres, and the clamped edge columns get the rest),
    and the columns interpolate as ``A[c0] + (A[c0 + 1] - A[c0]) w``: two passes over the frame
    instead of six.
    """
    (r0, r1, rw), (c0, c1, cw) = (_linear_taps(n, step) for n in shape)
    rv = 1.0 - rw
    all_rows = np.arange(shape[0], dtype=np.float64)
    cols = np.arange(shape[1], dtype=np.float64)
    centres = (np.arange(-(-shape[1] // step)) + 0.5) * step - 0.5
    # the columns beyond the outer block centres, and what the interpolated column plane lacks there
    outer = np.flatnonzero((cols < centres[0]) | (cols > centres[-1]))
    outer_rest = cols[outer] - ((1.0 - cw[outer]) * centres[c0[outer]] + cw[outer] * centres[c1[outer]])
    # c0 never decreases: taking block c0[c] for every column c is repeating block b per_block[b]
    # times (np.repeat: ~25 % faster than np.take with the index)
    per_block = np.bincount(c0, minlength=len(centres))

    def upsample(a: np.ndarray, out: np.ndarray | None = None, rows: slice = slice(None),
                 plane: tuple[float, float] | None = None) -> np.ndarray:
        a = np.asarray(a, dtype=np.float64)
        if step == 1:
            out = np.array(a[rows], dtype=np.float64) if out is None else _assign(out, a[rows])
            if plane is not None:
                out += plane[0] * all_rows[rows, None]
                out += plane[1] * cols
            return out
        by_rows = a[r0[rows]] * rv[rows, None] + a[r1[rows]] * rw[rows, None]
        if plane is not None:
            by_rows += plane[0] * all_rows[rows, None]
            by_rows += plane[1] * centres
        rise = np.diff(by_rows, axis=1, append=by_rows[:, -1:])  # 0 after the last centre (c1 == c0)
        out = np.multiply(np.repeat(rise, per_block, axis=1), cw, out=out)
        out += np.repeat(by_rows, per_block, axis=1)
        if plane is not None and len(outer):
            out[:, outer] += plane[1] * outer_rest
        return out

    return upsample


def _assign(out: np.ndarray, values: np.ndarray) -> np.ndarray:
    out[...] = values
    return out


def _linear_taps(n: int, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices and weight of the two block centres each of ``n`` pixels interpolates between."""
    return _linear_taps_at((np.arange(n) + 0.5) / step - 0.5, -(-n // step))


def _linear_taps_at(x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices and weight of the two of ``n`` samples each position ``x`` (in samples)
    interpolates between (the edge sample beyond the ends)."""
    x = np.clip(x, 0.0, n - 1)
    i0 = np.floor(x).astype(np.intp)
    return i0, np.minimum(i0 + 1, n - 1), x - i0


def _strain(frac: np.ndarray, basis: np.ndarray, bragg: np.ndarray) -> float:
    """95th percentile over the lattice (``bragg > 0.5``) of ``|F(r) - median F|`` (Frobenius
    norm), where ``F = G^-1 grad f`` is the local deformation relative to the global lattice
    (identity for a rigid one); sampled every 4 px."""
    step = 4
    grads = [np.gradient(np.ascontiguousarray(f[::step, ::step]), step) for f in frac]  # [k][a]: d f_k / d x_a
    mask = bragg[::step, ::step] > 0.5
    if mask.sum() < 16:
        mask[...] = True
    on = [[g[mask] for g in grads[k]] for k in (0, 1)]
    inv = np.linalg.inv(basis)
    # F[i, a] = sum_k inv[i, k] d f_k / d x_a, element by element on the lattice samples only
    square = 0.0
    for i in (0, 1):
        for a in (0, 1):
            f_ia = inv[i, 0] * on[0][a] + inv[i, 1] * on[1][a]
            f_ia -= np.median(f_ia)
            square = square + f_ia * f_ia
    return float(np.percentile(np.sqrt(square), 95))


def _motif(image: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """Mean of ``image`` over bins of the local fractional coordinates (the average unit cell),
    accumulated over bands of rows (memory of a few rows, not of the frame)."""
    n = _MOTIF_BINS
    total = np.zeros(n * n)
    count = np.zeros(n * n, dtype=np.int64)
    for rows in P.row_bands(image.shape[0]):
        f = frac[:, rows]
        # bins of f mod 1 (f - floor(f) is np.mod(f, 1) exactly; truncation is floor for these
        # non-negative values; a value rounding up to 1 wraps to bin 0): no float or integer modulo
        t = np.floor(f)
        np.subtract(f, t, out=t)
        t *= n
        b = t.astype(np.intp)
        if b.max() >= n:
            b[b >= n] -= n
        idx = (b[0] * n + b[1]).ravel()
        total += np.bincount(idx, weights=image[rows].ravel(), minlength=n * n)
        count += np.bincount(idx, minlength=n * n)
    motif = (total / np.maximum(count, 1)).reshape(n, n)
    return ndimage.gaussian_filter(motif, 1.0, mode="wrap")


def _assign_sites(motif: np.ndarray, material: Material) -> np.ndarray:
    """Fractional offsets (metal, chalcogen, hollow) from the averaged unit cell.

    The brightest bin is one column site; of its two honeycomb partners the darker is the hollow.
    Which column site is the metal follows from the incoherent Z^1.7 contrast of the material.
    Each position is refined by a parabola through the motif around it.
    """
    n = motif.shape[0]
    b = np.array(np.unravel_index(np.argmax(motif), motif.shape), dtype=float) / n
    partners = [(b + d) % 1.0 for d in _HONEYCOMB]
    vals = [_sample(motif, p) for p in partners]
    other, hollow = (partners[0], partners[1]) if vals[0] > vals[1] else (partners[1], partners[0])
    metal_brighter = material.z_metal**1.7 > 2 * material.z_chalcogen**1.7
    metal, chalcogen = (b, other) if metal_brighter else (other, b)
    return np.stack([_peak(motif, metal, 1), _peak(motif, chalcogen, 1), _peak(motif, hollow, -1)])


def _sample(motif: np.ndarray, p: np.ndarray) -> float:
    n = motif.shape[0]
    return float(ndimage.map_coordinates(motif, (p * n)[:, None], order=1, mode="grid-wrap")[0])


def _peak(motif: np.ndarray, p: np.ndarray, sign: int) -> np.ndarray:
    """Sub-bin extremum (max for sign 1, min for -1) of the periodic motif near ``p``."""
    n = motif.shape[0]
    c = np.rint(p * n).astype(int)
    best = c
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            q = (c + (dy, dx)) % n
            if sign * motif[tuple(q)] > sign * motif[tuple(best % n)]:
                best = c + (dy, dx)
    offset = []
    for axis in (0, 1):
        step = np.eye(2, dtype=int)[axis]
        v = [motif[tuple((best + s * step) % n)] for s in (-1, 0, 1)]
        denom = v[0] - 2 * v[1] + v[2]
        offset.append(0.0 if denom == 0 else float(np.clip(0.5 * (v[0] - v[2]) / denom, -0.5, 0.5)))
    return ((best + np.array(offset)) / n) % 1.0


def _sites(frac: np.ndarray, offsets: np.ndarray, inv: np.ndarray, margin: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per sublattice of ``offsets`` (S, 2): positions (N, 2) and lattice indices (N, 2) of its
    sites inside the frame, in one pass over the frame (each band of ``frac`` read once for all).

    Every pixel estimates the site its local lattice coordinate is nearest to, ``r - inv @ e``
    with ``e`` the fractional residual; the estimates of the pixels within a quarter cell are
    averaged per site.
    """
    h, w = frac.shape[1:]
    # lattice indices of the sites any pixel can be nearest to (the key range of the bincounts)
    low, high = frac.min(axis=(1, 2)), frac.max(axis=(1, 2))
    lo = [[int(np.rint(low[k] - offset[k])) for k in (0, 1)] for offset in offsets]
    hi = [[int(np.rint(high[k] - offset[k])) for k in (0, 1)] for offset in offsets]
    span = [hi_s[1] - lo_s[1] + 1 for lo_s, hi_s in zip(lo, hi)]
    sums = [np.zeros((3, (hi_s[0] - lo_s[0] + 1) * span_s)) for lo_s, hi_s, span_s in zip(lo, hi, span)]
    bands = P.row_bands(h)
    # per band the shifted coordinate, its floor, the near test and the pixel coordinates (as
    # floats), in buffers of one band: bounded temporaries, allocated once
    most = bands[0].stop - bands[0].start
    v_buf, n_buf = np.empty((2, most * w)), np.empty((2, most * w))
    near_buf = np.empty((2, most * w), dtype=bool)
    row_in_band = np.repeat(np.arange(most, dtype=np.float64), w)
    col_of = np.tile(np.arange(w, dtype=np.float64), most)
    for band in bands:
        size = (band.stop - band.start) * w
        v, n, is_near = v_buf[:, :size], n_buf[:, :size], near_buf[:, :size]
        f = frac[:, band].reshape(2, -1)
        row_of = row_in_band[:size] + band.start
        for offset, (lo0, lo1), span_s, (count, sum_r, sum_c) in zip(offsets, lo, span, sums):
            # |e| < 1/4 for e = d - rint(d), d = f - offset, tested as v - floor(v) < 1/2 for
            # v = d + 1/4 (then floor(v) = rint(d) and e = v - floor(v) - 1/4): no abs and max passes
            np.subtract(f, (offset - 0.25)[:, None], out=v)
            np.floor(v, out=n)
            v -= n
            np.less(v, 0.5, out=is_near)
            near = np.flatnonzero(np.logical_and(is_near[0], is_near[1], out=is_near[0]))  # both |e_k| < 1/4
            if not len(near):
                continue
            e0, e1 = v[0][near], v[1][near]  # e + 1/4: the 1/4 is added back per site below
            key = ((n[0][near] - lo0) * span_s + (n[1][near] - lo1)).astype(np.int64)
            # the sites of this band only (a band's keys span a few lattice rows, not the frame's)
            k0 = key.min()
            key -= k0
            span_k = slice(k0, k0 + key.max() + 1)
            count[span_k] += np.bincount(key)
            sum_r[span_k] += np.bincount(key, weights=row_of[near] - (inv[0, 0] * e0 + inv[0, 1] * e1))
            sum_c[span_k] += np.bincount(key, weights=col_of[near] - (inv[1, 0] * e0 + inv[1, 1] * e1))
    out = []
    for (lo0, lo1), span_s, (count, sum_r, sum_c) in zip(lo, span, sums):
        # per site (key, in key order) the mean estimate of its pixels
        uniq = np.flatnonzero(count)
        r = sum_r[uniq] / count[uniq] + 0.25 * (inv[0, 0] + inv[0, 1])
        c = sum_c[uniq] / count[uniq] + 0.25 * (inv[1, 0] + inv[1, 1])
        n_px = count[uniq]
        ij = np.stack([uniq // span_s + lo0, uniq % span_s + lo1], axis=1)
        inside = (r >= margin) & (r <= h - 1 - margin) & (c >= margin) & (c <= w - 1 - margin) & (n_px >= 3)
        out.append((np.stack([r, c], axis=1)[inside], ij[inside]))
    return out


def _bilinear(image: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``image`` linearly interpolated at the points ``pos`` (N, 2) (row, col), clamped to the
    frame: ``ndimage.map_coordinates(image, pos.T, order=1, mode="nearest")`` to rounding, with
    one flat index per corner (~5x faster)."""
    h, w = image.shape
    (r0, fr), (c0, fc) = _linear_weights(pos[:, 0], h), _linear_weights(pos[:, 1], w)
    flat, at = image.ravel(), r0 * w + c0
    right, down = min(1, w - 1), min(1, h - 1) * w
    top = flat[at] * (1 - fc) + flat[at + right] * fc
    bottom = flat[at + down] * (1 - fc) + flat[at + down + right] * fc
    return top * (1 - fr) + bottom * fr


def _local_median(near: IndexNeighbours, values: np.ndarray, ref_sub: int, query: np.ndarray, k: int,
                  *, self_match: bool) -> np.ndarray:
    """Median of ``values`` over the ``k`` nearest *normal* sites of sublattice ``ref_sub`` around
    each site of ``query`` (indices into the sites).

    Sites below half the sublattice's median (vacancies, holes) are not references, so a column
    next to a hole is still compared with intact columns.
    """
    refs = near.sub == ref_sub
    normal = np.zeros(len(values), bool)
    if refs.any():
        normal[refs] = values[refs] > 0.5 * np.median(values[refs])
    if normal.sum() == 0:
        return np.full(len(query), np.nan)
    med = P.row_median(values[near.nearest(ref_sub, query, k, usable=normal, self_match=self_match)])
    return np.where(np.abs(med) > 1e-12, med, np.nan)
