"""Linking per-frame defect detections into tracks, and scoring a linking against the truth.

Linking uses ``trackpy.link`` rather than a hand-written frame-to-frame Hungarian assignment:
trackpy already solves each ambiguous sub-network for the minimum total squared displacement
(the same optimum the Hungarian method gives for that cost), and adds gap closing ("memory":
a defect missed for a few frames keeps its track) and adaptive search for dense sub-networks.
A defect may change class along its track (a Mo dopant switching configuration, a vacancy
changing type), so classes never forbid a link; but an optional class-change cost (px) is added
to the linking distance, so that where two assignments compete the one keeping classes wins.
Without it, an S vacancy hopping next to a Mo dopant (1.84 A away) is often swapped with it: on
the lead's simulated movies (stem2d.sim.movie) 9 % of vacancy hops were lost that way and the
hop rate came out 14 % low. The cost enters as a one-hot class embedding scaled so that any class
change adds ``class_change_cost_px**2`` to the squared displacement.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
import trackpy
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

log = logging.getLogger(__name__)

#: Columns of a detections table (a contract, see docs/architecture.md).
DETECTION_COLUMNS = ("frame", "row", "col", "class", "score")
#: Columns of a tracks table, in order (extra input columns follow them).
TRACK_COLUMNS = ("track",) + DETECTION_COLUMNS


def check_detections(df: pd.DataFrame, *, name: str = "detections") -> pd.DataFrame:
    """Validate a detections table and return a clean copy.

    Checks the columns ``frame,row,col,class,score``, that ``frame`` holds non-negative
    integers and ``row``/``col`` finite numbers. Returns a copy with ``frame`` as int64,
    ``row``/``col``/``score`` as float64 and ``class`` as str. ``name`` labels error messages.
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{name}: expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in DETECTION_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing} (have {list(df.columns)})")
    out = df.copy()
    for key in ("frame", "row", "col", "score"):
        values = pd.to_numeric(out[key], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"{name}: column {key!r} has non-numeric or non-finite value(s), first at row {i}: "
                f"{out[key].iloc[i]!r}"
            )
        out[key] = values
    frames = out["frame"].to_numpy()
    if np.any(frames < 0) or np.any(frames != np.round(frames)):
        bad = frames[(frames < 0) | (frames != np.round(frames))][0]
        raise ValueError(f"{name}: column 'frame' must hold non-negative integers, got {bad!r}")
    out["frame"] = frames.astype(np.int64)
    out["class"] = out["class"].astype(str)
    return out.reset_index(drop=True)


def link_tracks(
    df: pd.DataFrame,
    *,
    search_range_px: float,
    memory: int = 2,
    class_change_cost_px: float = 0.0,
    adaptive_stop_px: float | None = None,
) -> pd.DataFrame:
    """Link detections into tracks by position, regardless of class.

    Parameters
    ----------
    df : DataFrame
        Detections ``frame,row,col,class,score`` (row/col in px; other columns are kept).
        Positions should be drift-corrected (see :mod:`stem2d.evolution.drift`).
    search_range_px : float
        Largest displacement of one defect between two linked frames, in px.
    memory : int, default 2
        Gap closing: a defect may go undetected for up to ``memory`` frames and keep its track.
    class_change_cost_px : float, default 0.0
        Extra distance (px) charged for a link between different classes: the linking distance
        is ``sqrt(displacement**2 + cost**2)`` and must stay within ``search_range_px``. 0 links
        on position only.
    adaptive_stop_px : float or None, default None
        If a sub-network is too large to solve, trackpy retries with a smaller search range,
        down to this value (px); None uses ``search_range_px / 4``.

    Returns
    -------
    DataFrame
        Columns ``track,frame,row,col,class,score`` (then any extra input columns), sorted by
        track and frame; ``track`` is int64, numbered 0.. in order of first appearance.
    """
    det = check_detections(df)
    if not search_range_px > 0:
        raise ValueError(f"search_range_px={search_range_px!r}: must be > 0")
    if int(memory) < 0:
        raise ValueError(f"memory={memory!r}: must be >= 0")
    if not 0 <= class_change_cost_px < search_range_px:
        raise ValueError(
            f"class_change_cost_px={class_change_cost_px!r}: must be >= 0 and below search_range_px={search_range_px!r}"
        )
    extra = [c for c in det.columns if c not in TRACK_COLUMNS + ("particle",)]
    if det.empty:
        return det.assign(track=np.zeros(0, dtype=np.int64))[list(TRACK_COLUMNS) + extra]
    stop = search_range_px / 4 if adaptive_stop_px is None else adaptive_stop_px
    trackpy.quiet()
    with warnings.catch_warnings():  # trackpy 0.7 sorts in place, deprecated by pandas >= 3.1
        warnings.filterwarnings("ignore", message=".*inplace keyword.*")
        linked = _link(det, search_range_px, int(memory), class_change_cost_px, stop)
    firsts = linked.sort_values(["frame", "row", "col"]).groupby("particle", sort=False).head(1)
    order = {p: i for i, p in enumerate(firsts["particle"])}
    linked["track"] = linked["particle"].map(order).astype(np.int64)
    out = linked[list(TRACK_COLUMNS) + extra]
    out = out.sort_values(["track", "frame"], kind="stable").reset_index(drop=True)
    log.info("linked %d detections in %d frames into %d tracks", len(out), out["frame"].nunique(), len(order))
    return out


