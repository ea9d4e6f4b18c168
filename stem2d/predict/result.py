"""What the movie loop found (:class:`MovieResult`) and the run folder it writes.

``MovieResult.save(folder)`` writes ``detections.csv``, (``columns.csv``), ``counts.png``,
(``truth.csv``, ``metrics.json``, ``baseline_detections.csv`` when scored), ``evolution/`` and,
last, ``summary.json``; every file goes to a temporary name first and is renamed when complete, so a
folder without ``summary.json`` did not finish.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stem2d import CANONICAL_PIXEL_SIZE_A
from stem2d.output.files import atomic_path, atomic_write_text
from stem2d.output.plain import rounded, to_plain
from stem2d.predict.evidence import UNKNOWN

__all__ = ["MovieResult"]

log = logging.getLogger(__name__)


@dataclass
class MovieResult:
    """Defects of a movie, their drift-corrected tracks and evolution.

    Attributes
    ----------
    detections : DataFrame
        ``frame,row,col,class,score`` and the evidence columns (``sublattice, intensity_rel,
        p_class``); row/col in input-frame pixels. Unconfirmed candidates have class ``unknown``
        (see :attr:`confirmed`).
    drift_px : ndarray, (T, 2)
        Sample drift per frame (row, col) relative to frame 0, measured while streaming.
    pixel_size_A : float
        The pixel size used (measured, or as given).
    frame_shape : (int, int)
    class_names : tuple of str
        The classifier's classes.
    summary : dict
        Everything ``summary.json`` holds (counts, pixel sizes, settings, timings).
    truth, metrics, baseline_detections : DataFrame, dict, DataFrame or None
        The truth of a synthetic movie and the scores against it.
    evolution : EvolutionResult or None
        Tracks, diffusion, transitions, lifetimes (:func:`stem2d.evolution.evolve`).
    columns : DataFrame or None
        Every quantified column of every frame (``MovieSettings.columns``).
    dose_per_frame : float or None
        e/A^2 per frame, when known.
    """

    detections: pd.DataFrame
    drift_px: np.ndarray
    pixel_size_A: float
    frame_shape: tuple[int, int]
    class_names: tuple[str, ...]
    summary: dict[str, Any]
    truth: pd.DataFrame | None = None
    metrics: dict | None = None
    baseline_detections: pd.DataFrame | None = None
    evolution: Any = None
    columns: pd.DataFrame | None = field(default=None, repr=False)
    dose_per_frame: float | None = None
    evidence0: Any = field(default=None, repr=False)
    overlay_samples: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    frames: Sequence[np.ndarray] | None = field(default=None, repr=False)
    step: Any = field(default=None, repr=False)

    @property
    def confirmed(self) -> pd.DataFrame:
        """The detections without the unconfirmed candidates (what is counted, scored, tracked)."""
        return self.detections[self.detections["class"] != UNKNOWN]

    @property
    def tracks(self) -> pd.DataFrame | None:
        """Detections linked into tracks (``track`` column), or None without evolution."""
        return None if self.evolution is None else self.evolution.tracks

    def overlay(self, frame: int, *, heat: bool = True) -> np.ndarray:
        """Frame ``frame`` with class-coloured markers at its defects (and the CAM heat map).

        The frame is read again from the movie and, for the heat map, analysed again (the
        analysis is deterministic, so the markers are those of ``detections``).

        Returns
        -------
        ndarray, uint8, (H, W, 3)
        """
        from stem2d.predict.overlay import OverlayRenderer

        if self.frames is None or self.step is None:
            raise ValueError("this MovieResult keeps no frames to draw on")
        n = int(self.summary["n_frames"])
        if not 0 <= frame < n:
            raise ValueError(f"frame={frame}: the movie has frames 0..{n - 1}")
        image = np.asarray(self.frames[frame], dtype=np.float32)
        from stem2d.lattice.scale import resample

        canon = resample(image, from_pixel_size_A=self.pixel_size_A, to_pixel_size_A=CANONICAL_PIXEL_SIZE_A)
        res = self.step.analyze(image, canon=canon, with_heat=heat)
        _, _, shown = self.step.table(frame, image, res, canon)
        renderer = OverlayRenderer(self.class_names, pixel_size_A=self.pixel_size_A, n_frames=n,
                                   dose_per_frame=self.dose_per_frame)
        return renderer.render(image, shown.heat, shown.points, shown.labels, index=frame,
                               regions=getattr(shown, "regions", None))

    def save(self, folder: str | Path, *, tensorboard: bool = False) -> Path:
        """Write the run folder (tables, plots, ``evolution/``, ``summary.json`` last); return it.

        ``tensorboard`` also writes the overlay samples and evolution plots as TensorBoard images.
        """
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        timings = dict(self.summary.get("timings_s", {}))
        t = time.perf_counter()
        _write_csv(out / "detections.csv", self.detections)
        if self.columns is not None:
            _write_csv(out / "columns.csv", self.columns)
        if self.evidence0 is not None:
            from stem2d.predict.evidence_step import write_regions

            write_regions(out / "regions", 0, self.evidence0, self.frame_shape)
        _counts_plot(out / "counts.png", self.confirmed, int(self.summary["n_frames"]), self.frame_shape,
                     self.pixel_size_A, self.class_names, self.dose_per_frame)
        if self.truth is not None:
            _write_csv(out / "truth.csv", self.truth)
            if self.baseline_detections is not None:
                _write_csv(out / "baseline_detections.csv", self.baseline_detections)
            _write_json(out / "metrics.json", self.metrics)
        timings["write"] = time.perf_counter() - t
        if self.evolution is not None:
            t = time.perf_counter()
            self.evolution.write(out / "evolution", skip_figures=("counts",))  # the same figure is counts.png
            timings["evolution"] = timings.get("evolution", 0.0) + time.perf_counter() - t
        if tensorboard:
            t = time.perf_counter()
            _tensorboard(out, self.overlay_samples)
            timings["tensorboard"] = time.perf_counter() - t
        self.summary.update(timings_s=timings, peak_rss_mb=_peak_rss_mb())
        from stem2d.viz.report import write_report

        report = write_report(out, rounded(to_plain(self.summary)), overlay_frames=self.overlay_samples)
        _write_json(out / "summary.json", self.summary)
        log.info("%d defects in %d frames (%.1f frames/s) -> %s", len(self.confirmed), self.summary["n_frames"],
                 self.summary.get("frames_per_s") or 0.0, out)
        log.info("report: %s", report.resolve().as_uri())
        return out


def _peak_rss_mb() -> float:
    """Peak resident memory of this process (MB): ``VmHWM`` of /proc/self/status where there is
    one. ``ru_maxrss`` is the fallback only: on Linux it also counts the parent's memory at the
    fork before ``exec``, so a ``python infer.py`` started by a 1.3 GB process read 1.3 GB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(rounded(to_plain(obj)), indent=2, allow_nan=False))


