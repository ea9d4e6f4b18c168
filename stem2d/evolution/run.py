"""The whole evolution chain on a detections table: drift, linking, diffusion, transitions, lifetimes."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from stem2d.evolution import analysis
from stem2d.evolution.drift import correct_positions, estimate_drift
from stem2d.evolution.result import EvolutionResult
from stem2d.evolution.tracking import TRACK_COLUMNS, check_detections, link_tracks
from stem2d.classes import DEFAULT_CLASS_KINDS, SITE_CLASS_KINDS, ClassSet, hopping_class, vocabulary_of
from stem2d.materials import get_material

__all__ = ["evolve"]

log = logging.getLogger(__name__)


def evolve(
    detections: pd.DataFrame,
    *,
    pixel_size_A: float,
    frame_shape: Sequence[int],
    frames: ArrayLike | None = None,
    drift_px: ArrayLike | None = None,
    dose_per_frame: ArrayLike | None = None,
    n_frames: int | None = None,
    classes: Sequence[str] | ClassSet = (),
    material: str = "WS2",
    diffusing_class: str | None = None,
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
    classes : ClassSet or sequence of str
        Class order for tables and plots (a ClassSet: its names but the pristine class); other
        classes follow. A ClassSet also names the defect kinds, for ``diffusing_class=None``.
    material : str, default "WS2"
        Sets the lattice constant a (drift search limit 0.45 a; vacancy hop length l = a, the
        S-S distance).
    diffusing_class : str or None, default None
        Class whose MSD gives the diffusion coefficient; also the class whose creation is counted.
        None: the class holding chalcogen vacancies (:func:`stem2d.classes.hopping_class`:
        ``s_vacancy`` in the WS2 names, ``chalcogen_single_vacancy`` in the site vocabulary),
        from ``classes`` when it is a ClassSet, else from the built-in vocabulary the class
        names belong to (:func:`stem2d.classes.vocabulary_of`).
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
    if diffusing_class is None:
        diffusing_class = _hopping_class(classes, det, material)
    if isinstance(classes, ClassSet):
        classes = [name for name, kinds in classes.kinds if kinds]
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


def _hopping_class(classes: Sequence[str] | ClassSet, det: pd.DataFrame, material: str) -> str | None:
    """``diffusing_class=None``: the class that holds chalcogen vacancies, from the ClassSet's kinds,
    else from the built-in vocabulary of the class names (None, with a warning, when unknown)."""
    from stem2d.predict.evidence import ADATOM, UNKNOWN  # the evidence step's own names, in every vocabulary

    mat = get_material(material)
    found = hopping_class(classes, mat) if isinstance(classes, ClassSet) else None
    names = [str(n) for n in [*(classes.names if isinstance(classes, ClassSet) else classes), *det["class"].unique()]
             if n not in (UNKNOWN, ADATOM)]
    if found is None and not isinstance(classes, ClassSet):
        kinds = vocabulary_of(names)
        found = None if kinds is None else hopping_class(kinds, mat)
    if found is None:  # e.g. the WS2 names on a WSe2 movie: a built-in set's vacancy class among the names
        known = (hopping_class(ClassSet.from_mapping(DEFAULT_CLASS_KINDS), get_material("WS2")),
                 hopping_class(ClassSet.from_mapping(SITE_CLASS_KINDS), mat))
        found = next((c for c in known if c in names), None)
    if found is None:
        log.warning("no class is known to hold chalcogen vacancies in %s: diffusion and creation not "
                    "estimated (give diffusing_class=, or classes= as a ClassSet with its kinds)", material)
    return found
