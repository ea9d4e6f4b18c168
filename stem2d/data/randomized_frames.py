"""Physics-randomised frame crops of the MX2 family for the pixel-wise defect network (``data=mx2_frames``).

Every sample renders a fresh region of a material drawn from ``materials`` with its own
defects, geometry, physics, acquisition, processing and pixel size
(:func:`stem2d.sim.randomized_frame.randomized_frame`) and its target: a disk of
``label_radius_A`` at every defect site (:func:`stem2d.data.labels.defect_mask`, the convention of
``data=experimental``'s truth masks). Sample k of a split is a pure function of
``(seed, split, k)``; training indices beyond ``n_train_samples`` (the epoch tag of
:class:`~stem2d.data.pixel_tiles.EpochSampler`) are new crops, so no crop is seen twice.
Each side of a crop is a frame edge with ``edge_probability`` (all splits): a border strip of up
to :data:`~stem2d.data.labels.EDGE_PAD_PX` px is replaced by the reflection of the crop (image and
mask), as :func:`stem2d.predict.pixelmap.predict_frame` pads every frame.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from stem2d import CANONICAL_PIXEL_SIZE_A
from stem2d.data.labels import EDGE_PAD_PX, defect_mask
from stem2d.data.pixel_tiles import EpochSampler
from stem2d.data.splits import split_index
from stem2d.materials import MATERIALS, get_material
from stem2d.models.preprocess import standardize_tiles
from stem2d.sim.augment import AugmentParams
from stem2d.sim.physics import PhysicsRanges
from stem2d.sim.processing import ProcessingRanges
from stem2d.sim.randomized_frame import FrameSettings, RandomizedFrame, randomized_frame

log = logging.getLogger(__name__)

#: Seed stream of the frame crops (distinct from the tile streams of data.simulated).
FRAME_STREAM = 11


def reflect_edges(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, *,
                  probability: float) -> tuple[np.ndarray, np.ndarray]:
    """Make each side of a crop a frame edge with ``probability``: its outer ``w`` px (1 to
    ``EDGE_PAD_PX``) become the reflection of the next ones, in image and mask alike (the
    reflection ``predict_frame`` pads every frame with, so the network learns what an edge is)."""
    for side in range(4):
        if rng.uniform() >= probability:
            continue
        w = int(rng.integers(1, EDGE_PAD_PX + 1))
        image, mask = np.rot90(image, side), np.rot90(mask, side)
        image = np.pad(image[w:], ((w, 0), (0, 0)), mode="reflect")
        mask = np.pad(mask[w:], ((w, 0), (0, 0)), mode="reflect")
        image, mask = np.rot90(image, -side), np.rot90(mask, -side)
    return image, mask


class RandomizedFrameDataset(Dataset):
    """``n_samples`` crops of one split; item k cycles over ``materials`` (k modulo their number).

    Items: ``image`` float32 (1, S, S) standardised, ``mask`` float32 (1, S, S) (1 on defect disks),
    ``material`` int64 (index into ``MATERIALS``).
    """

    def __init__(self, *, split: str, n_samples: int, seed: int, materials: Sequence[str],
                 settings: FrameSettings = FrameSettings(), params: AugmentParams = AugmentParams(),
                 physics: PhysicsRanges = PhysicsRanges(), processing: ProcessingRanges = ProcessingRanges(),
                 label_radius_A: float = 1.0, edge_probability: float = 0.0) -> None:
        if int(n_samples) < 1:
            raise ValueError(f"n_samples={n_samples} must be >= 1")
        self.split, self._split_id = split, split_index(split)
        self.n_samples, self.seed = int(n_samples), int(seed)
        self.materials = tuple(get_material(m) for m in materials)
        self.settings, self.params, self.physics, self.processing = settings, params, physics, processing
        self.label_radius_A, self.edge_probability = float(label_radius_A), float(edge_probability)
        self._material_index = {name: i for i, name in enumerate(MATERIALS)}

    def __len__(self) -> int:
        return self.n_samples

    def rng(self, k: int) -> np.random.Generator:
        """Generator of sample ``k`` (any k >= 0: epochs beyond the first are new crops)."""
        if int(k) < 0:
            raise IndexError(f"index {k} must be >= 0")
        return np.random.default_rng([self.seed, self._split_id, FRAME_STREAM, int(k)])

    def sample(self, k: int) -> tuple[RandomizedFrame, np.ndarray, np.ndarray]:
        """Crop ``k``: the rendered frame, its (possibly edge-reflected) image and bool mask."""
        rng = self.rng(k)
        frame = randomized_frame(self.materials[int(k) % len(self.materials)], settings=self.settings,
                                 params=self.params, physics=self.physics, processing=self.processing, rng=rng)
        mask = defect_mask(frame.image.shape, frame.points, radius_px=self.label_radius_A / CANONICAL_PIXEL_SIZE_A)
        image, mask = reflect_edges(frame.image, mask, rng, probability=self.edge_probability)
        return frame, image, mask

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        frame, image, mask = self.sample(int(k))
        return {"image": torch.from_numpy(standardize_tiles(image)[None].copy()),
                "mask": torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32)[None]),
                "material": torch.tensor(self._material_index[frame.material], dtype=torch.int64)}


class RandomizedFrameDataModule(pl.LightningDataModule):
    """Train/val/test loaders of physics-randomised MX2 frame crops (``conf/data/mx2_frames.yaml``).

    Constructor arguments mirror the YAML: ``materials``, counts and loader settings, the crop
    settings of :class:`~stem2d.sim.randomized_frame.FrameSettings`, the geometry/acquisition
    ranges of :class:`~stem2d.sim.augment.AugmentParams` and the ``physics`` / ``processing``
    range mappings (the keys of ``conf/data/mx2.yaml``). Bad values raise ``ValueError``.
    ``material`` and ``label_method`` are recorded in the model's hyper-parameters only.
    """

    class_names = ("background", "defect")

    def __init__(
        self,
        *,
        materials: Sequence[str] = tuple(MATERIALS),
        material: str = "MX2",
        label_method: str = "truth",
        n_train_samples: int = 4000,
        n_val_samples: int = 128,
        n_test_samples: int = 256,
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 0,
        crop_px: int = 160,
        pixel_size_range_A: Sequence[float] = (0.2, 0.4),
        density_per_nm2: Sequence[float] = (0.3, 2.0),
        min_defect_distance_A: float = 3.0,
        max_dopant_offset_A: float = 0.6,
        class_weights: Mapping[str, float] | None = None,
        label_radius_A: float = 1.0,
        edge_probability: float = 0.3,
        flip_probability: float = 0.5,
        max_shear: float = 0.15,
        zoom_range: Sequence[float] = (0.95, 1.05),
        max_shift_px: float = 1.0,
        dose_range_e_per_A2: Sequence[float] = (1.0e4, 1.1e5),
        max_jitter_px: float = 0.6,
        max_background_fraction: float = 0.3,
        max_detector_sigma_counts: float = 1.0,
        max_blur_px: float = 0.5,
        physics: Mapping[str, Sequence[float]] | None = None,
        processing: Mapping | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.materials = tuple(get_material(str(m)).name for m in materials)
        if not self.materials:
            raise ValueError("data.materials: give at least one material")
        for key, value in (("n_train_samples", n_train_samples), ("n_val_samples", n_val_samples),
                           ("n_test_samples", n_test_samples), ("batch_size", batch_size)):
            if int(value) < 1:
                raise ValueError(f"data.{key}={value} must be >= 1")
        if int(num_workers) < 0 or int(seed) < 0:
            raise ValueError(f"data.num_workers={num_workers} and data.seed={seed} must be >= 0")
        if not 0 <= float(edge_probability) <= 1 or float(label_radius_A) <= 0:
            raise ValueError(f"data.edge_probability={edge_probability} must be in [0, 1] and "
                             f"data.label_radius_A={label_radius_A} > 0")
        self.settings = FrameSettings(crop_px=int(crop_px), pixel_size_range_A=tuple(pixel_size_range_A),
                                      density_per_nm2=tuple(density_per_nm2),
                                      min_defect_distance_A=float(min_defect_distance_A),
                                      max_dopant_offset_A=float(max_dopant_offset_A),
                                      class_weights=tuple((str(k), float(v)) for k, v in (class_weights or {}).items()))
        self.params = AugmentParams.from_config({**self.hparams, "noise_modes": ("dose",)})
        self.physics = PhysicsRanges.from_mapping(physics)
        self.processing = ProcessingRanges.from_mapping(processing)
        self._samples = {"train": int(n_train_samples), "val": int(n_val_samples), "test": int(n_test_samples)}
        self.batch_size, self.num_workers, self.seed = int(batch_size), int(num_workers), int(seed)
        self.label_radius_A, self.edge_probability = float(label_radius_A), float(edge_probability)
        self.datasets: dict[str, RandomizedFrameDataset] = {}

    @property
    def tile_size_px(self) -> int:
        return self.settings.crop_px

    @property
    def pixel_size_A(self) -> float:
        return CANONICAL_PIXEL_SIZE_A

    def make_dataset(self, split: str) -> RandomizedFrameDataset:
        return RandomizedFrameDataset(
            split=split, n_samples=self._samples[split], seed=self.seed, materials=self.materials,
            settings=self.settings, params=self.params, physics=self.physics, processing=self.processing,
            label_radius_A=self.label_radius_A, edge_probability=self.edge_probability)

    def setup(self, stage: str | None = None) -> None:
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": (),
                  None: ("train", "val", "test")}
        if stage not in splits:
            raise ValueError(f"stage={stage!r}: expected one of {list(splits)}")
        for split in splits[stage]:
            self.datasets.setdefault(split, self.make_dataset(split))

    def _loader(self, split: str, sampler=None) -> DataLoader:
        if split not in self.datasets:
            raise RuntimeError(f"call setup() before requesting the {split} dataloader")
        return DataLoader(self.datasets[split], batch_size=self.batch_size, sampler=sampler,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        n = self._samples["train"]
        return self._loader("train", EpochSampler(n, samples_per_epoch=n, seed=self.seed))

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")


__all__ = ["FRAME_STREAM", "RandomizedFrameDataModule", "RandomizedFrameDataset", "reflect_edges"]
