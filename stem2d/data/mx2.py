"""Physics-randomised tiles of the whole MX2 family, for one site-based classifier.

Bases are column scenes (:class:`stem2d.sim.scene.Scene`): one per (class, base index), each on a
material that holds the class (cycled over ``materials``), with its own surroundings and alloy
composition. Every augmented sample renders its base afresh with its own geometry, physics
(contrast, channelling, probe, detector) and processing (:func:`stem2d.sim.randomized.randomized_tile`),
so sample i of a split is a pure function of ``(seed, split, i)``. Splits come from disjoint
seed streams, as in :mod:`stem2d.data.simulated`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from stem2d import CANONICAL_PIXEL_SIZE_A, TILE_SIZE_PX
from stem2d.classes import SITE_CLASS_KINDS, ClassSet
from stem2d.data.simulated import BASE_STREAM, NEIGHBOUR_STREAM, SAMPLE_STREAM
from stem2d.data.splits import SampledTiles, SplitTileDataModule, split_index
from stem2d.materials import MATERIALS, get_material
from stem2d.sim.augment import AugmentParams
from stem2d.sim.physics import PhysicsRanges
from stem2d.sim.processing import PROCESSING_TYPES, ProcessingRanges
from stem2d.sim.randomized import RandomizedTile, randomized_tile
from stem2d.sim.scene import Scene, build_scene

log = logging.getLogger(__name__)

#: Radius of a base scene in angstrom: the 64 px tile's half diagonal at the smallest zoom and
#: largest shear, plus the probe kernel's reach.
SCENE_RADIUS_A = 23.0


@dataclass(frozen=True)
class SceneBases:
    """Base scenes of one split: ``scenes[i]`` has class ``label[i]`` on ``material[i]``."""

    split: str
    scenes: tuple[Scene, ...]
    label: np.ndarray
    material: tuple[str, ...]
    kind: tuple[str | None, ...]

    def __len__(self) -> int:
        return len(self.scenes)


def simulate_scenes(
    classes: ClassSet,
    *,
    materials: Sequence[str],
    n_per_class: int,
    split: str,
    seed: int,
    max_offset_A: float = 0.6,
    neighbour_density_per_nm2: float = 0.25,
    min_neighbour_distance_A: float = 4.0,
    max_dopant_offset_A: float = 0.6,
    second_fraction: float | None = None,
    skip_missing: bool = False,
) -> SceneBases:
    """``n_per_class`` scenes per class, cycling over the materials that hold the class.

    A class no listed material holds raises ``ValueError``. Neighbours (other defects, Poisson
    with ``neighbour_density_per_nm2``) are drawn among the material's defect kinds from a seed
    stream of their own. ``second_fraction`` fixes the alloy composition (None: per scene).
    ``skip_missing`` leaves out, instead of refusing, classes no listed material holds.
    """
    split_id = split_index(split)
    mats = [get_material(m) for m in materials]
    held = {m.name: classes.kinds_in(m) for m in mats}
    area_nm2 = np.pi * (SCENE_RADIUS_A / 10.0) ** 2
    scenes, labels, names, kinds = [], [], [], []
    for c, (name, class_kinds) in enumerate(classes.kinds):
        where = [m for m in mats if held[m.name][name] or not class_kinds]
        if not where and skip_missing:
            continue
        if not where:
            raise ValueError(f"classes.{name}: no kind of it exists in materials {list(materials)}")
        for b in range(n_per_class):
            ent = (int(seed), split_id, BASE_STREAM, c, b)
            rng = np.random.default_rng(np.random.SeedSequence(ent))
            extra = np.random.default_rng(np.random.SeedSequence(ent + (NEIGHBOUR_STREAM,)))
            mat = where[b % len(where)]
            options = held[mat.name][name]
            kind = options[(b // len(where)) % len(options)] if class_kinds else None
            pool = [k for ks in held[mat.name].values() for k in ks]
            n_other = int(extra.poisson(neighbour_density_per_nm2 * area_nm2)) if pool else 0
            others = tuple(pool[int(extra.integers(len(pool)))] for _ in range(n_other))
            scenes.append(build_scene(
                kind, material=mat, radius_A=SCENE_RADIUS_A, rng=rng, max_offset_A=max_offset_A,
                neighbours=others, min_neighbour_distance_A=min_neighbour_distance_A,
                dopant_offset_A=float(extra.uniform(0.0, max_dopant_offset_A)),
                second_fraction=second_fraction))
            labels.append(c)
            names.append(mat.name)
            kinds.append(kind)
    return SceneBases(split, tuple(scenes), np.asarray(labels, dtype=np.int64), tuple(names), tuple(kinds))


class RandomizedTileDataset(SampledTiles):
    """Physics-randomised samples of scene bases; sample i renders base ``i % len(bases)``.

    Items: ``image`` float32 (1, T, T) standardised, ``label`` int64, ``pos`` float32 (2,)
    (NaN for pristine), ``noise`` int64, ``material`` int64 (index into ``MATERIALS``).
    """

    def __init__(self, bases: SceneBases, *, n_samples: int, seed: int,
                 params: AugmentParams = AugmentParams(), physics: PhysicsRanges = PhysicsRanges(),
                 processing: ProcessingRanges = ProcessingRanges()) -> None:
        if n_samples < 1:
            raise ValueError(f"n_samples={n_samples} must be >= 1")
        self.bases, self.n_samples, self.seed = bases, int(n_samples), int(seed)
        self.params, self.physics, self.processing = params, physics, processing
        self._init_stream(SAMPLE_STREAM)
        self._material_index = {name: i for i, name in enumerate(MATERIALS)}

    def sample(self, index: int, *, noise: int | None = None) -> RandomizedTile:
        """Sample ``index`` as numpy arrays; ``noise`` forces a noise mode."""
        rng = self.sample_rng(index)
        return randomized_tile(self.bases.scenes[self.base_index(index)], params=self.params,
                               physics=self.physics, processing=self.processing, rng=rng, noise=noise)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        material = self.bases.material[self.base_index(int(index))]
        return {**self.item(index),
                "material": torch.tensor(self._material_index[material], dtype=torch.int64)}


def _one_thread(_: int) -> None:
    """DataLoader worker init: one BLAS thread (rendering is many small matrix products)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


