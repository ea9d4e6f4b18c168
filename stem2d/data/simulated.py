"""Simulated training data: clean base simulations per class, augmented on the fly.

Like the original study (45 simulations, ~51k augmented images) but split by base simulation:
train, val and test bases come from disjoint seed streams
``SeedSequence([seed, split_id, BASE_STREAM, class_index, base_index])``, and augmented sample i
of a split is a pure function of ``(seed, split_id, i)`` (``[seed, split_id, SAMPLE_STREAM, i]``),
whatever the worker or epoch. The stream tags are non-zero because SeedSequence ignores
trailing zeros (``[1, 2]`` and ``[1, 2, 0]`` give the same stream).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from stem2d import CANONICAL_PIXEL_SIZE_A, TILE_SIZE_PX
from stem2d.classes import ClassSet
from stem2d.data.splits import SampledTiles, SplitTileDataModule, split_index
from stem2d.materials import Material, get_material
from stem2d.sim.augment import NOISE_MODES, AugmentedTile, AugmentParams, augment_tile
from stem2d.sim.imaging import Probe
from stem2d.sim.tiles import check_tile_size, sample_kind, simulate_tile

log = logging.getLogger(__name__)

BASE_STREAM, SAMPLE_STREAM, NEIGHBOUR_STREAM = 1, 2, 3


@dataclass(frozen=True)
class TileBases:
    """Clean base simulations of one split.

    Attributes
    ----------
    split : str
    clean : ndarray, float64, (N, S, S); a pristine W column peaks at ~1.
    label : ndarray, int64, (N,); class index.
    pos : ndarray, float64, (N, 2); defect (row, col) in base pixels, NaN for pristine.
    kind : tuple of (str or None); the defect kind of each base.
    entropy : tuple of tuple of int; the SeedSequence entropy each base was simulated from.
    pixel_size_A : float
    """

    split: str
    clean: np.ndarray
    label: np.ndarray
    pos: np.ndarray
    kind: tuple[str | None, ...]
    entropy: tuple[tuple[int, ...], ...]
    pixel_size_A: float

    def __len__(self) -> int:
        return len(self.label)

    @property
    def size_px(self) -> int:
        return int(self.clean.shape[-1])

    def base(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Clean image (S, S) and defect position (2,) of base ``index``."""
        return self.clean[index], self.pos[index]


@dataclass(frozen=True)
class Neighbours:
    """What surrounds the centre defect of a base tile, as in a window cut from a movie.

    Attributes
    ----------
    density_per_nm2 : float
        Mean density of other defects (Poisson count over the base area); each one's class is
        drawn uniformly among the defect classes, then its kind among the class's kinds.
    min_distance_A : float
        No other defect closer than this to the centre site.
    max_dopant_offset_A : float
        A metal-site dopant at the centre is displaced towards a hollow site by a distance
        drawn uniformly in [0, max] (Mo configuration B is 0.5 A).
    """

    density_per_nm2: float = 0.0
    min_distance_A: float = 4.0
    max_dopant_offset_A: float = 0.0

    def __post_init__(self) -> None:
        for key in ("density_per_nm2", "min_distance_A", "max_dopant_offset_A"):
            if not getattr(self, key) >= 0:
                raise ValueError(f"{key}={getattr(self, key)} must be >= 0")

    def draw(self, classes: ClassSet, *, area_nm2: float, rng=None) -> dict:
        """Keyword arguments of :func:`~stem2d.sim.tiles.simulate_tile` for one base."""
        rng = np.random.default_rng(rng)
        defect_classes = [name for name, kinds in classes.kinds if kinds]
        n = int(rng.poisson(self.density_per_nm2 * area_nm2)) if defect_classes else 0
        names = [defect_classes[int(rng.integers(len(defect_classes)))] for _ in range(n)]
        return {
            "neighbours": tuple(sample_kind(name, classes, rng) for name in names),
            "min_neighbour_distance_A": self.min_distance_A,
            "dopant_offset_A": float(rng.uniform(0.0, self.max_dopant_offset_A)),
        }


