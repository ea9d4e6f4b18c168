"""Defect evolution over a movie: drift, tracks, diffusion, class transitions, lifetimes, creation.

``evolve(detections, pixel_size_A=..., frame_shape=...)`` runs the whole chain on a detections
table (``frame,row,col,class,score``, px) and returns an :class:`EvolutionResult`, whose
``write(out_dir)`` leaves ``tracks.csv``, ``transitions.csv``, ``counts.csv``, ``msd.csv``,
(``drift.csv``), ``evolution_*.png`` and, last, ``evolution.json``. The pieces live in
:mod:`.drift`, :mod:`.tracking`, :mod:`.analysis` and :mod:`.plots`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from stem2d.evolution import analysis, plots
from stem2d.evolution.drift import correct_positions, estimate_drift
from stem2d.evolution.tracking import (
    TRACK_COLUMNS,
    check_detections,
    link_recovery,
    link_tracks,
)
from stem2d.materials import get_material

__all__ = [
    "EvolutionResult", "evolve", "estimate_drift", "correct_positions", "link_tracks", "link_recovery",
]

log = logging.getLogger(__name__)


@dataclass
class EvolutionResult:
    """Everything :func:`evolve` found. Positions are px; ``row``/``col`` of ``tracks`` are in input
    frame pixels, ``row_corrected``/``col_corrected`` in frame-0 sample coordinates (drift removed)."""

    tracks: pd.DataFrame
    drift: np.ndarray | None
    counts: pd.DataFrame
    diffusion: dict
    transitions: dict
    lifetimes: dict
    creation: dict
    pixel_size_A: float
    frame_shape: tuple[int, int]
    n_frames: int
    params: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def sample_tracks(self) -> pd.DataFrame:
        """Tracks with ``row``/``col`` replaced by the drift-corrected positions."""
        keep = [c for c in self.tracks.columns if c not in ("row_corrected", "col_corrected")]
        return self.tracks[keep].assign(row=self.tracks["row_corrected"], col=self.tracks["col_corrected"])

    def figures(self) -> dict:
        """Matplotlib figures by name (``counts, broom, occupancy, transitions, msd``)."""
        return plots.figures(self)

    def to_summary(self) -> dict:
        """JSON-serialisable summary (numbers, lists, strings; None where not estimated)."""
        d, tr, cr = self.diffusion, self.transitions, self.creation
        counts = {}
        for name, grp in self.counts.groupby("class", sort=False):
            counts[name] = {
                "total_detections": grp["count"].sum(), "mean_per_frame": grp["count"].mean(),
                "mean_density_per_nm2": grp["density_per_nm2"].mean(),
                "count_first_frame": grp["count"].iloc[0], "count_last_frame": grp["count"].iloc[-1],
            }
        summary = {
            "pixel_size_A": self.pixel_size_A, "frame_shape": list(self.frame_shape), "n_frames": self.n_frames,
            "frame_area_nm2": analysis.frame_area_nm2(self.frame_shape, self.pixel_size_A),
            "params": self.params,
            "n_detections": len(self.tracks), "n_tracks": self.tracks["track"].nunique(),
            "drift_px": None if self.drift is None else {
                "final": self.drift[-1].tolist(), "max_abs": np.abs(self.drift).max(axis=0).tolist(),
                "max_step": np.abs(np.diff(self.drift, axis=0, prepend=0.0)).max(axis=0).tolist(),
            },
            "counts": counts,
            "diffusion": {**{k: v for k, v in d.items() if k != "msd"}, "msd": d["msd"].to_dict(orient="list")},
            "transitions": {
                "classes": tr["classes"], "counts": tr["counts"].to_numpy().tolist(),
                "probabilities": tr["probabilities"].to_numpy().tolist(),
                "n_transitions": tr["n_transitions"].to_dict(), "note": tr["note"],
            },
            "lifetimes": self.lifetimes["summary"].to_dict(orient="records"),
            "creation": {k: v for k, v in cr.items() if k != "per_frame"},
            "notes": self.notes,
        }
        return _json_safe(summary)

    def write(self, out_dir: str | os.PathLike, *, skip_figures: tuple[str, ...] = ()) -> dict[str, Path]:
        """Write tables, figures and ``evolution.json`` (last) into ``out_dir``; returns the paths.

        Every file goes to a temporary name first and is renamed when complete. ``skip_figures``
        names figures not to write (the movie pipeline writes ``counts`` as the run's counts.png).
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "evolution.json").unlink(missing_ok=True)  # a stale summary must not vouch for new files
        paths = {
            "tracks": _write_csv(self.tracks, out / "tracks.csv"),
            "transitions": _write_csv(_transitions_long(self.transitions), out / "transitions.csv"),
            "counts": _write_csv(self.counts, out / "counts.csv"),
            "msd": _write_csv(self.diffusion["msd"], out / "msd.csv"),
        }
        if self.drift is not None:
            drift = pd.DataFrame({"frame": np.arange(len(self.drift)), "drift_row_px": self.drift[:, 0],
                                  "drift_col_px": self.drift[:, 1]})
            paths["drift"] = _write_csv(drift, out / "drift.csv")
        paths.update({f"png_{k}": v for k, v in plots.save_all(self, out, skip=skip_figures).items()})
        from stem2d.output.plain import rounded

        text = json.dumps(rounded(self.to_summary()), indent=2, allow_nan=False)
        paths["summary"] = _write_text(text, out / "evolution.json")
        log.info("evolution outputs written to %s", out)
        return paths


