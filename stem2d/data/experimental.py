"""Tiles of labelled movie frames for the pixel-wise defect network (``data=experimental``).

The frames of a movie file (or of synthetic movies, ``movie=None``) are brought to the canonical
0.3 A/px, labelled (Fourier labels of :mod:`stem2d.lattice`, or the simulator's truth) and turned
into defect masks (a disk at every defect site). Each frame is split by region: the bottom
``val_fraction`` stripe gives the validation (and test) tiles, the rest the training tiles, so
no pixel of a validation tile is ever in a training tile. Training tiles are augmented on the
fly; a sample's randomness is a pure function of ``(seed, epoch, tile index)``.

Labelling is in :mod:`stem2d.data.labels`, tiling and augmentation in :mod:`stem2d.data.pixel_tiles`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
from torch.utils.data import DataLoader

from stem2d import CANONICAL_PIXEL_SIZE_A
from stem2d.data.labels import (  # noqa: F401
    EDGE_PAD_PX,
    LABEL_METHODS,
    LabelledFrame,
    defect_mask,
    label_frame,
)
from stem2d.data.pixel_tiles import (
    EpochSampler,
    TileDataset,
    augment_pair,
    region_split,
    tile_origins,
)
from stem2d.io.readers import read_movie
from stem2d.lattice.scale import measure_pixel_size
from stem2d.materials import get_material

log = logging.getLogger(__name__)

__all__ = [
    "LABEL_METHODS",
    "ExperimentalDataModule",
    "LabelledFrame",
    "TileDataset",
    "augment_pair",
    "defect_mask",
    "region_split",
    "tile_origins",
]

_TILE_MULTIPLE = 16


def _plain(obj):
    """Mappings and sequences (e.g. from a config) as plain dicts, tuples and scalars."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, Sequence) and not isinstance(obj, str):
        return tuple(_plain(v) for v in obj)
    return obj


def _synthetic_movies(config: Mapping | None, *, n_movies: int, n_frames: int, seed: int,
                      dose_range_e_per_A2: Sequence[float] | None, probe_fwhm_range_A: Sequence[float] | None):
    """``n_movies`` synthetic movies (seeds ``seed, seed + 1, ...``); doses log-uniform and probe
    sizes uniform in their ranges when given."""
    from stem2d.sim.movie import (  # heavy; only for synthetic data
        MovieConfig,
        simulate_movie,
    )

    movies = []
    for i in range(n_movies):
        kw = dict(config or {})
        kw.setdefault("n_frames", n_frames)
        if dose_range_e_per_A2 is not None:
            lo, hi = (float(v) for v in dose_range_e_per_A2)
            kw["dose_e_per_A2"] = float(np.exp(np.random.default_rng([seed, i, 5]).uniform(np.log(lo), np.log(hi))))
        if probe_fwhm_range_A is not None:
            kw["probe_fwhm_A"] = float(np.random.default_rng([seed, i, 6]).uniform(*probe_fwhm_range_A))
        try:
            cfg = MovieConfig(**kw)
        except TypeError as err:
            raise ValueError(f"data.synthetic: {err}") from None
        movies.append(simulate_movie(cfg, seed + i))
    return movies


