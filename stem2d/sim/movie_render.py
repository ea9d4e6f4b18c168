"""Geometry and rendering of the frames of a synthetic movie (see :mod:`stem2d.sim.movie`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

from stem2d.classes import parse_kind
from stem2d.sim.dynamics import drift_path, kind_names
from stem2d.sim.imaging import (
    Acquisition,
    Probe,
    acquire,
    render_haadf,
    smooth_background,
)
from stem2d.sim.lattice import (
    Columns,
    apply_defect,
    hollow_directions,
    lattice_vectors_A,
    mx2_columns,
)
from stem2d.sim.movie_config import MovieConfig

__all__ = ["MovieGeometry", "MovieRenderer", "draw_geometry"]


@dataclass(frozen=True)
class MovieGeometry:
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


def draw_geometry(cfg: MovieConfig, rng: np.random.Generator) -> tuple[MovieGeometry, dict]:
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
    geo = MovieGeometry(ps, (h, w), margin, cols, drift, start, per_line, hollow_directions(rotation))
    info = {"pixel_size_A": ps, "rotation_deg": rotation, "lattice_origin_A": origin.tolist(),
            "final_drift_velocity_px_per_frame": velocity.tolist(),
            "specimen_area_nm2": extent[0] * extent[1] / 100.0,
            "frame_area_nm2": h * w * ps**2 / 100.0, "n_columns": len(cols)}
    return geo, info


class MovieRenderer:
    """Renders frame k from the defect history; holds only the (small) per-movie state."""

    def __init__(self, cfg: MovieConfig, geo: MovieGeometry, history: pd.DataFrame, seed: int):
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
