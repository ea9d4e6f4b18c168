"""Tiles of labelled frames for the pixel-wise network: region split, tiling, augmentation.

A sample's randomness is a pure function of ``(seed, epoch, tile index)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch
from scipy import ndimage
from torch.utils.data import Dataset, Sampler

from stem2d.data.labels import LabelledFrame
from stem2d.models.preprocess import standardize_tiles

__all__ = ["EpochSampler", "TileDataset", "augment_pair", "region_split", "tile_origins"]


def region_split(height: int, *, val_fraction: float, val_tile: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Row ranges ``(train, val)``: the bottom stripe (at least ``val_tile`` rows) is validation."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    val_h = max(round(val_fraction * height), val_tile)
    if val_h >= height:
        raise ValueError(f"frame of {height} rows cannot hold a validation stripe of {val_h} rows")
    return (0, height - val_h), (height - val_h, height)


def tile_origins(rows: tuple[int, int], width: int, *, tile: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners of ``tile`` x ``tile`` tiles inside rows ``[r0, r1)`` and ``width`` columns,
    every ``stride`` px, plus a last one flush with the far edges."""
    r0, r1 = rows

    def starts(lo: int, hi: int) -> list[int]:
        if hi - lo < tile:
            return []
        s = list(range(lo, hi - tile + 1, stride))
        return s if s[-1] == hi - tile else s + [hi - tile]

    return [(r, c) for r in starts(r0, r1) for c in starts(0, width)]


def augment_pair(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, *, dihedral: bool,
                 dose_probability: float, peak_counts_range: tuple[float, float], blur_probability: float,
                 max_blur_px: float, gamma_range: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Random augmentation of a (tile, mask) pair.

    - dihedral: one of the 8 rotations/flips (the lattice has no preferred orientation);
    - gamma: ``x ** gamma`` on the min-max scaled tile (detector / display non-linearity);
    - blur: Gaussian of sigma up to ``max_blur_px`` (defocus, a wider probe);
    - dose: Poisson counts at a W-column peak drawn in ``peak_counts_range`` (a lower dose).
    """
    if dihedral:
        k = int(rng.integers(8))
        image, mask = np.rot90(image, k % 4), np.rot90(mask, k % 4)
        if k >= 4:
            image, mask = image[:, ::-1], mask[:, ::-1]
    lo, hi = np.percentile(image, [0.5, 99.5])
    x = np.clip((image - lo) / max(hi - lo, 1e-6), 0.0, None)
    x = x ** rng.uniform(*gamma_range)
    if rng.uniform() < blur_probability:
        x = ndimage.gaussian_filter(x, rng.uniform(0.0, max_blur_px))
    if rng.uniform() < dose_probability:
        peak = np.exp(rng.uniform(*np.log(peak_counts_range)))
        x = rng.poisson(x * peak).astype(np.float64)
    return x, np.ascontiguousarray(mask)


class TileDataset(Dataset):
    """Tiles cut from labelled frames; training tiles are augmented.

    Item ``k`` is tile ``k % len(origins)`` drawn with a generator seeded by
    ``(seed, k // len(origins), k % len(origins))``: indices beyond the first ``len(self)``
    (from :class:`EpochSampler`) give new augmentations of the same tiles.
    """

    def __init__(self, frames: Sequence[LabelledFrame], origins: Sequence[tuple[int, int, int]], *,
                 tile: int, seed: int, augment: Mapping | None = None) -> None:
        self.frames, self.origins, self.tile, self.seed = list(frames), list(origins), int(tile), int(seed)
        self.augment = None if augment is None else dict(augment)

    def __len__(self) -> int:
        return len(self.origins)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        epoch, i = divmod(int(k), len(self.origins))
        f, r, c = self.origins[i]
        frame = self.frames[f]
        image = frame.image[r:r + self.tile, c:c + self.tile]
        mask = frame.mask[r:r + self.tile, c:c + self.tile]
        if self.augment is not None:
            image, mask = augment_pair(image, mask, np.random.default_rng([self.seed, epoch, i]), **self.augment)
        return {"image": torch.from_numpy(standardize_tiles(image)[None].copy()),
                "mask": torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32)[None])}


class EpochSampler(Sampler[int]):
    """Shuffles ``samples_per_epoch`` tile indices per epoch and tags them with the epoch
    (index + epoch * n), so :class:`TileDataset` augments differently every epoch."""

    def __init__(self, n: int, *, samples_per_epoch: int | None, seed: int) -> None:
        self.n, self.seed, self.epoch = int(n), int(seed), 0
        self.samples = self.n if samples_per_epoch is None else int(samples_per_epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.samples

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, 7, self.epoch])
        reps = -(-self.samples // self.n)
        idx = np.concatenate([rng.permutation(self.n) + (self.epoch * reps + r) * self.n for r in range(reps)])
        return iter(idx[: self.samples].tolist())