class ExperimentalDataModule(pl.LightningDataModule):
    """Labelled frames of one movie (or of synthetic movies) as tiles for :class:`PixelPredictor`.

    Parameters
    ----------
    movie : str or None
        Movie file (any format of :func:`stem2d.io.readers.read_movie`); None: synthetic movies.
    label_frames : sequence of int, default [0]
        Frames to label and tile (negative counts from the end).
    label_method : {"fourier", "lattice", "truth"}
        Maksov high-pass labels, lattice-residual labels, or the simulator's truth (synthetic only).
    test_label_method : str, optional
        Labels of the test tiles (default: ``label_method``; ``"truth"`` scores a Fourier-trained
        network against the truth of a synthetic movie).
    material : str, default "WS2"
    pixel_size_A : float, optional
        Sampling of the movie; default: the file's metadata checked against (and replaced by) the
        lattice measurement, or the simulator's value.
    synthetic : mapping, optional
        :class:`~stem2d.sim.movie.MovieConfig` fields for ``movie=None`` (default config otherwise).
    n_movies, movie_seed : int, default 1, 0
        Synthetic movies (seeds ``movie_seed + i``; random pixel size and orientation each unless
        ``synthetic`` fixes them).
    dose_range_e_per_A2 : (float, float), optional
        Draw each synthetic movie's dose log-uniformly in this range.
    probe_fwhm_range_A : (float, float), optional
        Draw each synthetic movie's probe size (FWHM, A) uniformly in this range.
    label_radius_A : float, default 1.0
        Radius of the mask disk at each defect site.
    tile_size, stride : int, default 256, 32
        Training tiles (side a multiple of 16) and their spacing, px at 0.3 A/px.
    val_fraction : float, default 0.25
        Height fraction of the bottom validation stripe of every frame.
    samples_per_epoch : int, optional
        Training tiles drawn per epoch (default: every tile once).
    batch_size, num_workers, seed : int
    augment : mapping, optional
        Keyword arguments of :func:`augment_pair` (None: no augmentation).
    """

    def __init__(
        self,
        movie: str | None = None,
        *,
        label_frames: Sequence[int] = (0,),
        label_method: str = "fourier",
        test_label_method: str | None = None,
        material: str = "WS2",
        pixel_size_A: float | None = None,
        synthetic: Mapping | None = None,
        n_movies: int = 1,
        movie_seed: int = 0,
        dose_range_e_per_A2: Sequence[float] | None = None,
        probe_fwhm_range_A: Sequence[float] | None = None,
        label_radius_A: float = 1.0,
        tile_size: int = 256,
        stride: int = 32,
        val_fraction: float = 0.25,
        samples_per_epoch: int | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 0,
        augment: Mapping | None = None,
    ) -> None:
        super().__init__()
        for key, method in (("label_method", label_method), ("test_label_method", test_label_method)):
            if method is not None and method not in self.label_methods:
                raise ValueError(f"data.{key}={method!r}: choose one of {list(self.label_methods)}")
        if int(tile_size) % _TILE_MULTIPLE or int(tile_size) < 2 * _TILE_MULTIPLE:
            raise ValueError(f"data.tile_size={tile_size} must be a multiple of {_TILE_MULTIPLE} and >= 32")
        if int(stride) < 1:
            raise ValueError(f"data.stride={stride} must be >= 1")
        if movie is not None and not Path(movie).exists():
            raise FileNotFoundError(f"data.movie={str(movie)!r} does not exist")
        self.save_hyperparameters(logger=False)
        self._augment = None if augment is None else _plain(augment)
        self._synthetic = None if synthetic is None else _plain(synthetic)
        self.material = get_material(material)
        self._frames: dict[str, list[LabelledFrame]] = {}
        self.datasets: dict[str, TileDataset] = {}
        self._tile_cache: dict[tuple, int] = {}

    class_names = ("background", "defect")
    #: Accepted ``label_method`` values (a subclass that labels otherwise extends it).
    label_methods: tuple[str, ...] = LABEL_METHODS

    @property
    def tile_size_px(self) -> int:
        return int(self.hparams.tile_size)

    @property
    def pixel_size_A(self) -> float:
        return CANONICAL_PIXEL_SIZE_A

    def _movies(self) -> list:
        h = self.hparams
        if h.movie is None:
            n_frames = max(max(i if i >= 0 else -i for i in h.label_frames) + 1, 1)
            return _synthetic_movies(self._synthetic, n_movies=int(h.n_movies), n_frames=n_frames,
                                     seed=int(h.movie_seed), dose_range_e_per_A2=h.dose_range_e_per_A2,
                                     probe_fwhm_range_A=h.probe_fwhm_range_A)
        return [read_movie(h.movie, lazy=True)]

    def _pixel_size(self, movie, frame: np.ndarray) -> float:
        if self.hparams.pixel_size_A is not None:
            return float(self.hparams.pixel_size_A)
        if hasattr(movie, "truth"):
            return float(movie.pixel_size_A)
        return measure_pixel_size(frame, self.material, metadata_pixel_size_A=movie.pixel_size_A).pixel_size_A

    def _label_all(self, method: str) -> list[LabelledFrame]:
        out = []
        for movie in self._movies():
            with movie:
                out += self._label_movie(movie, method)
        return out

    def _label_movie(self, movie, method: str) -> list[LabelledFrame]:
        """Label ``label_frames`` of one movie (its pixel size from the first of them)."""
        h = self.hparams
        n = len(movie.frames)
        out: list[LabelledFrame] = []
        pixel_size = None
        for k in h.label_frames:
            if not -n <= k < n:
                raise ValueError(f"data.label_frames: frame {k} out of range for {movie.source} ({n} frames)")
            frame = movie.frames[k]
            pixel_size = pixel_size or self._pixel_size(movie, frame)
            truth = None
            if hasattr(movie, "truth"):
                truth = movie.truth.loc[movie.truth["frame"] == k % n, ["row", "col"]].to_numpy()
            out.append(label_frame(frame, method=method, pixel_size_A=pixel_size, material=self.material,
                                   truth=truth, radius_A=h.label_radius_A, source=f"{movie.source}[{k}]"))
            log.info("labelled %s with %s: %d defects", out[-1].source, method, out[-1].n_points)
        return out

    def _train_tile(self, frames: list[LabelledFrame]) -> int:
        """Training tile side: ``tile_size``, or less (with a warning) where frames are smaller."""
        key = tuple(f.image.shape for f in frames)
        if key not in self._tile_cache:
            self._tile_cache[key] = self._fit_tile(frames)
        return self._tile_cache[key]

    def _regions(self, frame: LabelledFrame, val_tile: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """Train and val row ranges in padded coordinates: the train region owns the top padding,
        the val stripe the bottom one (each reflects only its own rows)."""
        (_, t1), (v0, _) = region_split(frame.shape[0], val_fraction=self.hparams.val_fraction, val_tile=val_tile)
        return (0, frame.pad + t1), (frame.pad + v0, frame.image.shape[0])

    def _fit_tile(self, frames: list[LabelledFrame]) -> int:
        val_tile = self._val_tile(frames)
        fits = min(min(self._regions(f, val_tile)[0][1], f.image.shape[1]) for f in frames)
        tile = min(self.tile_size_px, fits // _TILE_MULTIPLE * _TILE_MULTIPLE)
        if tile < self.tile_size_px:
            log.warning("data.tile_size=%d does not fit the training region of the smallest labelled "
                        "frame (%d px at 0.3 A/px): using %d px tiles", self.tile_size_px, fits, tile)
        return tile

    def _split(self, frames: list[LabelledFrame], part: str) -> list[tuple[int, int, int]]:
        h = self.hparams
        tile = self._train_tile(frames)
        val_tile = self._val_tile(frames)
        origins = []
        for f, frame in enumerate(frames):
            train_rows, val_rows = self._regions(frame, val_tile)
            width = frame.image.shape[1]
            if part == "train":
                origins += [(f, r, c) for r, c in tile_origins(train_rows, width, tile=tile, stride=int(h.stride))]
            else:
                origins += [(f, r, c) for r, c in tile_origins(val_rows, width, tile=val_tile, stride=val_tile)]
        if not origins or tile < 2 * _TILE_MULTIPLE:
            raise ValueError(f"data: no {part} tile of {tile if part == 'train' else val_tile} px fits the "
                             f"labelled frames (canonical sizes {[fr.shape for fr in frames]}); "
                             f"lower data.tile_size or data.val_fraction")
        return origins

    def _val_tile(self, frames: list[LabelledFrame]) -> int:
        """Validation tile side: the training tile, or less where the stripe is thinner."""
        smallest = min(round(self.hparams.val_fraction * f.shape[0]) for f in frames)
        return max(_TILE_MULTIPLE * 2, min(self.tile_size_px, smallest // _TILE_MULTIPLE * _TILE_MULTIPLE))

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        if "train" not in self._frames:
            self._frames["train"] = self._label_all(h.label_method)
        frames = self._frames["train"]
        if stage in (None, "fit"):
            self.datasets["train"] = TileDataset(frames, self._split(frames, "train"), tile=self._train_tile(frames),
                                                 seed=int(h.seed), augment=self._augment)
        if stage in (None, "fit", "validate"):
            self.datasets["val"] = TileDataset(frames, self._split(frames, "val"), tile=self._val_tile(frames),
                                               seed=int(h.seed))
        if stage in (None, "test"):
            method = h.test_label_method or h.label_method
            if method not in self._frames:
                self._frames[method] = frames if method == h.label_method else self._label_all(method)
            test = self._frames[method]
            self.datasets["test"] = TileDataset(test, self._split(test, "val"), tile=self._val_tile(test),
                                                seed=int(h.seed))

    def train_dataloader(self) -> DataLoader:
        ds = self.datasets["train"]
        sampler = EpochSampler(len(ds), samples_per_epoch=self.hparams.samples_per_epoch, seed=int(self.hparams.seed))
        return DataLoader(ds, batch_size=self.hparams.batch_size, sampler=sampler,
                          num_workers=self.hparams.num_workers, drop_last=len(sampler) > self.hparams.batch_size)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.datasets["val"], batch_size=self.hparams.batch_size, num_workers=self.hparams.num_workers)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.datasets["test"], batch_size=self.hparams.batch_size, num_workers=self.hparams.num_workers)