class MX2DataModule(SplitTileDataModule):
    """Train/val/test loaders of physics-randomised MX2 tiles (``conf/data/mx2.yaml``).

    Constructor arguments mirror the YAML: counts and loader settings, ``materials``, the
    geometry/acquisition ranges of :class:`~stem2d.sim.augment.AugmentParams`, and the
    ``physics`` / ``processing`` range mappings (:class:`~stem2d.sim.physics.PhysicsRanges`,
    :class:`~stem2d.sim.processing.ProcessingRanges`). Bad values raise ``ValueError``.
    """

    worker_init = staticmethod(_one_thread)

    def __init__(
        self,
        classes: Mapping[str, Sequence[str]] | ClassSet | None = None,
        *,
        materials: Sequence[str] = tuple(MATERIALS),
        n_bases_per_class: int = 1024,
        n_val_bases_per_class: int = 16,
        n_test_bases_per_class: int = 32,
        n_train_samples: int = 51200,
        n_val_samples: int = 2560,
        n_test_samples: int = 5120,
        batch_size: int = 128,
        num_workers: int = 1,
        persistent_workers: bool = True,
        seed: int = 0,
        tile_size_px: int = TILE_SIZE_PX,
        pixel_size_A: float = CANONICAL_PIXEL_SIZE_A,
        max_offset_A: float = 0.6,
        flip_probability: float = 0.5,
        max_shear: float = 0.15,
        zoom_range: Sequence[float] = (0.95, 1.05),
        max_shift_px: float = 1.0,
        dose_range_e_per_A2: Sequence[float] = (1.0e4, 1.1e5),
        max_jitter_px: float = 0.6,
        max_background_fraction: float = 0.3,
        max_detector_sigma_counts: float = 1.0,
        max_blur_px: float = 0.5,
        noise_modes: Sequence[str] = ("dose",),
        noise_probabilities: Sequence[float] | None = None,
        neighbour_density_per_nm2: float = 0.25,
        min_neighbour_distance_A: float = 4.0,
        max_dopant_offset_A: float = 0.6,
        physics: Mapping[str, Sequence[float]] | None = None,
        processing: Mapping | None = None,
        skip_missing_classes: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.classes = (classes if isinstance(classes, ClassSet)
                        else ClassSet.from_mapping(SITE_CLASS_KINDS if classes is None else classes))
        self.materials = tuple(get_material(str(m)).name for m in materials)
        if not self.materials:
            raise ValueError("materials: give at least one material")
        counts = {"n_bases_per_class": n_bases_per_class, "n_val_bases_per_class": n_val_bases_per_class,
                  "n_test_bases_per_class": n_test_bases_per_class, "n_train_samples": n_train_samples,
                  "n_val_samples": n_val_samples, "n_test_samples": n_test_samples, "batch_size": batch_size}
        for key, value in counts.items():
            if int(value) < 1:
                raise ValueError(f"{key}={value} must be >= 1")
        if int(num_workers) < 0 or int(seed) < 0:
            raise ValueError(f"num_workers={num_workers} and seed={seed} must be >= 0")
        self.params = AugmentParams.from_config(self.hparams)
        self.physics = PhysicsRanges.from_mapping(physics)
        self.processing = ProcessingRanges.from_mapping(processing)
        self._scene_kw = {"materials": self.materials, "max_offset_A": float(max_offset_A),
                          "neighbour_density_per_nm2": float(neighbour_density_per_nm2),
                          "min_neighbour_distance_A": float(min_neighbour_distance_A),
                          "max_dopant_offset_A": float(max_dopant_offset_A),
                          "skip_missing": bool(skip_missing_classes)}
        self._bases = {"train": int(n_bases_per_class), "val": int(n_val_bases_per_class),
                       "test": int(n_test_bases_per_class)}
        self._samples = {"train": int(n_train_samples), "val": int(n_val_samples),
                         "test": int(n_test_samples)}
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.persistent_workers, self.seed = bool(persistent_workers), int(seed)
        self.datasets: dict[str, RandomizedTileDataset] = {}

    def make_dataset(self, split: str) -> RandomizedTileDataset:
        """Simulate the scenes of one split and wrap them (no caching)."""
        bases = simulate_scenes(self.classes, n_per_class=self._bases[split], split=split,
                                seed=self.seed, **self._scene_kw)
        return RandomizedTileDataset(bases, n_samples=self._samples[split], seed=self.seed,
                                     params=self.params, physics=self.physics,
                                     processing=self.processing)


__all__ = ["MX2DataModule", "PROCESSING_TYPES", "RandomizedTileDataset", "SceneBases", "simulate_scenes"]
