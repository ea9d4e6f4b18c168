"""Matching detected points to true points (Hungarian assignment within a distance) and scores."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist


def match_points(pred: np.ndarray, truth: np.ndarray, *, max_dist: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of predicted to true points minimising total distance.

    Parameters
    ----------
    pred, truth : ndarray, shape (N, 2) and (M, 2)
        Point coordinates (row, col), same units as ``max_dist``.
    max_dist : float
        Pairs farther apart than this are never matched.

    Returns
    -------
    pred_idx, truth_idx : ndarray of int
        Indices of matched pairs (equal length).

    Examples
    --------
    >>> match_points(np.array([[0, 0], [5, 5]]), np.array([[5, 6], [0, 1]]), max_dist=1.5)
    (array([0, 1]), array([1, 0]))
    """
    pred = np.asarray(pred, dtype=float).reshape(-1, 2)
    truth = np.asarray(truth, dtype=float).reshape(-1, 2)
    if len(pred) == 0 or len(truth) == 0:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    d = cdist(pred, truth)
    big = max_dist * 10 + d.max() + 1.0
    cost = np.where(d <= max_dist, d, big)
    rows, cols = linear_sum_assignment(cost)
    ok = d[rows, cols] <= max_dist
    return rows[ok].astype(int), cols[ok].astype(int)


def prf(tp: int, n_pred: int, n_true: int) -> dict[str, float | None]:
    """Precision, recall and F1 (None where undefined) with the counts they come from."""
    precision = tp / n_pred if n_pred else None
    recall = tp / n_true if n_true else None
    f1 = 2 * tp / (n_pred + n_true) if (n_pred + n_true) else None
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "n_pred": n_pred, "n_true": n_true}


def score_detections(
    pred: pd.DataFrame, truth: pd.DataFrame, *, max_dist_px: float, classes: list[str] | None = None
) -> dict:
    """Score detections against truth frame by frame.

    Both tables have columns ``frame,row,col,class``. Matching ignores class (Hungarian within
    ``max_dist_px``); then

    - ``detection``: precision / recall / F1 of positions, class ignored;
    - ``class_accuracy``: fraction of matched pairs whose classes agree;
    - ``per_class``: precision / recall / F1 where a true positive needs a match *and* the same class.

    Returns a JSON-serialisable dict (None where a ratio is undefined).
    """
    classes = list(classes) if classes is not None else sorted(set(truth["class"]) | set(pred["class"]))
    tp = 0
    class_ok = 0
    per = {c: {"tp": 0, "n_pred": 0, "n_true": 0} for c in classes}
    frames = sorted(set(pred["frame"]) | set(truth["frame"]))
    for f in frames:
        p = pred[pred["frame"] == f]
        t = truth[truth["frame"] == f]
        pi, ti = match_points(p[["row", "col"]].to_numpy(), t[["row", "col"]].to_numpy(), max_dist=max_dist_px)
        tp += len(pi)
        pc = p["class"].to_numpy()[pi]
        tc = t["class"].to_numpy()[ti]
        class_ok += int((pc == tc).sum())
        for c in classes:
            per[c]["n_pred"] += int((p["class"] == c).sum())
            per[c]["n_true"] += int((t["class"] == c).sum())
            per[c]["tp"] += int(((pc == c) & (tc == c)).sum())
    return {
        "max_dist_px": float(max_dist_px),
        "detection": prf(tp, len(pred), len(truth)),
        "class_accuracy": class_ok / tp if tp else None,
        "n_matched": tp,
        "n_class_correct": class_ok,
        "per_class": {c: prf(v["tp"], v["n_pred"], v["n_true"]) for c, v in per.items()},
    }


def match_with_dont_care(
    pred: np.ndarray, truth: np.ndarray, *, max_dist: float,
    dont_care: Sequence[tuple[np.ndarray, float]] = (),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`match_points`, then flag the unmatched predictions that fall in "don't care".

    Parameters
    ----------
    pred, truth : ndarray, (N, 2) and (M, 2)
        Point coordinates (row, col).
    max_dist : float
        Matching distance.
    dont_care : sequence of (points (K, 2), radius)
        An unmatched prediction within ``radius`` of one of ``points`` is ignored (neither true
        nor false); e.g. uncertain labels, or the columns of a contaminated region.

    Returns
    -------
    pred_idx, truth_idx : ndarray of int
        Matched pairs.
    ignored : ndarray of bool, (N,)
        Predictions to leave out of the counts.

    Examples
    --------
    >>> pi, ti, ign = match_with_dont_care(np.array([[0., 0.], [5., 5.], [9., 9.]]), np.array([[0., 1.]]),
    ...                                    max_dist=2, dont_care=[(np.array([[5., 6.]]), 1.5)])
    >>> pi.tolist(), ti.tolist(), ign.tolist()
    ([0], [0], [False, True, False])
    """
    pred = np.asarray(pred, dtype=float).reshape(-1, 2)
    pi, ti = match_points(pred, truth, max_dist=max_dist)
    ignored = np.zeros(len(pred), dtype=bool)
    unmatched = np.setdiff1d(np.arange(len(pred)), pi)
    for points, radius in dont_care:
        points = np.asarray(points, dtype=float).reshape(-1, 2)
        if len(points) and len(unmatched):
            d = cdist(pred[unmatched], points).min(axis=1)
            ignored[unmatched[d <= radius]] = True
    return pi, ti, ignored
