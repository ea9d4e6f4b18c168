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
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd
from scipy import ndimage

from stem2d.classes import ClassSet, parse_kind
from stem2d.materials import ATOMIC_NUMBER, Material, get_material
from stem2d.sim.dynamics import DefectRates, drift_path, kind_names, simulate_defects
from stem2d.sim.imaging import (HAADF_PEAK_FRACTION, Acquisition, Probe, acquire, render_haadf,
                                smooth_background)
from stem2d.sim.lattice import Columns, apply_defect, lattice_vectors_A, mx2_columns

__all__ = ["MovieConfig", "SyntheticFrames", "SyntheticMovie", "simulate_movie"]

log = logging.getLogger(__name__)

#: Truth table columns (the first five are the movie-truth contract).
TRUTH_COLUMNS = ("frame", "row", "col", "class", "track", "kind", "config")

_POSITIVE = ("dose_e_per_A2", "probe_fwhm_A", "probe_tail_fwhm_A", "z_exponent",
             "background_length_A")
_NON_NEGATIVE = ("detector_sigma_counts", "jitter_px", "background_fraction",
                 "drift_speed_px_per_frame", "drift_walk_px_per_frame", "max_drift_px",
                 "mo_b_offset_A")
_UNIT_INTERVAL = {"probe_tail_fraction": False, "jitter_correlation": False,
                  "scan_drift_fraction": True}  # name: 1 allowed
_MAX_PIXEL_SIZE_A = 1.0  # coarser sampling cannot resolve the 1.84 A W-S2 distance
_MIN_FRAME_PX = 32


