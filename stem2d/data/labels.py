"""Labelled frames: a frame at 0.3 A/px with a defect mask (a disk at every labelled site)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stem2d import CANONICAL_PIXEL_SIZE_A
from stem2d.lattice import LABELERS
from stem2d.lattice.scale import resample, resample_factors, to_resampled_coords

__all__ = ["EDGE_PAD_PX", "LABEL_METHODS", "LabelledFrame", "defect_mask", "label_frame"]

LABEL_METHODS = ("fourier", "lattice", "truth")
#: Reflected border around every labelled frame: tiles at the frame edge then look like the
#: frame edge at inference (``predict_frame`` pads by the U-Net's 23 px receptive radius -> 24).
EDGE_PAD_PX = 24


@dataclass(frozen=True)
class LabelledFrame:
    """A frame at the canonical sampling and its defect mask, both padded by ``pad`` px on every
    side (image: reflected, as :func:`stem2d.predict.pixelmap.predict_frame` pads frames; mask: False)."""

    image: np.ndarray
    mask: np.ndarray
    n_points: int
    source: str
    pad: int = 0

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of the frame without its padding."""
        return self.image.shape[0] - 2 * self.pad, self.image.shape[1] - 2 * self.pad


def defect_mask(shape: tuple[int, int], points: np.ndarray, *, radius_px: float) -> np.ndarray:
    """Bool mask with a disk of ``radius_px`` around every (row, col) point (pixel centres)."""
    mask = np.zeros(shape, dtype=bool)
    r = int(np.ceil(radius_px))
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    for pr, pc in np.asarray(points, dtype=float).reshape(-1, 2):
        rows, cols = np.rint(pr).astype(int) + dy, np.rint(pc).astype(int) + dx
        inside = ((rows - pr) ** 2 + (cols - pc) ** 2 <= radius_px**2) & (rows >= 0) & (rows < shape[0]) \
            & (cols >= 0) & (cols < shape[1])
        mask[rows[inside], cols[inside]] = True
    return mask


def label_frame(frame: np.ndarray, *, method: str, pixel_size_A: float, material, truth: np.ndarray | None,
                radius_A: float, source: str) -> LabelledFrame:
    """Resample a frame to 0.3 A/px and label it; ``truth`` (input-frame px) for ``method='truth'``."""
    if method not in LABEL_METHODS:
        raise ValueError(f"data.label_method={method!r}: choose one of {list(LABEL_METHODS)}")
    factors = resample_factors(np.shape(frame), from_pixel_size_A=pixel_size_A)
    image = resample(frame, from_pixel_size_A=pixel_size_A)
    if method == "truth":
        if truth is None:
            raise ValueError(f"data.label_method='truth' needs a synthetic movie; {source} has no truth")
        points = to_resampled_coords(truth, factors)
    else:
        points = LABELERS[method](image, material=material, pixel_size_A=CANONICAL_PIXEL_SIZE_A)
    mask = defect_mask(image.shape, points, radius_px=radius_A / CANONICAL_PIXEL_SIZE_A)
    if min(image.shape) <= EDGE_PAD_PX:
        raise ValueError(f"{source}: frame of {image.shape} px at 0.3 A/px is too small to label")
    return LabelledFrame(np.pad(image, EDGE_PAD_PX, mode="reflect").astype(np.float32),
                         np.pad(mask, EDGE_PAD_PX), len(points), source, EDGE_PAD_PX)