def simulate_bases(
    classes: ClassSet,
    *,
    material: Material,
    n_per_class: int,
    split: str,
    seed: int,
    size_px: int = 112,
    pixel_size_A: float = CANONICAL_PIXEL_SIZE_A,
    max_offset_px: float = 2.0,
    probe_fwhm_range_A: tuple[float, float] = (0.8, 1.1),
    z_exponent_range: tuple[float, float] = (1.6, 1.9),
    neighbours: Neighbours = Neighbours(),
) -> TileBases:
    """Simulate ``n_per_class`` clean base tiles of every class for one split.

    Each base has its own lattice rotation, sub-pixel defect offset (within ``max_offset_px`` of
    the centre), probe FWHM and Z-contrast exponent (uniform in the ranges); a class's defect
    kinds take turns (base b gets kind b mod n_kinds), so multi-kind classes stay balanced.
    ``neighbours`` adds the surroundings of a movie window (other defects, displaced dopants);
    its random numbers come from their own stream, so the default leaves the bases unchanged.
    """
    lazy = LazyTileBases(classes, material=material, n_per_class=n_per_class, split=split,
                         seed=seed, size_px=size_px, pixel_size_A=pixel_size_A,
                         max_offset_px=max_offset_px, probe_fwhm_range_A=probe_fwhm_range_A,
                         z_exponent_range=z_exponent_range, neighbours=neighbours)
    clean, pos = zip(*(lazy.base(i) for i in range(len(lazy))))
    return TileBases(split, np.stack(clean), lazy.label, np.stack(pos), lazy.kind, lazy.entropy,
                     pixel_size_A)


