"""The processing real frames arrive with: background subtraction, smoothing, filtering, 8 bits.

Microscopists rarely hand over raw counts: frames are top-hat / rolling-ball background
subtracted, Gaussian- or median-smoothed, Wiener-filtered, clipped and saved as 8-bit images.
:func:`process` applies one drawn processing *type* (or none), then 8-bit quantisation and
clipping each with their own probability. Gaussian and median smoothing are albumentations
transforms in a :class:`albumentations.Compose` re-seeded per sample
(``Compose.set_random_seed``), so sample i stays a pure function of (seed, i); the others
(top-hat, Wiener, quantisation, clipping) have no albumentations counterpart and are numpy/scipy.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import albumentations as A
import cv2
import numpy as np

#: Processing types, one drawn per sample.
PROCESSING_TYPES: tuple[str, ...] = ("none", "tophat", "gaussian", "median", "wiener")


@dataclass(frozen=True)
class ProcessingRanges:
    """Ranges of the processing (uniform draws).

    Attributes
    ----------
    types : processing types drawn from (uniformly).
    tophat_radius_A : radius of the rolling ball / top-hat structuring element.
    gaussian_sigma_px : sigma of Gaussian smoothing.
    median_size_px : median filter sizes (3 or 5).
    wiener_cutoff_A : resolution of the Wiener-like low-pass (Fourier Butterworth) filter.
    quantize_probability : chance of 8-bit quantisation of the min-max scaled frame.
    clip_probability, clip_percentile : chance of clipping, and the upper / lower percentile
        range (saturated or cut-off display range).
    """

    types: tuple[str, ...] = PROCESSING_TYPES
    tophat_radius_A: tuple[float, float] = (3.0, 8.0)
    gaussian_sigma_px: tuple[float, float] = (0.5, 1.2)
    median_size_px: tuple[int, int] = (3, 5)
    wiener_cutoff_A: tuple[float, float] = (0.9, 1.5)
    quantize_probability: float = 0.5
    clip_probability: float = 0.3
    clip_percentile: tuple[float, float] = (0.0, 1.5)

    def __post_init__(self) -> None:
        unknown = [t for t in self.types if t not in PROCESSING_TYPES]
        if unknown or not self.types:
            raise ValueError(f"processing.types={list(self.types)}: choose from {list(PROCESSING_TYPES)}")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "types":
                object.__setattr__(self, "types", tuple(str(t) for t in value))
            elif isinstance(value, (tuple, list)):
                lo, hi = (float(v) for v in value)
                if not 0 <= lo <= hi:
                    raise ValueError(f"processing.{f.name}={[lo, hi]} must be an ordered (min, max) >= 0")
                object.__setattr__(self, f.name, (lo, hi))
            elif not 0 <= float(value) <= 1:
                raise ValueError(f"processing.{f.name}={value} must be a probability in [0, 1]")

    @classmethod
    def from_mapping(cls, mapping) -> "ProcessingRanges":
        mapping = dict(mapping or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(mapping) - known)
        if unknown:
            raise ValueError(f"processing: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**{k: (v if isinstance(v, (str, int, float)) else tuple(v))
                      for k, v in mapping.items()})


def _albumentations(ranges: ProcessingRanges) -> dict[str, A.Compose]:
    lo, hi = (int(v) for v in ranges.median_size_px)
    return {
        "gaussian": A.Compose([A.GaussianBlur(blur_limit=0, sigma_limit=ranges.gaussian_sigma_px, p=1.0)],
                              seed=0),
        "median": A.Compose([A.MedianBlur(blur_limit=(lo | 1, hi | 1), p=1.0)], seed=0),
    }


_COMPOSES: dict[ProcessingRanges, dict[str, A.Compose]] = {}


def tophat(image: np.ndarray, *, radius_px: float) -> np.ndarray:
    """Rolling-ball-like background subtraction: grey opening with a disc, subtracted."""
    r = max(int(round(radius_px)), 1)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    out = cv2.morphologyEx(np.asarray(image, dtype=np.float32), cv2.MORPH_TOPHAT, disc,
                           borderType=cv2.BORDER_REFLECT)
    return out.astype(np.float64)


def wiener_lowpass(image: np.ndarray, *, cutoff_px: float) -> np.ndarray:
    """Wiener-like filtering as done in acquisition software: a Butterworth low-pass (order 2)
    in Fourier space passing periods longer than ``cutoff_px``."""
    ky = np.fft.fftfreq(image.shape[0])[:, None]
    kx = np.fft.rfftfreq(image.shape[1])[None, :]
    k = np.hypot(ky, kx) * cutoff_px
    return np.fft.irfft2(np.fft.rfft2(image) / (1.0 + k**4), s=image.shape)


def quantize_8bit(image: np.ndarray) -> np.ndarray:
    """Min-max scale to 0..255 and round (an 8-bit export)."""
    lo, hi = float(image.min()), float(image.max())
    return np.round((image - lo) / (hi - lo + 1e-12) * 255.0)


def process(image: np.ndarray, *, ranges: ProcessingRanges, pixel_size_A: float,
            rng=None, kind: str | None = None) -> tuple[np.ndarray, str]:
    """Apply one processing type (drawn unless ``kind`` is given), then quantisation / clipping.

    Returns
    -------
    image : ndarray, float64, same shape; kind : str, the processing type applied.
    """
    rng = np.random.default_rng(rng)
    if kind is None:
        kind = ranges.types[int(rng.integers(len(ranges.types)))]
    elif kind not in PROCESSING_TYPES:
        raise ValueError(f"processing kind={kind!r}: choose from {list(PROCESSING_TYPES)}")
    seed = int(rng.integers(2**31 - 1))
    out = np.asarray(image, dtype=np.float64)
    if kind == "tophat":
        out = tophat(out, radius_px=rng.uniform(*ranges.tophat_radius_A) / pixel_size_A)
    elif kind == "wiener":
        out = wiener_lowpass(out, cutoff_px=rng.uniform(*ranges.wiener_cutoff_A) / pixel_size_A)
    elif kind in ("gaussian", "median"):
        composes = _COMPOSES.setdefault(ranges, _albumentations(ranges))
        compose = composes[kind]
        compose.set_random_seed(seed)
        lo, span = float(out.min()), float(np.ptp(out)) + 1e-12  # albumentations: floats in [0, 1]
        unit = ((out - lo) / span).astype(np.float32)
        out = compose(image=unit)["image"].astype(np.float64) * span + lo
    if rng.uniform() < ranges.clip_probability:
        lo, hi = np.percentile(out, [rng.uniform(*ranges.clip_percentile),
                                     100.0 - rng.uniform(*ranges.clip_percentile)])
        out = np.clip(out, lo, hi)
    if rng.uniform() < ranges.quantize_probability:
        out = quantize_8bit(out)
    return out, kind
