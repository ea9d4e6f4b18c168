"""What the simulated-tile DataModules share: seeded train/val/test splits built on demand.

A subclass sets ``classes``, ``params`` (with ``noise_modes``, ``tile_size_px``, ``pixel_size_A``),
``seed``, ``batch_size``, ``num_workers``, ``persistent_workers``, the per-split sample counts
``_samples`` and implements :meth:`SplitTileDataModule.make_dataset`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from stem2d.models.preprocess import standardize_tiles

log = logging.getLogger(__name__)

#: The splits, each from its own seed stream.
SPLITS = ("train", "val", "test")
#: Which splits each Lightning stage needs.
STAGE_SPLITS: dict[str | None, tuple[str, ...]] = {
    "fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": (), None: SPLITS}


def split_index(split: str) -> int:
    """Index of ``split`` in :data:`SPLITS` (its seed stream); ``ValueError`` naming it otherwise."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: choose one of {list(SPLITS)}")
    return SPLITS.index(split)


class SampledTiles(Dataset):
    """Base of the tile datasets: ``n_samples`` samples cycling over ``bases``; sample i draws from
    its own generator ``(seed, split, stream, i)``, so it is a pure function of the seed and i.

    A subclass sets ``bases`` (with ``label`` and ``split``), ``n_samples``, ``seed`` and calls
    :meth:`_init_stream`, and implements ``sample(index, noise=None)``.
    """

    bases: object
    n_samples: int
    seed: int

    def _init_stream(self, stream: int) -> None:
        self._split_id, self._stream = split_index(self.bases.split), int(stream)

    def __len__(self) -> int:
        return self.n_samples

    def base_index(self, index: int) -> int:
        """Which base sample ``index`` is made from."""
        return index % len(self.bases)

    def sample_rng(self, index: int) -> np.random.Generator:
        """The generator of sample ``index`` (``IndexError`` outside the dataset)."""
        if not 0 <= index < self.n_samples:
            raise IndexError(f"index {index} out of range for {self.n_samples} samples")
        return np.random.default_rng([self.seed, self._split_id, self._stream, int(index)])

    def item(self, index: int) -> dict[str, torch.Tensor]:
        """The batch item of sample ``index``: standardised ``image`` (1, T, T), ``label``, ``pos``, ``noise``."""
        s = self.sample(int(index))
        return {
            "image": torch.from_numpy(standardize_tiles(s.image)[None]),
            "label": torch.tensor(self.bases.label[self.base_index(int(index))], dtype=torch.int64),
            "pos": torch.from_numpy(s.pos.astype(np.float32)),
            "noise": torch.tensor(s.noise, dtype=torch.int64),
        }


class SplitTileDataModule(pl.LightningDataModule):
    """Base of :class:`~stem2d.data.simulated.SimulatedDataModule` and
    :class:`~stem2d.data.mx2.MX2DataModule`: class/tile properties, ``setup`` and the loaders."""

    #: DataLoader ``worker_init_fn`` (None: none).
    worker_init: Callable[[int], None] | None = None

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.classes.names

    @property
    def noise_modes(self) -> tuple[str, ...]:
        return self.params.noise_modes

    @property
    def tile_size_px(self) -> int:
        return self.params.tile_size_px

    @property
    def pixel_size_A(self) -> float:
        return self.params.pixel_size_A

    def make_dataset(self, split: str) -> Dataset:
        """The dataset of one split (subclasses)."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets of the splits ``stage`` needs (fit: train+val, validate: val,
        test: test, None: all); later calls reuse them."""
        if stage not in STAGE_SPLITS:
            raise ValueError(f"stage={stage!r}: expected one of {list(STAGE_SPLITS)}")
        for split in STAGE_SPLITS[stage]:
            if split not in self.datasets:
                self.datasets[split] = self.make_dataset(split)
                log.info("%s: %d bases, %d samples", split, len(self.datasets[split].bases), self._samples[split])

    def _loader(self, split: str, *, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            raise RuntimeError(f"call setup() before requesting the {split} dataloader")
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        workers = self.num_workers > 0
        return DataLoader(self.datasets[split], batch_size=self.batch_size, shuffle=shuffle,
                          generator=generator, num_workers=self.num_workers,
                          worker_init_fn=self.worker_init if workers else None,
                          persistent_workers=self.persistent_workers and workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