def _number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class MovieConfig:
    """Settings of a synthetic movie; every quantity carries its unit in its name.

    Specimen and sampling
        material ("WS2"), dopant ("Mo", on metal sites), n_frames (20), frame_shape ((512, 512)
        px), pixel_size_A (None: uniform in pixel_size_range_A = (0.15, 0.35) A/px),
        rotation_deg (None: uniform in [0, 360) deg).
    Imaging (see :mod:`stem2d.sim.imaging`)
        dose_e_per_A2 (5e4 per frame: a W column peaks at dose * pixel_size^2 *
        HAADF_PEAK_FRACTION = 156 counts at 0.25 A/px), probe_fwhm_A (0.9), probe_tail_fraction
        (0.1), probe_tail_fwhm_A (3.0), z_exponent (1.7), detector_sigma_counts (1.0),
        jitter_px (0.3 px RMS scan-line jitter), jitter_correlation (0.5), background_fraction
        (0.1 of the W peak: specimen-fixed contamination), background_length_A (20).
    Drift (see :func:`stem2d.sim.dynamics.drift_path`)
        drift_speed_px_per_frame (1.0), drift_walk_px_per_frame (0.3 px RMS per axis),
        max_drift_px (40), scan_drift_fraction (1.0: the specimen drifts during the scan as
        between frames, so a frame is sheared by the drift to the next one; 0: rigid frames).
    Defect dynamics (see :class:`stem2d.sim.dynamics.DefectRates`, same names and defaults)
        mo_density_per_nm2, s_vacancy_density_per_nm2, w_vacancy_density_per_nm2,
        w_antisite_density_per_nm2, s_vacancy_creation_per_nm2_frame,
        w_vacancy_creation_per_nm2_frame, w_antisite_creation_per_nm2_frame,
        s_vacancy_hop_prob, s_vacancy_sticky_factor, mo_switch_prob_ab, mo_switch_prob_ba;
        mo_b_offset_A (0.5): displacement of a configuration-B dopant from its metal site
        towards a hollow site (hexagon centre, 1.84 A away).

    Raises
    ------
    ValueError
        Naming the field and the value, for any value out of range.
    """

    material: str = "WS2"
    dopant: str = "Mo"
    n_frames: int = 20
    frame_shape: tuple[int, int] = (512, 512)
    pixel_size_A: float | None = None
    pixel_size_range_A: tuple[float, float] = (0.15, 0.35)
    rotation_deg: float | None = None
    dose_e_per_A2: float = 5e4
    probe_fwhm_A: float = 0.9
    probe_tail_fraction: float = 0.1
    probe_tail_fwhm_A: float = 3.0
    z_exponent: float = 1.7
    detector_sigma_counts: float = 1.0
    jitter_px: float = 0.3
    jitter_correlation: float = 0.5
    background_fraction: float = 0.1
    background_length_A: float = 20.0
    drift_speed_px_per_frame: float = 1.0
    drift_walk_px_per_frame: float = 0.3
    max_drift_px: float = 40.0
    scan_drift_fraction: float = 1.0
    mo_density_per_nm2: float = 0.11
    s_vacancy_density_per_nm2: float = 0.1
    w_vacancy_density_per_nm2: float = 0.01
    w_antisite_density_per_nm2: float = 0.01
    s_vacancy_creation_per_nm2_frame: float = 0.005
    w_vacancy_creation_per_nm2_frame: float = 5e-4
    w_antisite_creation_per_nm2_frame: float = 5e-4
    s_vacancy_hop_prob: float = 0.1
    s_vacancy_sticky_factor: float = 0.3
    mo_switch_prob_ab: float = 0.1
    mo_switch_prob_ba: float = 0.2
    mo_b_offset_A: float = 0.5

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        material = get_material(self.material)
        if self.dopant not in ATOMIC_NUMBER or self.dopant == material.metal:
            raise ValueError(f"dopant={self.dopant!r} must be an element of {sorted(ATOMIC_NUMBER)} "
                             f"other than the host metal {material.metal}")
        if isinstance(self.n_frames, bool) or _number("n_frames", self.n_frames) != int(self.n_frames) \
                or self.n_frames < 1:
            raise ValueError(f"n_frames must be an integer >= 1, got {self.n_frames!r}")
        set_(self, "n_frames", int(self.n_frames))
        shape = tuple(self.frame_shape) if not isinstance(self.frame_shape, (str, bytes)) else ()
        if len(shape) != 2 or any(_number("frame_shape", v) != int(v) or v < _MIN_FRAME_PX
                                  for v in shape):
            raise ValueError(f"frame_shape must be two integers >= {_MIN_FRAME_PX} (rows, cols), "
                             f"got {self.frame_shape!r}")
        set_(self, "frame_shape", (int(shape[0]), int(shape[1])))
        rng_ = tuple(self.pixel_size_range_A) if not isinstance(self.pixel_size_range_A, str) else ()
        if len(rng_) != 2 or not 0 < _number("pixel_size_range_A", rng_[0]) \
                <= _number("pixel_size_range_A", rng_[1]) <= _MAX_PIXEL_SIZE_A:
            raise ValueError(f"pixel_size_range_A must be (low, high) with 0 < low <= high <= "
                             f"{_MAX_PIXEL_SIZE_A}, got {self.pixel_size_range_A!r}")
        set_(self, "pixel_size_range_A", (float(rng_[0]), float(rng_[1])))
        if self.pixel_size_A is not None:
            ps = _number("pixel_size_A", self.pixel_size_A)
            if not 0 < ps <= _MAX_PIXEL_SIZE_A:
                raise ValueError(f"pixel_size_A must be in (0, {_MAX_PIXEL_SIZE_A}] A/px or None, "
                                 f"got {self.pixel_size_A!r}")
            set_(self, "pixel_size_A", ps)
        if self.rotation_deg is not None:
            set_(self, "rotation_deg", _number("rotation_deg", self.rotation_deg))
        for name in _POSITIVE + _NON_NEGATIVE + tuple(_UNIT_INTERVAL):
            value = _number(name, getattr(self, name))
            bad = (value <= 0 if name in _POSITIVE else value < 0)
            if name in _UNIT_INTERVAL:
                bad = bad or value > 1 or (value == 1 and not _UNIT_INTERVAL[name])
            if bad:
                rule = ("> 0" if name in _POSITIVE else ">= 0" if name in _NON_NEGATIVE
                        else "in [0, 1]" if _UNIT_INTERVAL[name] else "in [0, 1)")
                raise ValueError(f"{name} must be {rule}, got {getattr(self, name)!r}")
            set_(self, name, value)
        if self.mo_b_offset_A >= material.mx_distance_A:
            raise ValueError(f"mo_b_offset_A must be < the metal-hollow distance "
                             f"{material.mx_distance_A:.2f} A, got {self.mo_b_offset_A!r}")
        self.defect_rates()  # validates the dynamics fields (errors name the field)

    @property
    def material_obj(self) -> Material:
        return get_material(self.material)

    def defect_rates(self) -> DefectRates:
        """The dynamics fields as :class:`~stem2d.sim.dynamics.DefectRates`."""
        return DefectRates(**{f.name: getattr(self, f.name) for f in fields(DefectRates)})

    def to_dict(self) -> dict:
        """JSON-ready dict of all fields (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class _Geometry:
    """Resolved random geometry of one movie (all in frame pixels unless named _A)."""

    pixel_size_A: float
    shape: tuple[int, int]
    margin_px: float
    columns: Columns            # pristine specimen lattice, specimen angstrom
    drift_px: np.ndarray        # (T, 2) mid-frame drift relative to frame 0
    start_px: np.ndarray        # (T, 2) drift at scan line 0
    per_line_px: np.ndarray     # (T, 2) in-frame drift per scan line
    hollow_dirs: np.ndarray     # (3, 2) unit vectors from a metal site to its hollow sites

    def to_image(self, pos_A: np.ndarray, frame: np.ndarray) -> np.ndarray:
        """Specimen positions (A) seen in ``frame`` -> image (row, col) px (as render_haadf)."""
        s = pos_A / self.pixel_size_A + self.start_px[frame]
        u = self.per_line_px[frame]
        row = s[:, 0] / (1.0 - u[:, 0])
        return np.stack([row, s[:, 1] + u[:, 1] * row], axis=1)


def _geometry(cfg: MovieConfig, rng: np.random.Generator) -> tuple[_Geometry, dict]:
    material = cfg.material_obj
    lo, hi = cfg.pixel_size_range_A
    ps = cfg.pixel_size_A if cfg.pixel_size_A is not None else float(rng.uniform(lo, hi))
    rotation = cfg.rotation_deg if cfg.rotation_deg is not None else float(rng.uniform(0, 360))
    drift, velocity = drift_path(cfg.n_frames, speed_px_per_frame=cfg.drift_speed_px_per_frame,
                                 walk_px_per_frame=cfg.drift_walk_px_per_frame,
                                 max_drift_px=cfg.max_drift_px, rng=rng)
    h, w = cfg.frame_shape
    steps = np.diff(drift, axis=0)
    last = steps[-1:] if len(steps) else velocity[None, :]
    per_line = cfg.scan_drift_fraction * np.concatenate([steps, last]) / h
    start = drift - per_line * (h - 1) / 2.0
    probe_px = 2.0 * max(cfg.probe_fwhm_A, cfg.probe_tail_fwhm_A) / ps + 2.0
    margin = float(np.ceil(np.abs(start).max() + np.abs(per_line).max() * h + probe_px))
    vecs = lattice_vectors_A(material.a_A, rotation)
    origin = rng.uniform(size=2) @ vecs
    extent = ((h + 2 * margin) * ps, (w + 2 * margin) * ps)
    cols = mx2_columns(material, extent_A=extent, rotation_deg=rotation,
                       origin_A=tuple(origin), margin_A=0.0)
    cols = Columns(cols.pos_A - margin * ps, cols.site, cols.atoms)
    x_offsets = (vecs[0] + vecs[1]) / 3.0 - np.array([[0.0, 0.0], vecs[0], vecs[1]])
    hollow = -x_offsets / np.linalg.norm(x_offsets, axis=1, keepdims=True)
    geo = _Geometry(ps, (h, w), margin, cols, drift, start, per_line, hollow)
    info = {"pixel_size_A": ps, "rotation_deg": rotation, "lattice_origin_A": origin.tolist(),
            "final_drift_velocity_px_per_frame": velocity.tolist(),
            "specimen_area_nm2": extent[0] * extent[1] / 100.0,
            "frame_area_nm2": h * w * ps**2 / 100.0, "n_columns": len(cols)}
    return geo, info


class _Renderer:
    """Renders frame k from the defect history; holds only the (small) per-movie state."""

    def __init__(self, cfg: MovieConfig, geo: _Geometry, history: pd.DataFrame, seed: int):
        self.cfg, self.geo, self.seed = cfg, geo, seed
        self.probe = Probe(cfg.probe_fwhm_A, cfg.probe_tail_fraction, cfg.probe_tail_fwhm_A)
        self.acq = Acquisition(cfg.dose_e_per_A2, cfg.detector_sigma_counts, cfg.jitter_px,
                               cfg.jitter_correlation, 0.0, cfg.background_length_A)
        self.kinds = {name: parse_kind(name, cfg.material_obj)
                      for name in kind_names(cfg.material_obj, cfg.dopant)}
        frame = history["frame"].to_numpy()
        self.bounds = np.searchsorted(frame, np.arange(cfg.n_frames + 1))
        self.column = history["column"].to_numpy()
        self.kind = history["kind"].to_numpy()
        self.pos_A = history[["row_A", "col_A"]].to_numpy()
        self._background: np.ndarray | None = None

    def columns(self, k: int, *, defects: bool) -> Columns:
        cols = self.geo.columns
        if defects:
            sl = slice(self.bounds[k], self.bounds[k + 1])
            for idx, kind in zip(self.column[sl], self.kind[sl]):
                cols = apply_defect(cols, self.kinds[kind], int(idx))
            pos = cols.pos_A.copy()
            pos[self.column[sl]] = self.pos_A[sl]  # displaced dopants (configuration B)
            cols = Columns(pos, cols.site, cols.atoms)
        img = self.geo.to_image(cols.pos_A, np.full(len(cols), k))
        cut = 2.0 * max(self.cfg.probe_fwhm_A, self.cfg.probe_tail_fwhm_A) / self.geo.pixel_size_A + 2
        h, w = self.geo.shape
        keep = ((img[:, 0] > -cut) & (img[:, 0] < h + cut) & (img[:, 1] > -cut) & (img[:, 1] < w + cut))
        start_A = self.geo.start_px[k] * self.geo.pixel_size_A
        return Columns(cols.pos_A[keep] + start_A, cols.site[keep], cols.atoms[keep])

    def clean(self, k: int, *, defects: bool = True) -> np.ndarray:
        return render_haadf(self.columns(k, defects=defects), shape=self.geo.shape,
                            pixel_size_A=self.geo.pixel_size_A, probe=self.probe,
                            z_exponent=self.cfg.z_exponent,
                            z_reference=self.cfg.material_obj.z_metal,
                            drift_px_per_line=tuple(self.geo.per_line_px[k]))

    def background(self, k: int) -> np.ndarray:
        """Specimen-fixed contamination seen in frame k, in units of the W column peak."""
        if self._background is None:
            m = self.geo.margin_px
            h, w = self.geo.shape
            self._background = smooth_background(
                (int(h + 2 * m) + 1, int(w + 2 * m) + 1), pixel_size_A=self.geo.pixel_size_A,
                length_A=self.cfg.background_length_A, rng=np.random.default_rng([self.seed, 3]))
        r = np.arange(self.geo.shape[0], dtype=float)[:, None]
        c = np.arange(self.geo.shape[1], dtype=float)[None, :]
        (sr, sc), (ur, uc) = self.geo.start_px[k], self.geo.per_line_px[k]
        spec_r = np.broadcast_to(r * (1.0 - ur) - sr + self.geo.margin_px, self.geo.shape)
        spec_c = c - uc * r - sc + self.geo.margin_px
        return ndimage.map_coordinates(self._background, [spec_r, spec_c], order=1, mode="nearest")

    def frame(self, k: int) -> np.ndarray:
        signal = self.clean(k)
        if self.cfg.background_fraction > 0:
            signal = signal + self.cfg.background_fraction * self.background(k)
        return acquire(signal, pixel_size_A=self.geo.pixel_size_A, acq=self.acq,
                       rng=np.random.default_rng([self.seed, 1, k]))


class SyntheticFrames(Sequence):
    """Lazily rendered frames: ``len``, integer (also negative) index, slice (a list), iteration.

    Each access renders the frame anew (float32 (H, W) detector counts); nothing is cached.
    """

    def __init__(self, renderer: _Renderer):
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

    def __init__(self, *, renderer: _Renderer, truth: pd.DataFrame, history: pd.DataFrame,
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


def _class_of(classes: ClassSet) -> dict[str, str]:
    return {kind: name for name, kinds in classes.kinds for kind in kinds}


def _truth(history: pd.DataFrame, geo: _Geometry, classes: ClassSet) -> pd.DataFrame:
    frame = history["frame"].to_numpy()
    img = geo.to_image(history[["row_A", "col_A"]].to_numpy(), frame)
    h, w = geo.shape
    inside = ((img[:, 0] >= -0.5) & (img[:, 0] < h - 0.5) & (img[:, 1] >= -0.5) & (img[:, 1] < w - 0.5))
    lookup = _class_of(classes)
    kinds = history["kind"].to_numpy()
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
    geo, info = _geometry(cfg, np.random.default_rng([seed, 2]))
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
    renderer = _Renderer(cfg, geo, history, seed)
    truth = _truth(history, geo, classes)
    log.info("synthetic %s movie: %d frames of %s px at %.3f A/px, %d truth points",
             cfg.material, cfg.n_frames, cfg.frame_shape, geo.pixel_size_A, len(truth))
    return SyntheticMovie(renderer=renderer, truth=truth, history=history, params=params,
                          source=f"<synthetic {cfg.material} seed={seed}>")
