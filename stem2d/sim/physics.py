"""Randomised HAADF image physics: contrast, channelling, probe shape, detector response.

Our incoherent model (Z^n columns blurred by a Gaussian probe) is one point in a space of image
models; multislice simulations and real microscopes sit elsewhere in it. A classifier trained on
one point learns that point's intensity ratios. So every training image draws its own physics
from :class:`PhysicsRanges` (each range, its physical reason and a preview: docs/physics.md):

- contrast: ``w(Z) = f_Z (Z / Z_host)^n`` with an exponent ``n`` per image and an independent
  factor ``f_Z`` per element (detector angles, thermal diffuse scattering, probe tails all move
  the ratios), kept where the lighter-metal / host-metal ratio is inside ``light_metal_ratio``;
- channelling: in a column of two atoms the probe meets the first atom unspread and the second
  after it has channelled (focused or spread), so the second counts ``c`` times the first; a
  column with one chalcogen missing then peaks at ``1 / (1 + c)`` of a full one;
- probe: core FWHM, residual two-fold astigmatism / tilt (an elliptical core), residual defocus
  (a ring around the core), and a broad tail;
- detector: a power-law response (gamma) and a black-level offset.

Rendering: columns are narrow Gaussians (thermal vibration, :data:`ATOM_SIGMA_A`) splatted with
``np.bincount`` (no BLAS threads to fight over on a shared CPU), then convolved with the drawn
probe kernel (``scipy.signal.fftconvolve``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy import signal

from stem2d.materials import ATOMIC_NUMBER

_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
#: RMS thermal displacement of a column (projected), in angstrom: the width each column is
#: rendered with before the probe; probe FWHM ranges are the effective (combined) values.
ATOM_SIGMA_A = 0.15
#: Half width of the probe kernel in pixels (covers a 5 A FWHM tail to 3 sigma at 0.3 A/px).
KERNEL_RADIUS_PX = 20


@dataclass(frozen=True)
class PhysicsRanges:
    """Ranges (min, max) of the per-image physics, each drawn uniformly unless said otherwise.

    Attributes
    ----------
    z_exponent : exponent n of the Z^n contrast.
    species_factor : per-element factor f_Z, drawn log-uniformly for each element.
    light_metal_ratio : allowed peak ratio of the lighter metal (Mo in W hosts, V in Mo hosts)
        to the host metal; draws outside are redrawn.
    second_atom_factor : channelling factor c of the second atom of a column
        (single-chalcogen / full column = 1 / (1 + c)).
    probe_fwhm_A : effective FWHM of the probe core (with the thermal width).
    astigmatism : ellipticity of the core, sigma_major / sigma_minor - 1 (random orientation).
    ring_fraction, ring_radius_A : share of the probe current in a defocus ring and its radius.
    tail_fraction, tail_fwhm_A : share of the current in the broad tail, and its FWHM.
    detector_gamma : exponent of the detector response (1 = linear).
    detector_offset : black level, as a fraction of a host-metal column peak.
    """

    z_exponent: tuple[float, float] = (1.3, 2.0)
    species_factor: tuple[float, float] = (0.88, 1.14)
    light_metal_ratio: tuple[float, float] = (0.33, 0.55)
    second_atom_factor: tuple[float, float] = (0.6, 1.5)
    probe_fwhm_A: tuple[float, float] = (0.75, 1.2)
    astigmatism: tuple[float, float] = (0.0, 0.3)
    ring_fraction: tuple[float, float] = (0.0, 0.1)
    ring_radius_A: tuple[float, float] = (1.2, 2.5)
    tail_fraction: tuple[float, float] = (0.03, 0.3)
    tail_fwhm_A: tuple[float, float] = (2.0, 5.0)
    detector_gamma: tuple[float, float] = (0.9, 1.1)
    detector_offset: tuple[float, float] = (0.0, 0.1)

    def __post_init__(self) -> None:
        for f in fields(self):
            lo, hi = (float(v) for v in getattr(self, f.name))
            if not (0 <= lo <= hi):
                raise ValueError(f"physics.{f.name}={[lo, hi]} must be an ordered (min, max) >= 0")
            object.__setattr__(self, f.name, (lo, hi))
        if self.species_factor[0] <= 0 or self.probe_fwhm_A[0] <= 2.3548 * ATOM_SIGMA_A:
            raise ValueError(f"physics: species_factor must be > 0 and probe_fwhm_A > "
                             f"{2.3548 * ATOM_SIGMA_A:.2f} A (the thermal width), got {self}")

    @classmethod
    def from_mapping(cls, mapping) -> "PhysicsRanges":
        """Build from a dict of ``name: [min, max]``; unknown keys raise ``ValueError``."""
        mapping = dict(mapping or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(mapping) - known)
        if unknown:
            raise ValueError(f"physics: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) for k, v in mapping.items()})


@dataclass(frozen=True)
class ImagePhysics:
    """The physics of one image (drawn by :func:`draw_physics`)."""

    z_exponent: float = 1.7
    species: tuple[tuple[int, float], ...] = ()
    second_atom_factor: float = 1.0
    probe_fwhm_A: float = 0.9
    astigmatism: float = 0.0
    astigmatism_angle: float = 0.0
    ring_fraction: float = 0.0
    ring_radius_A: float = 1.8
    tail_fraction: float = 0.1
    tail_fwhm_A: float = 3.0
    detector_gamma: float = 1.0
    detector_offset: float = 0.0

    def weight(self, z: np.ndarray, z_host: int) -> np.ndarray:
        """Scattering strength of single atoms of atomic number ``z`` relative to the host metal
        (0 for z = 0)."""
        z = np.clip(np.asarray(z, dtype=np.int64), 0, 127)
        table = np.ones(128)
        for element, factor in self.species:
            table[element] = factor
        table *= np.power(np.arange(128) / z_host, self.z_exponent) / table[z_host]
        table[0] = 0.0
        return table[z]

    def column_weights(self, atoms: np.ndarray, z_host: int) -> np.ndarray:
        """Column strengths (N,) from atoms (N, 2) ordered along the beam: the first atom present
        counts 1, the second ``second_atom_factor`` (channelling)."""
        atoms = np.asarray(atoms)
        w = self.weight(atoms, z_host)
        first_present = atoms[:, 0] > 0
        second = np.where(first_present, w[:, 1] * self.second_atom_factor, 0.0)
        first = np.where(first_present, w[:, 0], w[:, 1])
        return first + second


def _uniform(rng, pair):
    return float(rng.uniform(*pair))


def draw_physics(ranges: PhysicsRanges, *, host_metal: str, rng=None) -> ImagePhysics:
    """Draw the physics of one image.

    Parameters
    ----------
    ranges : PhysicsRanges
    host_metal : str
        Element of the host's metal site (the lighter-metal ratio is checked against it).
    rng : int, Generator or None

    Returns
    -------
    ImagePhysics
    """
    rng = np.random.default_rng(rng)
    z_host = ATOMIC_NUMBER[host_metal]
    z_light = {"W": 42, "Mo": 23}.get(host_metal)
    lo, hi = np.log(ranges.species_factor)
    elements = sorted(set(ATOMIC_NUMBER.values()))
    for _ in range(100):
        n = _uniform(rng, ranges.z_exponent)
        factors = np.exp(rng.uniform(lo, hi, size=len(elements)))
        species = tuple(zip(elements, factors.tolist()))
        physics = ImagePhysics(z_exponent=n, species=species)
        if z_light is None:
            break
        ratio = float(physics.weight(np.array([z_light]), z_host)[0])
        if ranges.light_metal_ratio[0] <= ratio <= ranges.light_metal_ratio[1]:
            break
    return ImagePhysics(
        z_exponent=n, species=species,
        second_atom_factor=_uniform(rng, ranges.second_atom_factor),
        probe_fwhm_A=_uniform(rng, ranges.probe_fwhm_A),
        astigmatism=_uniform(rng, ranges.astigmatism),
        astigmatism_angle=float(rng.uniform(0.0, np.pi)),
        ring_fraction=_uniform(rng, ranges.ring_fraction),
        ring_radius_A=_uniform(rng, ranges.ring_radius_A),
        tail_fraction=_uniform(rng, ranges.tail_fraction),
        tail_fwhm_A=_uniform(rng, ranges.tail_fwhm_A),
        detector_gamma=_uniform(rng, ranges.detector_gamma),
        detector_offset=_uniform(rng, ranges.detector_offset),
    )


def probe_kernel(physics: ImagePhysics, *, pixel_size_A: float,
                 radius_px: int = KERNEL_RADIUS_PX) -> np.ndarray:
    """Probe intensity on a (2r+1, 2r+1) pixel grid, without the thermal width of the columns.

    Elliptical Gaussian core (astigmatism / tilt), Gaussian ring (residual defocus) and broad
    Gaussian tail, each holding its share of the current, scaled so that a lone column of weight
    1 rendered by :func:`render_columns` peaks at ~1.
    """
    y, x = np.mgrid[-radius_px:radius_px + 1, -radius_px:radius_px + 1] * pixel_size_A
    sigma_eff = physics.probe_fwhm_A * _FWHM_TO_SIGMA
    sigma = np.sqrt(max(sigma_eff**2 - ATOM_SIGMA_A**2, 1e-4))
    e = np.sqrt(1.0 + physics.astigmatism)
    c, s = np.cos(physics.astigmatism_angle), np.sin(physics.astigmatism_angle)
    u, v = c * x + s * y, -s * x + c * y
    core = np.exp(-0.5 * ((u / (sigma * e)) ** 2 + (v * e / sigma) ** 2))
    r = np.hypot(x, y)
    ring = np.exp(-0.5 * ((r - physics.ring_radius_A) / (1.5 * sigma)) ** 2)
    tail = np.exp(-0.5 * (r / (physics.tail_fwhm_A * _FWHM_TO_SIGMA)) ** 2)
    core_share = 1.0 - physics.ring_fraction - physics.tail_fraction
    kernel = sum(share * part / part.sum() for share, part in
                 ((core_share, core), (physics.ring_fraction, ring), (physics.tail_fraction, tail)))
    atom = np.exp(-0.5 * (r / ATOM_SIGMA_A) ** 2)
    return kernel / float((kernel * atom).sum())


def render_columns(pos_px: np.ndarray, weights: np.ndarray, *, kernel: np.ndarray,
                   shape: tuple[int, int], pixel_size_A: float) -> np.ndarray:
    """Noise-free image of point columns blurred by the thermal width and ``kernel``.

    Parameters
    ----------
    pos_px : ndarray, (N, 2)
        Column (row, col) in output pixels (may lie outside; the kernel reach is rendered too).
    weights : ndarray, (N,)
    kernel : ndarray, (2r+1, 2r+1), from :func:`probe_kernel`.
    shape : (int, int)
    pixel_size_A : float

    Returns
    -------
    ndarray, float64, ``shape``; a lone column of weight 1 peaks at ~1.
    """
    r = kernel.shape[0] // 2
    h, w = shape[0] + 2 * r, shape[1] + 2 * r
    p = np.asarray(pos_px, dtype=np.float64) + r
    sigma = ATOM_SIGMA_A / pixel_size_A
    keep = ((p[:, 0] > -4 * sigma) & (p[:, 0] < h + 4 * sigma) & (p[:, 1] > -4 * sigma)
            & (p[:, 1] < w + 4 * sigma) & (np.asarray(weights) != 0))
    p, wts = p[keep], np.asarray(weights, dtype=np.float64)[keep]
    # splat each column's separable Gaussian (+-4 sigma) with bincount: no BLAS, no threads
    half = int(np.ceil(4 * sigma))
    offsets = np.arange(-half, half + 2)
    start = np.floor(p).astype(np.int64) - half  # (N, 2)
    ir = start[:, :1] + offsets
    ic = start[:, 1:] + offsets
    vr = np.exp(-0.5 * ((ir - p[:, :1]) / sigma) ** 2) * wts[:, None]
    vc = np.exp(-0.5 * ((ic - p[:, 1:]) / sigma) ** 2)
    vr = np.where((ir >= 0) & (ir < h), vr, 0.0)
    vc = np.where((ic >= 0) & (ic < w), vc, 0.0)
    flat = np.clip(ir, 0, h - 1)[:, :, None] * w + np.clip(ic, 0, w - 1)[:, None, :]
    canvas = np.bincount(flat.ravel(), weights=(vr[:, :, None] * vc[:, None, :]).ravel(),
                         minlength=h * w).reshape(h, w)
    return signal.fftconvolve(canvas, kernel, mode="valid")