class LazyTileBases:
    """The bases of :func:`simulate_bases`, each simulated on first use and then kept.

    Same values as :class:`TileBases` (base ``c * n_per_class + b`` is base b of class c, from its
    own seed), but a run that draws a few batches (``debug=fdr``, a smoke test) simulates only
    the bases those batches use; a full epoch touches all of them inside the data workers.
    Arguments as :func:`simulate_bases`.
    """

    def __init__(self, classes: ClassSet, *, material: Material, n_per_class: int, split: str,
                 seed: int, size_px: int = 112, pixel_size_A: float = CANONICAL_PIXEL_SIZE_A,
                 max_offset_px: float = 2.0,
                 probe_fwhm_range_A: tuple[float, float] = (0.8, 1.1),
                 z_exponent_range: tuple[float, float] = (1.6, 1.9),
                 neighbours: Neighbours = Neighbours()) -> None:
        split_id = split_index(split)
        self.split, self.pixel_size_A, self.size_px = split, float(pixel_size_A), int(size_px)
        self.n_per_class, self._classes, self._material = int(n_per_class), classes, material
        self._kw = {"max_offset_px": max_offset_px, "probe_fwhm_range_A": probe_fwhm_range_A,
                    "z_exponent_range": z_exponent_range, "neighbours": neighbours}
        n_classes = len(classes.kinds)
        self.label = np.repeat(np.arange(n_classes, dtype=np.int64), self.n_per_class)
        self.kind = tuple((kinds[b % len(kinds)] if kinds else None)
                          for _, kinds in classes.kinds for b in range(self.n_per_class))
        self.entropy = tuple((int(seed), split_id, BASE_STREAM, c, b)
                             for c in range(n_classes) for b in range(self.n_per_class))
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.label)

    def base(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Clean image (S, S) float64 and defect (row, col) (2,) float64 of base ``index``."""
        if index not in self._cache:
            self._cache[index] = self._simulate(int(index))
        return self._cache[index]

    def _simulate(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        ent, kind, kw = self.entropy[index], self.kind[index], self._kw
        rng = np.random.default_rng(np.random.SeedSequence(ent))
        extra = np.random.default_rng(np.random.SeedSequence(ent + (NEIGHBOUR_STREAM,)))
        area_nm2 = (self.size_px * self.pixel_size_A / 10.0) ** 2
        probe = Probe(fwhm_A=rng.uniform(*kw["probe_fwhm_range_A"]))
        image, truth = simulate_tile(
            kind, material=self._material, rng=rng, size_px=self.size_px,
            pixel_size_A=self.pixel_size_A, probe=probe,
            z_exponent=rng.uniform(*kw["z_exponent_range"]), max_offset_px=kw["max_offset_px"],
            **kw["neighbours"].draw(self._classes, area_nm2=area_nm2, rng=extra))
        return image, np.array([truth.row, truth.col], dtype=np.float64)


class SimulatedTileDataset(SampledTiles):
    """Augmented samples of a set of bases; sample i uses base ``i % len(bases)``.

    Items are dicts of tensors: ``image`` float32 (1, T, T) standardised, ``label`` int64,
    ``pos`` float32 (2,) defect (row, col) in tile pixels (NaN for pristine), ``noise`` int64.
    """

    def __init__(self, bases: TileBases | LazyTileBases, *, n_samples: int, seed: int,
                 params: AugmentParams = AugmentParams()) -> None:
        if n_samples < 1:
            raise ValueError(f"n_samples={n_samples} must be >= 1")
        need = params.min_base_size_px()
        if bases.size_px < need:
            raise ValueError(
                f"base_size_px={bases.size_px} is too small for a {params.tile_size_px} px "
                f"tile with max_shear={params.max_shear}, zoom_range={tuple(params.zoom_range)}, "
                f"max_shift_px={params.max_shift_px}: need >= {need}")
        if not np.isclose(bases.pixel_size_A, params.pixel_size_A):
            raise ValueError(f"pixel_size_A: bases {bases.pixel_size_A} != augmentation "
                             f"{params.pixel_size_A}")
        self.bases, self.n_samples, self.seed, self.params = bases, int(n_samples), int(seed), params
        self._init_stream(SAMPLE_STREAM)

    def sample(self, index: int, *, noise: int | None = None) -> AugmentedTile:
        """Sample ``index`` as numpy arrays (clean tile too); ``noise`` forces a noise mode."""
        rng = self.sample_rng(index)
        clean, pos = self.bases.base(self.base_index(index))
        return augment_tile(clean, pos, params=self.params, rng=rng, noise=noise)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.item(index)


def make_split(
    classes: ClassSet,
    *,
    split: str,
    seed: int,
    n_bases_per_class: int,
    n_samples: int,
    material: Material,
    base_size_px: int = 112,
    params: AugmentParams = AugmentParams(),
    max_offset_px: float = 2.0,
    probe_fwhm_range_A: tuple[float, float] = (0.8, 1.1),
    z_exponent_range: tuple[float, float] = (1.6, 1.9),
    neighbours: Neighbours = Neighbours(),
) -> SimulatedTileDataset:
    """Simulate the bases of one split and wrap them in a :class:`SimulatedTileDataset`.

    E.g. fresh held-out tiles for a shipped model:
    ``make_split(ClassSet.from_mapping(None), split="test", seed=2024, n_bases_per_class=8,
    n_samples=2000, material=get_material("WS2"))``.
    """
    bases = simulate_bases(classes, material=material, n_per_class=n_bases_per_class, split=split,
                           seed=seed, size_px=base_size_px, pixel_size_A=params.pixel_size_A,
                           max_offset_px=max_offset_px, probe_fwhm_range_A=probe_fwhm_range_A,
                           z_exponent_range=z_exponent_range, neighbours=neighbours)
    return SimulatedTileDataset(bases, n_samples=n_samples, seed=seed, params=params)


def _positive_range(key: str, value: Sequence[float]) -> tuple[float, float]:
    lo, hi = (float(v) for v in value)
    if not 0 < lo <= hi:
        raise ValueError(f"{key}={[lo, hi]} must be an ordered (min, max) with min > 0")
    return lo, hi


class SimulatedDataModule(SplitTileDataModule):
    """Train/val/test loaders of augmented simulated tiles (see docs/architecture.md).

    Nothing is written to disk (``prepare_data`` is Lightning's no-op); ``setup(stage)``
    prepares only the splits that stage needs, and each base is simulated when a sample first
    uses it (a few ms each; :class:`LazyTileBases`), so a one-batch run simulates a few hundred. Constructor arguments mirror
    ``conf/data/simulated.yaml``; the augmentation ones are those of
    :class:`stem2d.sim.augment.AugmentParams`. Bad values raise ``ValueError`` naming the key.
    """

    def __init__(
        self,
        classes: Mapping[str, Sequence[str]] | ClassSet | None = None,
        *,
        material: str = "WS2",
        n_bases_per_class: int = 9,
        n_val_bases_per_class: int = 4,
        n_test_bases_per_class: int = 8,
        n_train_samples: int = 51125,
        n_val_samples: int = 2560,
        n_test_samples: int = 5120,
        batch_size: int = 128,
        num_workers: int = 1,
        persistent_workers: bool = True,
        seed: int = 0,
        tile_size_px: int = TILE_SIZE_PX,
        base_size_px: int = 112,
        pixel_size_A: float = CANONICAL_PIXEL_SIZE_A,
        max_offset_px: float = 2.0,
        probe_fwhm_range_A: Sequence[float] = (0.8, 1.1),
        z_exponent_range: Sequence[float] = (1.6, 1.9),
        flip_probability: float = 0.5,
        max_shear: float = 0.1,
        zoom_range: Sequence[float] = (0.95, 1.05),
        max_shift_px: float = 1.0,
        dose_range_e_per_A2: Sequence[float] = (3.4e3, 1.1e5),
        max_jitter_px: float = 0.5,
        max_background_fraction: float = 0.3,
        max_detector_sigma_counts: float = 1.0,
        max_blur_px: float = 0.5,
        noise_modes: Sequence[str] = NOISE_MODES,
        noise_probabilities: Sequence[float] | None = None,
        neighbour_density_per_nm2: float = 0.25,
        min_neighbour_distance_A: float = 4.0,
        max_dopant_offset_A: float = 0.6,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.classes = classes if isinstance(classes, ClassSet) else ClassSet.from_mapping(classes)
        self.material = get_material(str(material))
        self.classes.validate(self.material)
        counts = {"n_bases_per_class": n_bases_per_class, "n_val_bases_per_class": n_val_bases_per_class,
                  "n_test_bases_per_class": n_test_bases_per_class, "n_train_samples": n_train_samples,
                  "n_val_samples": n_val_samples, "n_test_samples": n_test_samples,
                  "batch_size": batch_size}
        for key, value in counts.items():
            if int(value) < 1:
                raise ValueError(f"{key}={value} must be >= 1")
        if int(num_workers) < 0:
            raise ValueError(f"num_workers={num_workers} must be >= 0")
        if int(seed) < 0:
            raise ValueError(f"seed={seed} must be >= 0")
        if not pixel_size_A > 0:
            raise ValueError(f"pixel_size_A={pixel_size_A} must be > 0")
        try:
            check_tile_size(int(tile_size_px), float(pixel_size_A), self.material)
        except ValueError as err:
            raise ValueError(f"tile_size_px={tile_size_px}: {err}") from None
        for key, value in {"max_offset_px": max_offset_px,
                           "neighbour_density_per_nm2": neighbour_density_per_nm2,
                           "min_neighbour_distance_A": min_neighbour_distance_A,
                           "max_dopant_offset_A": max_dopant_offset_A}.items():
            if not float(value) >= 0:
                raise ValueError(f"{key}={value} must be >= 0")
        self.params = AugmentParams.from_config(self.hparams)
        if int(base_size_px) < self.params.min_base_size_px():
            raise ValueError(f"base_size_px={base_size_px} is too small for the augmentation: need "
                             f">= {self.params.min_base_size_px()}")
        self._sim = {"material": self.material, "base_size_px": int(base_size_px),
                     "params": self.params, "max_offset_px": float(max_offset_px),
                     "probe_fwhm_range_A": _positive_range("probe_fwhm_range_A", probe_fwhm_range_A),
                     "z_exponent_range": _positive_range("z_exponent_range", z_exponent_range),
                     "neighbours": Neighbours(float(neighbour_density_per_nm2),
                                              float(min_neighbour_distance_A),
                                              float(max_dopant_offset_A))}
        self._bases = {"train": int(n_bases_per_class), "val": int(n_val_bases_per_class),
                       "test": int(n_test_bases_per_class)}
        self._samples = {"train": int(n_train_samples), "val": int(n_val_samples),
                         "test": int(n_test_samples)}
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.persistent_workers, self.seed = bool(persistent_workers), int(seed)
        self.datasets: dict[str, SimulatedTileDataset] = {}

    def make_dataset(self, split: str) -> SimulatedTileDataset:
        """The dataset of one split; each base is simulated when a sample first uses it."""
        sim = dict(self._sim)
        material, params, size = sim.pop("material"), sim.pop("params"), sim.pop("base_size_px")
        bases = LazyTileBases(self.classes, material=material, n_per_class=self._bases[split], split=split,
                              seed=self.seed, size_px=size, pixel_size_A=params.pixel_size_A, **sim)
        return SimulatedTileDataset(bases, n_samples=self._samples[split], seed=self.seed, params=params)
