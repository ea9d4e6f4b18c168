"""Synthetic HAADF-STEM movies of a doped MX2 monolayer with beam-driven defect dynamics and truth.

The specimen is one fixed lattice; the defect dynamics (:mod:`stem2d.sim.dynamics`) run first
over all frames (cheap); a frame is rendered only when it is accessed, from the defect state of
that frame and a generator derived from ``(seed, frame)``, so a long movie streams in bounded
memory and frame k is the same whether rendered alone or in sequence.

Geometry: specimen drift moves the lattice by ``drift_px[k]`` (row, col) between frame 0 and
frame k (measured at the middle scan line); within a frame the specimen keeps drifting while
the scan runs (``scan_drift_fraction`` of the drift to the next frame happens during the scan),
which shears/stretches the lattice slightly, as in a real slow-scan frame. Contamination is a
smooth background fixed to the specimen (it drifts with it). Truth positions include all of this.

The settings are in :mod:`stem2d.sim.movie_config`, geometry and rendering in
:mod:`stem2d.sim.movie_render`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict

import numpy as np
import pandas as pd

from stem2d.classes import ClassSet, parse_kind
from stem2d.materials import Material
from stem2d.sim.dynamics import simulate_defects
from stem2d.sim.imaging import HAADF_PEAK_FRACTION
from stem2d.sim.movie_config import MovieConfig
from stem2d.sim.movie_render import MovieGeometry, MovieRenderer, draw_geometry

__all__ = ["MovieConfig", "SyntheticFrames", "SyntheticMovie", "simulate_movie"]

log = logging.getLogger(__name__)

#: Truth table columns (the first five are the movie-truth contract).
TRUTH_COLUMNS = ("frame", "row", "col", "class", "track", "kind", "config")


class SyntheticFrames(Sequence):
    """Lazily rendered frames: ``len``, integer (also negative) index, slice (a list), iteration.

    Each access renders the frame anew (float32 (H, W) detector counts); nothing is cached.
    """

    def __init__(self, renderer: MovieRenderer):
        self._renderer = renderer
        self._n = renderer.cfg.n_frames

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self._n, *self._renderer.geo.shape)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._n))]
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise TypeError(f"frame index must be an int or slice, got {type(index).__name__}")
        i = int(index) + self._n if index < 0 else int(index)
        if not 0 <= i < self._n:
            raise IndexError(f"frame {index} out of range for {self._n} frames")
        return self._renderer.frame(i)

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(self._n))


class SyntheticMovie:
    """A synthetic movie with its ground truth (attribute names as ``stem2d.io.readers.Movie``).

    Attributes
    ----------
    frames : SyntheticFrames
        float32 (H, W) detector counts per frame, rendered on access.
    pixel_size_A : float
        True sampling in angstrom per pixel.
    source : str
        ``"<synthetic WS2 seed=...>"``.
    truth : DataFrame
        Defects inside each frame: ``frame`` (int64), ``row``, ``col`` (float64, frame px),
        ``class`` (str, class set name), ``track`` (int64; persists through hops and dopant
        switches, ends when a vacancy merges into another), ``kind`` (str, e.g. ``V_S2``),
        ``config`` (str: ``"A"``/``"B"`` for dopants, ``""`` otherwise).
    drift_px : ndarray, float64, (T, 2)
        True specimen drift (row, col) of each frame relative to frame 0, at mid-frame.
    hop_length_A : float
        Length of one S-vacancy hop (the lattice constant a).
    params : dict
        The generator's true values (resolved random choices, rates, hop and switching
        probabilities, isolated-vacancy diffusion coefficient); JSON-serialisable.
    history : DataFrame
        Every defect of the specimen (also outside the frame) per frame: the columns of
        :func:`~stem2d.sim.dynamics.simulate_defects`, with ``row_A, col_A`` the atom position
        (B dopants displaced) and ``site_row_A, site_col_A`` the lattice site, specimen angstrom.
    config : MovieConfig
    """

    def __init__(self, *, renderer: MovieRenderer, truth: pd.DataFrame, history: pd.DataFrame,
                 params: dict, source: str):
        self._renderer = renderer
        self.frames = SyntheticFrames(renderer)
        self.pixel_size_A = renderer.geo.pixel_size_A
        self.source = source
        self.truth = truth
        self.history = history
        self.drift_px = renderer.geo.drift_px.copy()
        self.hop_length_A = renderer.cfg.material_obj.a_A
        self.params = params
        self.config = renderer.cfg

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(T, H, W)``."""
        return self.frames.shape

    def clean_frame(self, index: int, *, defects: bool = True) -> np.ndarray:
        """Noise-free render of a frame (float64, pristine W column ~1), without background.

        ``defects=False`` renders the pristine lattice at the same drift.
        """
        i = int(index) + len(self.frames) if index < 0 else int(index)
        if not 0 <= i < len(self.frames):
            raise IndexError(f"frame {index} out of range for {len(self.frames)} frames")
        return self._renderer.clean(i, defects=defects)

    def close(self) -> None:
        """Nothing to release (for compatibility with ``Movie``)."""

    def __enter__(self) -> "SyntheticMovie":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"SyntheticMovie(source={self.source!r}, shape={self.shape}, "
                f"pixel_size_A={self.pixel_size_A:.4f})")