def _link(det: pd.DataFrame, search_range_px: float, memory: int, cost_px: float, stop_px: float) -> pd.DataFrame:
    """trackpy.link on (row, col) plus, with a class-change cost, a scaled one-hot class embedding."""
    table = det.drop(columns=["track", "particle"], errors="ignore")
    pos = ["row", "col"]
    if cost_px > 0:
        codes, names = pd.factorize(table["class"])
        onehot = (cost_px / np.sqrt(2)) * np.eye(len(names))[codes]
        pos = pos + [f"_class_dim{i}" for i in range(len(names))]
        table = pd.concat([table, pd.DataFrame(onehot, columns=pos[2:], index=table.index)], axis=1)
    linked = trackpy.link(
        table.sort_values("frame", kind="stable"), search_range_px, memory=memory, pos_columns=pos,
        t_column="frame", adaptive_stop=stop_px, adaptive_step=0.9,
    )
    return linked.drop(columns=pos[2:])


def _match_frame(pred_xy: np.ndarray, true_xy: np.ndarray, max_dist_px: float) -> np.ndarray:
    """For each truth point, the index of its matched prediction (Hungarian, within max_dist), or -1."""
    match = np.full(len(true_xy), -1, dtype=np.int64)
    if len(pred_xy) == 0 or len(true_xy) == 0:
        return match
    dist = cdist(true_xy, pred_xy)
    cost = np.where(dist <= max_dist_px, dist, 1e6 + dist)
    ti, pi = linear_sum_assignment(cost)
    ok = dist[ti, pi] <= max_dist_px
    match[ti[ok]] = pi[ok]
    return match


def link_recovery_counts(pred_tracks: pd.DataFrame, truth_tracks: pd.DataFrame, *, max_dist_px: float) -> dict:
    """Counts behind :func:`link_recovery`.

    Returns
    -------
    dict
        ``n_true_links`` (truth pairs in frames t, t+1 of the same truth track),
        ``n_linkable`` (those whose both ends matched a prediction within ``max_dist_px``),
        ``n_recovered`` (linkable ones whose matched predictions share a predicted track).
    """
    for name, table in (("pred_tracks", pred_tracks), ("truth_tracks", truth_tracks)):
        missing = [c for c in ("track", "frame", "row", "col") if c not in table.columns]
        if missing:
            raise ValueError(f"{name}: missing column(s) {missing} (have {list(table.columns)})")
    truth = truth_tracks.reset_index(drop=True)
    pred = pred_tracks.reset_index(drop=True)
    pred_track_of_truth = np.full(len(truth), -1, dtype=np.int64)
    pred_groups = {f: g for f, g in pred.groupby("frame")}
    for frame, grp in truth.groupby("frame"):
        p = pred_groups.get(frame)
        if p is None:
            continue
        m = _match_frame(p[["row", "col"]].to_numpy(float), grp[["row", "col"]].to_numpy(float), max_dist_px)
        ok = m >= 0
        pred_track_of_truth[grp.index.to_numpy()[ok]] = p["track"].to_numpy()[m[ok]]
    t = truth.assign(_pred=pred_track_of_truth).sort_values(["track", "frame"])
    same = t["track"].to_numpy()[1:] == t["track"].to_numpy()[:-1]
    consecutive = same & (np.diff(t["frame"].to_numpy()) == 1)
    a, b = t["_pred"].to_numpy()[:-1][consecutive], t["_pred"].to_numpy()[1:][consecutive]
    linkable = (a >= 0) & (b >= 0)
    return {
        "n_true_links": int(consecutive.sum()),
        "n_linkable": int(linkable.sum()),
        "n_recovered": int((linkable & (a == b)).sum()),
    }


def link_recovery(pred_tracks: pd.DataFrame, truth_tracks: pd.DataFrame, *, max_dist_px: float) -> float:
    """Fraction of true frame-to-frame links that the predicted tracks recover.

    In every frame, truth points are matched one-to-one to predicted detections within
    ``max_dist_px`` (Hungarian assignment on distance). A true link joins the same truth track
    in frames t and t+1; it is *recovered* when the predictions matched to both ends belong to the
    same predicted track. Links with an unmatched end (a missed detection) cannot be recovered
    by any linker and are left out of the denominator; see :func:`link_recovery_counts`.

    Parameters
    ----------
    pred_tracks, truth_tracks : DataFrame
        Tables with ``track,frame,row,col`` (px).
    max_dist_px : float
        Largest truth-to-prediction distance of a match, in px.

    Returns
    -------
    float
        ``n_recovered / n_linkable`` in [0, 1]; NaN when no true link is linkable.
    """
    counts = link_recovery_counts(pred_tracks, truth_tracks, max_dist_px=max_dist_px)
    if counts["n_linkable"] == 0:
        return float("nan")
    return counts["n_recovered"] / counts["n_linkable"]
