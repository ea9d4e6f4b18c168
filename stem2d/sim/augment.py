"""On-the-fly augmentation of simulated tiles: specimen geometry first, then acquisition noise.

A clean base tile (larger than the classifier tile) is rotated, flipped, sheared, zoomed and
shifted by one affine map and centre-cropped to the tile size; the defect position goes through
the same map exactly. Then a STEM acquisition (blur, contamination background, scan-line jitter,
shot noise at a random dose, detector noise) turns it into counts, and optionally one of the
original study's four ``skimage.util.random_noise`` modes is put on top of the min-max
normalised counts.

The affine warp is done with :func:`scipy.ndimage.affine_transform` rather than albumentations so
that (a) every random number comes from the caller's ``rng`` (sample i of a dataset is a pure
function of its seed, whatever the worker) and (b) the defect position map is the exact inverse
of the sampling map, with one pixel-centre convention.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.util import random_noise

from stem2d import CANONICAL_PIXEL_SIZE_A, TILE_SIZE_PX
from stem2d.sim.imaging import Acquisition, acquire

#: Noise modes: the STEM acquisition alone, and the original study's four on top of it.
NOISE_MODES: tuple[str, ...] = ("dose", "gaussian", "s&p", "poisson", "speckle")
#: Keyword arguments of ``skimage.util.random_noise`` per mode (the original study's values).
SKIMAGE_NOISE_KWARGS: dict[str, dict[str, float]] = {
    "gaussian": {"var": 0.01}, "s&p": {"amount": 0.05}, "poisson": {}, "speckle": {"var": 0.01},
}


def _check_range(key: str, value, *, low: float, high: float = np.inf) -> tuple[float, float]:
    lo, hi = (float(v) for v in value)
    if not (low <= lo <= hi <= high):
        raise ValueError(f"{key}={tuple(value)} must be an ordered (min, max) within [{low}, {high}]")
    return lo, hi


def _coerce(default, value):
    """``value`` as the type of a field's ``default``: int, float, tuple of str, else tuple of float
    (ranges and probabilities; None stays None)."""
    if value is None:
        return None
    if isinstance(default, bool):
        return bool(value)
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    if isinstance(default, tuple) and default and isinstance(default[0], str):
        return tuple(str(v) for v in value)
    return tuple(float(v) for v in value)


@dataclass(frozen=True)
class AugmentParams:
    """Ranges of the random augmentation (each value drawn uniformly unless said otherwise).

    Attributes
    ----------
    tile_size_px : int
        Output tile size (the classifier's 64 px).
    pixel_size_A : float
        Sampling of base and tile in angstrom per pixel.
    flip_probability : float
        Probability of a mirror image.
    max_shear : float
        Shear factor drawn from [-max_shear, max_shear].
    zoom_range : (float, float)
        Isotropic magnification range.
    max_shift_px : float
        The tile centre moves by up to this much (uniform in a disc) away from the base centre.
    dose_range_e_per_A2 : (float, float)
        Electron dose per frame, drawn log-uniformly.
    max_jitter_px, max_background_fraction, max_detector_sigma_counts, max_blur_px : float
        Upper bounds of the scan-line jitter RMS, contamination amplitude (fraction of a W
        peak), Gaussian read-out noise (counts) and extra Gaussian blur sigma (px).
    background_length_range_A : (float, float)
        Length scale of the contamination background.
    noise_modes : tuple of str
        Subset of :data:`NOISE_MODES`; one is chosen per sample.
    noise_probabilities : tuple of float or None
        Probabilities of the modes (None: uniform).
    """

    tile_size_px: int = TILE_SIZE_PX
    pixel_size_A: float = CANONICAL_PIXEL_SIZE_A
    flip_probability: float = 0.5
    max_shear: float = 0.1
    zoom_range: tuple[float, float] = (0.95, 1.05)
    max_shift_px: float = 1.0
    dose_range_e_per_A2: tuple[float, float] = (3.4e3, 1.1e5)
    max_jitter_px: float = 0.5
    max_background_fraction: float = 0.3
    background_length_range_A: tuple[float, float] = (10.0, 40.0)
    max_detector_sigma_counts: float = 1.0
    max_blur_px: float = 0.5
    noise_modes: tuple[str, ...] = NOISE_MODES
    noise_probabilities: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not self.pixel_size_A > 0:
            raise ValueError(f"pixel_size_A={self.pixel_size_A} must be > 0")
        if int(self.tile_size_px) < 8:
            raise ValueError(f"tile_size_px={self.tile_size_px} must be >= 8")
        if not 0 <= self.flip_probability <= 1:
            raise ValueError(f"flip_probability={self.flip_probability} must be in [0, 1]")
        for key in ("max_shear", "max_shift_px", "max_jitter_px", "max_background_fraction",
                    "max_detector_sigma_counts", "max_blur_px"):
            if not getattr(self, key) >= 0:
                raise ValueError(f"{key}={getattr(self, key)} must be >= 0")
        if self.max_shear >= 1:
            raise ValueError(f"max_shear={self.max_shear} must be < 1")
        _check_range("zoom_range", self.zoom_range, low=1e-3)
        _check_range("background_length_range_A", self.background_length_range_A, low=1e-3)
        lo, _ = _check_range("dose_range_e_per_A2", self.dose_range_e_per_A2, low=0.0)
        if lo <= 0:
            raise ValueError(f"dose_range_e_per_A2={tuple(self.dose_range_e_per_A2)} must be > 0")
        unknown = [m for m in self.noise_modes if m not in NOISE_MODES]
        if unknown or not self.noise_modes:
            raise ValueError(f"noise_modes={list(self.noise_modes)}: choose from {list(NOISE_MODES)}")
        p = self.noise_probabilities
        if p is not None and (len(p) != len(self.noise_modes) or min(p) < 0
                              or not np.isclose(sum(p), 1.0)):
            raise ValueError(
                f"noise_probabilities={list(p)} must be {len(self.noise_modes)} values >= 0 "
                f"summing to 1 (one per noise mode)")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AugmentParams:
        """The augmentation of a data config: the keys of ``config`` that name fields of this class,
        each coerced to its field's type (YAML / OmegaConf lists to tuples, ints to floats); the
        other keys are the caller's. DataModules pass their ``hparams``.

        >>> AugmentParams.from_config({"zoom_range": [1, 1.1], "max_shear": 0, "batch_size": 8}).zoom_range
        (1.0, 1.1)
        """
        return cls(**{f.name: _coerce(f.default, config[f.name]) for f in fields(cls) if f.name in config})

    def min_base_size_px(self) -> int:
        """Smallest base tile whose every output pixel samples inside it (no empty corners)."""
        s = self.max_shear
        shear_norm = (s + np.sqrt(s * s + 4.0)) / 2.0  # largest singular value of [[1, s], [0, 1]]
        half = np.sqrt(2.0) * (self.tile_size_px - 1) / 2.0 + self.max_shift_px
        return int(np.ceil(2.0 * half * shear_norm / self.zoom_range[0])) + 2


@dataclass(frozen=True)
class Geometry:
    """One affine map from base pixels to tile pixels: ``q = matrix @ (p - c_base) + c_tile + shift``."""

    matrix: np.ndarray
    shift_px: np.ndarray


def random_geometry(rng=None, *, params: AugmentParams = AugmentParams()) -> Geometry:
    """Draw a random specimen geometry.

    Emulates: any in-plane orientation of the crystal (rotation), the mirror symmetry of the
    projected 2H lattice and a reversed scan direction (flip), scan distortion and drift during
    the scan (shear), a pixel-size calibration error of a few percent (zoom) and the imprecision
    of the defect detector that centres the tile at inference (shift).
    """
    rng = np.random.default_rng(rng)
    theta = rng.uniform(0.0, 2.0 * np.pi)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    flip = np.diag([1.0, -1.0]) if rng.uniform() < params.flip_probability else np.eye(2)
    shear = np.array([[1.0, rng.uniform(-params.max_shear, params.max_shear)], [0.0, 1.0]])
    zoom = rng.uniform(*params.zoom_range)
    radius = params.max_shift_px * np.sqrt(rng.uniform())
    phi = rng.uniform(0.0, 2.0 * np.pi)
    shift = np.array([radius * np.sin(phi), radius * np.cos(phi)])
    return Geometry(zoom * shear @ rot @ flip, shift)


def _centre(n: int) -> float:
    return (n - 1) / 2.0


def transform_points(points: np.ndarray, geometry: Geometry, *, base_size_px: int,
                     tile_size_px: int) -> np.ndarray:
    """Map (row, col) points of a base tile to the warped tile (NaN stays NaN).

    Returns
    -------
    ndarray, float64, shape like ``points`` (..., 2).
    """
    p = np.asarray(points, dtype=np.float64) - _centre(base_size_px)
    return p @ geometry.matrix.T + _centre(tile_size_px) + geometry.shift_px


def warp_tile(base: np.ndarray, geometry: Geometry, *, tile_size_px: int, order: int = 1) -> np.ndarray:
    """Resample a square base tile through ``geometry`` into a ``tile_size_px`` square tile.

    Parameters
    ----------
    base : ndarray, (S, S)
    geometry : Geometry
    tile_size_px : int, keyword-only
    order : int, keyword-only
        Spline order of the interpolation (1: bilinear).

    Returns
    -------
    ndarray, dtype of ``base``, (tile_size_px, tile_size_px). Pixels whose source falls outside
    the base repeat its edge (choose the base size with :meth:`AugmentParams.min_base_size_px`).
    """
    inv = np.linalg.inv(geometry.matrix)
    offset = _centre(base.shape[0]) - inv @ (_centre(tile_size_px) + geometry.shift_px)
    return ndimage.affine_transform(base, inv, offset=offset, output_shape=(tile_size_px,) * 2,
                                    order=order, mode="nearest")


def random_acquisition(rng=None, *, params: AugmentParams = AugmentParams()) -> Acquisition:
    """Draw acquisition settings: log-uniform dose, uniform jitter/background/detector noise."""
    rng = np.random.default_rng(rng)
    lo, hi = np.log(params.dose_range_e_per_A2)
    return Acquisition(
        dose_e_per_A2=float(np.exp(rng.uniform(lo, hi))),
        detector_sigma_counts=rng.uniform(0.0, params.max_detector_sigma_counts),
        jitter_px=rng.uniform(0.0, params.max_jitter_px),
        jitter_correlation=rng.uniform(0.0, 0.9),
        background_fraction=rng.uniform(0.0, params.max_background_fraction),
        background_length_A=rng.uniform(*params.background_length_range_A),
    )


def add_skimage_noise(counts: np.ndarray, mode: str, *, rng=None) -> np.ndarray:
    """Min-max normalise ``counts`` to [0, 1] and apply ``skimage.util.random_noise(mode)``.

    The original study's image-processing noises (gaussian var 0.01, s&p amount 0.05, poisson,
    speckle var 0.01); they stand in for detector artefacts not modelled physically (hot/dead
    pixels for s&p, gain fluctuations for speckle).
    """
    span = counts.max() - counts.min()
    unit = (counts - counts.min()) / span if span > 0 else np.zeros_like(counts, dtype=np.float64)
    return random_noise(unit, mode=mode, rng=np.random.default_rng(rng), **SKIMAGE_NOISE_KWARGS[mode])


@dataclass(frozen=True)
class AugmentedTile:
    """One augmented sample: the warped clean tile, the noisy image, the defect (row, col) in
    tile pixels (NaN for pristine) and the index of its noise mode in ``params.noise_modes``."""

    clean: np.ndarray
    image: np.ndarray
    pos: np.ndarray
    noise: int


def augment_tile(base: np.ndarray, base_pos: np.ndarray, *, params: AugmentParams = AugmentParams(),
                 rng=None, noise: int | None = None) -> AugmentedTile:
    """Random geometry, then acquisition noise, of one clean base tile.

    Parameters
    ----------
    base : ndarray, float, (S, S)
        Clean base tile, S >= ``params.min_base_size_px()``.
    base_pos : ndarray, (2,)
        Defect (row, col) in base pixels; NaN for pristine.
    params : AugmentParams, keyword-only
    rng : int, Generator or None, keyword-only
    noise : int or None, keyword-only
        Index into ``params.noise_modes``; None draws it with ``params.noise_probabilities``.

    Returns
    -------
    AugmentedTile; ``image`` is float64 counts (``"dose"``) or values in [0, 1] (other modes).
    """
    rng = np.random.default_rng(rng)
    geometry = random_geometry(rng, params=params)
    size = params.tile_size_px
    clean = warp_tile(base, geometry, tile_size_px=size)
    pos = transform_points(base_pos, geometry, base_size_px=base.shape[0], tile_size_px=size)
    if noise is None:
        noise = int(rng.choice(len(params.noise_modes), p=params.noise_probabilities))
    acq = random_acquisition(rng, params=params)
    blur = rng.uniform(0.0, params.max_blur_px)
    image = acquire(clean, pixel_size_A=params.pixel_size_A, acq=acq, blur_px=blur, rng=rng).astype(np.float64)
    mode = params.noise_modes[noise]
    if mode != "dose":
        image = add_skimage_noise(image, mode, rng=rng)
    return AugmentedTile(clean, image, pos, noise)