def _class_of(classes: ClassSet, kinds: np.ndarray, material: Material) -> dict[str, str]:
    """The class of each simulated kind: the class holding a kind that means the same defect in
    ``material`` (so generic kinds such as ``Mlight_M`` of conf/classes/sites.yaml match ``Mo_W``)."""

    def key(kind: str) -> tuple:
        k = parse_kind(kind, material)
        return k.site, k.whole_column, k.occupant_z

    by_key = {key(kind): name for name, kinds_ in classes.kinds_in(material).items() for kind in kinds_}
    return {kind: by_key[key(kind)] for kind in set(kinds) if key(kind) in by_key}


def _truth(history: pd.DataFrame, geo: MovieGeometry, classes: ClassSet, material: Material) -> pd.DataFrame:
    frame = history["frame"].to_numpy()
    img = geo.to_image(history[["row_A", "col_A"]].to_numpy(), frame)
    h, w = geo.shape
    inside = ((img[:, 0] >= -0.5) & (img[:, 0] < h - 0.5) & (img[:, 1] >= -0.5) & (img[:, 1] < w - 0.5))
    kinds = history["kind"].to_numpy()
    lookup = _class_of(classes, kinds, material)
    missing = sorted(set(kinds[inside]) - set(lookup))
    if missing:
        log.warning("defect kinds %s are in no class of %s: left out of the truth",
                    missing, list(classes.names))
    keep = inside & np.isin(kinds, list(lookup))
    return pd.DataFrame({
        "frame": frame[keep].astype(np.int64), "row": img[keep, 0], "col": img[keep, 1],
        "class": [lookup[k] for k in kinds[keep]],
        "track": history["track"].to_numpy()[keep].astype(np.int64),
        "kind": kinds[keep], "config": history["config"].to_numpy()[keep],
    }, columns=list(TRUTH_COLUMNS))


def _seed_of(rng) -> int:
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        if rng < 0:
            raise ValueError(f"seed must be >= 0, got {rng}")
        return int(rng)
    return int(np.random.default_rng(rng).integers(2**63))


def simulate_movie(cfg: MovieConfig, rng=None, *, classes: ClassSet | None = None) -> SyntheticMovie:
    """Simulate a movie's specimen, drift and defect dynamics; frames render lazily on access.

    Parameters
    ----------
    cfg : MovieConfig
        All settings (see :class:`MovieConfig`).
    rng : int, Generator or None
        An int is the movie seed (recorded in ``params["seed"]``); a Generator or None draws one.
    classes : ClassSet, optional
        Maps defect kinds to truth classes (default: the WS2 default class set). Kinds in no
        class are left out of the truth, with a warning.

    Returns
    -------
    SyntheticMovie
    """
    if not isinstance(cfg, MovieConfig):
        raise TypeError(f"cfg must be a MovieConfig, got {type(cfg).__name__}")
    seed = _seed_of(rng)
    classes = ClassSet.from_mapping(None) if classes is None else classes
    geo, info = draw_geometry(cfg, np.random.default_rng([seed, 2]))
    rates = cfg.defect_rates()
    history = simulate_defects(geo.columns, material=cfg.material_obj, rates=rates,
                               n_frames=cfg.n_frames, area_nm2=info["specimen_area_nm2"],
                               dopant=cfg.dopant, rng=np.random.default_rng([seed, 0]))
    history[["site_row_A", "site_col_A"]] = history[["row_A", "col_A"]].to_numpy()
    is_b = (history["config"] == "B").to_numpy()
    offset = cfg.mo_b_offset_A * geo.hollow_dirs[history["direction"].to_numpy()[is_b]]
    history.loc[is_b, ["row_A", "col_A"]] += offset
    a = cfg.material_obj.a_A
    params = {"seed": seed, **info, **asdict(rates),
              "mo_b_fraction": rates.mo_b_fraction, "mo_b_offset_A": cfg.mo_b_offset_A,
              "hop_length_A": a,
              "s_vacancy_diffusion_A2_per_frame": rates.s_vacancy_hop_prob * a**2 / 4.0,
              "w_peak_counts": cfg.dose_e_per_A2 * info["pixel_size_A"] ** 2
              * HAADF_PEAK_FRACTION,
              "classes": classes.to_dict()}
    renderer = MovieRenderer(cfg, geo, history, seed)
    truth = _truth(history, geo, classes, cfg.material_obj)
    log.info("synthetic %s movie: %d frames of %s px at %.3f A/px, %d truth points",
             cfg.material, cfg.n_frames, cfg.frame_shape, geo.pixel_size_A, len(truth))
    return SyntheticMovie(renderer=renderer, truth=truth, history=history, params=params,
                          source=f"<synthetic {cfg.material} seed={seed}>")