def _transitions_long(trans: dict) -> pd.DataFrame:
    """One row per (from, to) class pair: ``from, to, count, probability, n_from``."""
    counts, probs, n = trans["counts"], trans["probabilities"], trans["n_transitions"]
    rows = [(a, b, counts.at[a, b], probs.at[a, b], n[a]) for a in counts.index for b in counts.columns]
    return pd.DataFrame(rows, columns=["from", "to", "count", "probability", "n_from"])


def _write_text(text: str, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _write_csv(df: pd.DataFrame, path: Path) -> Path:
    return _write_text(df.to_csv(index=False), path)


def _json_safe(obj):
    """Recursively convert numpy/pandas values to JSON types; NaN and inf become None."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


def evolve(
    detections: pd.DataFrame,
    *,
    pixel_size_A: float,
    frame_shape: Sequence[int],
    frames: ArrayLike | None = None,
    drift_px: ArrayLike | None = None,
    dose_per_frame: ArrayLike | None = None,
    n_frames: int | None = None,
    classes: Sequence[str] = (),
    material: str = "WS2",
    diffusing_class: str = "s_vacancy",
    search_range_A: float = 5.0,
    class_change_cost_A: float = 2.5,
    memory: int = 2,
    max_lag_frames: int = 4,
    frame_time_s: float | None = None,
    n_boot: int = 200,
    rng: int | np.random.Generator | None = 0,
) -> EvolutionResult:
    """Drift-correct, link and analyse defect detections of a movie.

    Parameters
    ----------
    detections : DataFrame
        ``frame,row,col,class,score`` with row/col in input-frame px.
    pixel_size_A : float
        Sampling, angstrom per px.
    frame_shape : (int, int)
        Frame size (H, W) in px (for densities, occupancy and edge checks).
    frames : array_like (T, H, W) or None
        The movie; when given, sample drift is estimated from the lattice and removed before
        linking and analysis. Without it positions are used as they are.
    drift_px : array_like (T, 2) or None
        Sample drift per frame (row, col) in px relative to frame 0, already measured (e.g. by
        a streaming pipeline that never holds the whole movie); used when ``frames`` is None.
    dose_per_frame : float or array_like (T,) or None
        Electron dose per frame in e/A^2, for counts vs accumulated dose and creation per dose.
    n_frames : int or None
        Number of frames T; None takes it from ``frames``, else ``dose_per_frame``, else the
        largest detection frame + 1.
    classes : sequence of str
        Class order for tables and plots (e.g. ``ClassSet.names``); other classes follow.
    material : str, default "WS2"
        Sets the lattice constant a (drift search limit 0.45 a; vacancy hop length l = a, the
        S-S distance).
    diffusing_class : str, default "s_vacancy"
        Class whose MSD gives the diffusion coefficient; also the class whose creation is counted.
    search_range_A : float, default 5.0
        Largest displacement linked between frames (one S-S hop is 3.18 A), in angstrom; also
        the edge margin inside which a new track counts as drifting in, not created.
    class_change_cost_A : float, default 2.5
        Extra linking distance charged for a class change, in angstrom (see
        :func:`~stem2d.evolution.tracking.link_tracks`); keeps an S vacancy hopping next to a
        dopant from being swapped with it.
    memory : int, default 2
        Frames a defect may go undetected and keep its track.
    max_lag_frames : int, default 4
        Largest lag of the MSD fit, in frames.
    frame_time_s : float or None
        Seconds per frame, for D and hop rate per second.
    n_boot : int, default 200
        Bootstrap resamples (over tracks) for the diffusion confidence interval.
    rng : int, Generator or None, default 0
        Seed of the bootstrap.

    Returns
    -------
    EvolutionResult
    """
    det = check_detections(detections)
    for key, value in (("pixel_size_A", pixel_size_A), ("search_range_A", search_range_A)):
        if not (isinstance(value, (int, float, np.number)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{key}={value!r}: must be a positive number")
    if len(frame_shape) != 2 or min(frame_shape) <= 0:
        raise ValueError(f"frame_shape={tuple(frame_shape)!r}: expected (H, W) with H, W > 0")
    frame_shape = (int(frame_shape[0]), int(frame_shape[1]))
    a_A = get_material(material).a_A
    stack = None if frames is None else np.asarray(frames)
    if stack is not None and (stack.ndim != 3 or stack.shape[1:] != frame_shape):
        raise ValueError(f"frames: expected shape (T, {frame_shape[0]}, {frame_shape[1]}), got {stack.shape}")
    n_frames = _resolve_n_frames(n_frames, stack, dose_per_frame, det)
    dose = analysis.dose_array(dose_per_frame, n_frames)
    search_px = search_range_A / pixel_size_A
    drift = None if drift_px is None else np.asarray(drift_px, dtype=np.float64).reshape(-1, 2)
    if stack is not None:
        period_px = a_A / pixel_size_A
        drift = estimate_drift(stack, max_step_px=max(1.0, 0.45 * period_px), highpass_sigma_px=period_px)
    corrected = correct_positions(det, drift) if drift is not None else det.copy()
    corrected["row_input"], corrected["col_input"] = det["row"], det["col"]
    linked = link_tracks(corrected, search_range_px=search_px, memory=memory,
                         class_change_cost_px=class_change_cost_A / pixel_size_A)
    renamed = {"row": "row_corrected", "col": "col_corrected", "row_input": "row", "col_input": "col"}
    tracks = linked.rename(columns=renamed)
    rest = [c for c in tracks.columns if c not in TRACK_COLUMNS + ("row_corrected", "col_corrected")]
    tracks = tracks[list(TRACK_COLUMNS) + ["row_corrected", "col_corrected"] + rest]
    sample = linked.drop(columns=["row_input", "col_input"])
    result = EvolutionResult(
        tracks=tracks, drift=drift,
        counts=analysis.counts_per_frame(tracks, n_frames=n_frames, classes=classes, dose_per_frame=dose,
                                         frame_area_nm2=analysis.frame_area_nm2(frame_shape, pixel_size_A)),
        diffusion=analysis.diffusion(sample, pixel_size_A=pixel_size_A, diffusing_class=diffusing_class,
                                     hop_length_A=a_A, max_lag_frames=max_lag_frames,
                                     frame_time_s=frame_time_s, n_boot=n_boot, rng=rng),
        transitions=analysis.transitions(sample, classes=classes),
        lifetimes=analysis.lifetimes(sample, n_frames=n_frames, classes=classes),
        creation=analysis.creation(tracks, n_frames=n_frames, frame_shape=frame_shape,
                                   pixel_size_A=pixel_size_A, created_class=diffusing_class,
                                   edge_margin_px=min(search_px, min(frame_shape) / 4), dose_per_frame=dose),
        pixel_size_A=float(pixel_size_A), frame_shape=frame_shape, n_frames=n_frames,
        params={"material": material, "diffusing_class": diffusing_class, "search_range_A": search_range_A,
                "search_range_px": search_px, "class_change_cost_A": class_change_cost_A, "memory": memory,
                "max_lag_frames": max_lag_frames,
                "frame_time_s": frame_time_s, "n_boot": n_boot, "drift_corrected": drift is not None,
                "dose_per_frame_given": dose is not None},
    )
    result.notes = _notes(result, det)
    for note in result.notes:
        log.info("evolution: %s", note)
    return result


def _resolve_n_frames(n_frames, stack, dose_per_frame, det) -> int:
    last = int(det["frame"].max()) + 1 if len(det) else 0
    if n_frames is None:
        if stack is not None:
            n_frames = stack.shape[0]
        elif dose_per_frame is not None and np.ndim(dose_per_frame) == 1:
            n_frames = len(dose_per_frame)
        else:
            n_frames = max(last, 1)
    if int(n_frames) < max(last, 1):
        raise ValueError(f"n_frames={n_frames!r}: detections reach frame {last - 1}")
    return int(n_frames)


def _notes(result: EvolutionResult, det: pd.DataFrame) -> list[str]:
    notes = []
    if det.empty:
        notes.append("no detections: every table is empty")
    if result.n_frames < 2:
        notes.append("a single frame: no tracks, transitions, diffusion or creation")
    if result.drift is None:
        notes.append("no frames given: positions not drift corrected")
    for name in ("diffusion", "transitions", "lifetimes", "creation"):
        note = getattr(result, name)["note"]
        if note and note not in notes:
            notes.append(f"{name}: {note}")
    return notes
