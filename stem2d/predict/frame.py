"""Per-frame analysis: candidate defect sites -> 64 x 64 windows -> CAM classifier -> defects.

The frame is resampled to the classifier's canonical sampling (0.3 A/px) first, so the same
weights serve any input pixel size; positions are mapped back to input pixels at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from stem2d import CANONICAL_PIXEL_SIZE_A, TILE_SIZE_PX
from stem2d.lattice.points import suppress_close
from stem2d.lattice.scale import (
    resample,
    resample_factors,
    resize_image,
    to_input_coords,
)
from stem2d.predict.overlay import insert_cams
from stem2d.predict.windows import extract_windows, window_origins

#: A detector maps a canonical-sampling frame to candidate points (N, 2) and scores (N,).
Detector = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
#: A tile classifier maps (N, 64, 64) windows to (labels, probs, cams, cam_pos) arrays.
TileClassifier = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class FrameResult:
    """Defects found in one frame.

    Attributes
    ----------
    points : ndarray, (N, 2)
        Defect positions (row, col) in input-frame pixels.
    labels : ndarray, int, (N,)
        Class index.
    scores : ndarray, (N,)
        Classifier probability of the predicted class.
    detect_scores : ndarray, (N,)
        Score of the detector that proposed the site (pixel-predictor probability, Fourier
        residual, or the classifier score in grid mode).
    cams : ndarray, (N, 64, 64)
        CAM of the predicted class in each window.
    heat : ndarray or None, (H, W)
        The CAMs inserted back into the frame, on the input grid.
    seconds : dict
        Wall time of the steps (``resample``, ``detect``, ``windows``, ``classify``, ``heat``).
    probs : ndarray, (N, C)
        Classifier probabilities of every class (for calibration and evidence).
    """

    points: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    detect_scores: np.ndarray
    cams: np.ndarray
    heat: np.ndarray | None
    seconds: dict[str, float] = field(default_factory=dict)
    probs: np.ndarray | None = None


def analyze_frame(
    frame: np.ndarray,
    *,
    pixel_size_A: float,
    detector: Detector,
    classify: TileClassifier,
    pristine_index: int | None = 0,
    relabel_pristine: bool = False,
    keep_unconfirmed: bool = False,
    refine_with_cam: bool = False,
    merge_dist_A: float = 1.5,
    with_heat: bool = True,
    canon: np.ndarray | None = None,
) -> FrameResult:
    """Find and classify the defects of one frame.

    Parameters
    ----------
    frame : ndarray, (H, W)
        Raw frame (counts) at ``pixel_size_A``.
    pixel_size_A : float
        Input sampling in angstrom per pixel.
    detector : callable
        Proposes candidate sites on the canonical-sampling frame.
    classify : callable
        Classifies 64 x 64 windows (see :data:`TileClassifier`).
    pristine_index : int or None, default 0
        Windows classified as this class are dropped (not defects); None keeps all.
    relabel_pristine : bool, default False
        Instead of dropping them, give such windows their most probable defect class (when the
        detector is trusted more than the classifier on *whether* a site is a defect).
    keep_unconfirmed : bool, default False
        Keep such windows with the label ``pristine_index`` (the caller reports them as
        unconfirmed candidates) instead of dropping them.
    refine_with_cam : bool, default False
        Move each site to its CAM peak (for the grid mode, whose windows are not centred on
        defects), then merge sites closer than ``merge_dist_A``.
    with_heat : bool, default True
        Also build the CAM heat map on the input grid (for the overlay movie).
    canon : ndarray, optional
        ``frame`` already resampled with :func:`stem2d.lattice.scale.resample` (when a frame is
        analysed twice, e.g. by the scoring baseline).
    """
    seconds: dict[str, float] = {}
    t = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal t
        now = time.perf_counter()
        seconds[step] = now - t
        t = now

    factors = resample_factors(frame.shape, from_pixel_size_A=pixel_size_A,
                               to_pixel_size_A=CANONICAL_PIXEL_SIZE_A)
    if canon is None:
        canon = resample(frame, from_pixel_size_A=pixel_size_A, to_pixel_size_A=CANONICAL_PIXEL_SIZE_A)
    lap("resample")
    points, det_scores = detector(canon)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    det_scores = np.asarray(det_scores, dtype=np.float64).reshape(-1)
    lap("detect")
    windows = extract_windows(canon, points)
    lap("windows")
    if len(windows):
        labels, probs, cams, cam_pos = classify(windows)
    else:
        labels, probs = np.zeros(0, np.int64), np.zeros((0, 1), np.float32)
        cams, cam_pos = np.zeros((0, TILE_SIZE_PX, TILE_SIZE_PX), np.float32), np.zeros((0, 2))
    if relabel_pristine and pristine_index is not None and len(labels):
        defect_probs = probs.copy()
        defect_probs[:, pristine_index] = -1.0
        labels = np.where(labels == pristine_index, defect_probs.argmax(axis=1), labels)
    scores = probs[np.arange(len(labels)), labels] if len(labels) else np.zeros(0)
    keep = np.ones(len(points), bool)
    if pristine_index is not None and not keep_unconfirmed:
        keep = labels != pristine_index
    centres = points.copy()  # window centres, where the CAMs belong in the heat map
    if refine_with_cam:
        refined = window_origins(points) + cam_pos
        ok = np.isfinite(refined).all(axis=1)
        points = np.where(ok[:, None], refined, points)
        keep &= ok
        idx = np.flatnonzero(keep)
        order = suppress_close(points[idx], scores[idx], min_dist_px=merge_dist_A / CANONICAL_PIXEL_SIZE_A)
        keep = np.zeros(len(points), bool)
        keep[idx[order]] = True
        det_scores = scores.copy()
    points, centres, labels, scores, det_scores, cams, probs = (
        a[keep] for a in (points, centres, labels, scores, det_scores, cams, probs))
    lap("classify")
    heat = None
    if with_heat:
        heat_canon = insert_cams(canon.shape, centres, cams)
        heat = resize_image(heat_canon, frame.shape, order=1)
        lap("heat")
    return FrameResult(to_input_coords(points, factors), labels, scores, det_scores, cams, heat, seconds,
                       probs)