def _write_csv(path: Path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.3f")


def _counts_plot(path: Path, detections: pd.DataFrame, n_frames: int, frame_shape, pixel_size_A: float,
                 class_names, dose_per_frame=None) -> None:
    """Defect counts per class vs frame (and vs dose when known) as a PNG."""
    from stem2d.evolution.analysis import counts_per_frame, frame_area_nm2
    from stem2d.evolution.plots import plot_counts, save_figure

    classes = [c for c in class_names if c != "pristine"]
    counts = counts_per_frame(detections, n_frames=n_frames, classes=classes, dose_per_frame=dose_per_frame,
                              frame_area_nm2=frame_area_nm2(frame_shape, pixel_size_A))
    save_figure(plot_counts(counts, classes=classes), path)


def _tensorboard(out: Path, overlays: dict[int, np.ndarray]) -> None:
    """Overlay frames and the evolution plots as TensorBoard images."""
    import imageio.v2 as imageio
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(out / "tensorboard"))
    try:
        for k, rgb in overlays.items():
            writer.add_image("overlay/frame", rgb, global_step=k, dataformats="HWC")
        for png in sorted((out / "evolution").glob("*.png")):
            writer.add_image(f"evolution/{png.stem}", imageio.imread(png)[..., :3], dataformats="HWC")
    finally:
        writer.close()
