"""What the tracks say: counts and densities, vacancy diffusion, class transitions, lifetimes, creation.

Every function takes a tracks table (``track,frame,row,col,class,score``; row/col in px, drift
corrected where positions matter) and returns DataFrames or dicts. Too little data gives empty
tables, ``None`` for the numbers and a ``note`` saying why, never an exception or NaN numbers.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from stem2d.classes import ClassSet, hopping_class
from stem2d.materials import get_material

log = logging.getLogger(__name__)

#: S-S (chalcogen-chalcogen) nearest-neighbour distance of WS2 in angstrom: the lattice constant a.
DEFAULT_HOP_LENGTH_A = get_material("WS2").a_A
#: The class of the default WS2 names that holds chalcogen vacancies (``s_vacancy``).
DEFAULT_HOPPING_CLASS = hopping_class(ClassSet.from_mapping(None), get_material("WS2"))


def frame_area_nm2(frame_shape: Sequence[int], pixel_size_A: float) -> float:
    """Area of a frame of ``frame_shape = (H, W)`` px at ``pixel_size_A`` angstrom per px, in nm^2."""
    if len(frame_shape) != 2 or min(frame_shape) <= 0:
        raise ValueError(f"frame_shape={tuple(frame_shape)!r}: expected (H, W) with H, W > 0")
    if not pixel_size_A > 0:
        raise ValueError(f"pixel_size_A={pixel_size_A!r}: must be > 0")
    return float(frame_shape[0] * frame_shape[1] * pixel_size_A**2 / 100.0)


def dose_array(dose_per_frame: ArrayLike | None, n_frames: int) -> np.ndarray | None:
    """Per-frame dose (e/A^2) as a float array of length ``n_frames`` (a scalar is broadcast)."""
    if dose_per_frame is None:
        return None
    dose = np.asarray(dose_per_frame, dtype=np.float64)
    if dose.ndim == 0:
        dose = np.full(n_frames, float(dose))
    if dose.shape != (n_frames,) or not np.all(np.isfinite(dose)) or np.any(dose < 0):
        raise ValueError(
            f"dose_per_frame: expected a non-negative number or {n_frames} non-negative numbers "
            f"(one per frame, e/A^2), got shape {dose.shape}"
        )
    return dose


def counts_per_frame(
    tracks: pd.DataFrame,
    *,
    n_frames: int,
    frame_area_nm2: float,
    classes: Sequence[str] = (),
    dose_per_frame: ArrayLike | None = None,
) -> pd.DataFrame:
    """Number and areal density of defects of each class in each frame.

    Returns a long table ``frame, class, count, density_per_nm2`` with a row for every frame in
    ``[0, n_frames)`` and every class (``classes`` first, then any other observed class), zeros
    included, plus ``dose_e_per_A2`` (dose accumulated up to the end of the frame) when
    ``dose_per_frame`` (e/A^2 per frame, scalar or one per frame) is given.
    """
    names = _class_order(tracks, classes)
    counts = tracks.groupby(["frame", "class"]).size()
    index = pd.MultiIndex.from_product([range(n_frames), names], names=["frame", "class"])
    out = counts.reindex(index, fill_value=0).rename("count").reset_index()
    out["count"] = out["count"].astype(np.int64)
    out["density_per_nm2"] = out["count"] / frame_area_nm2
    dose = dose_array(dose_per_frame, n_frames)
    if dose is not None:
        out["dose_e_per_A2"] = np.cumsum(dose)[out["frame"].to_numpy()]
    return out


def _class_order(tracks: pd.DataFrame, classes: Sequence[str]) -> list[str]:
    seen = set(tracks["class"].astype(str))
    return list(classes) + sorted(seen - set(classes))


def _segments(tracks: pd.DataFrame) -> pd.DataFrame:
    """Tracks sorted by (track, frame) with ``segment``: runs of one class within one track."""
    t = tracks.sort_values(["track", "frame"], kind="stable").reset_index(drop=True)
    new = (t["track"] != t["track"].shift()) | (t["class"] != t["class"].shift())
    return t.assign(segment=np.cumsum(new.to_numpy()) - 1)


def _msd_sums(seg: pd.DataFrame, pixel_size_A: float, max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Per segment and lag (1..max_lag frames): sum of squared displacements (A^2) and pair counts."""
    ids = seg["segment"].to_numpy()
    ids = np.unique(ids, return_inverse=True)[1]
    frame = seg["frame"].to_numpy()
    pos = seg[["row", "col"]].to_numpy(np.float64) * pixel_size_A
    sums = np.zeros((ids.max() + 1 if len(ids) else 0, max_lag))
    pairs = np.zeros_like(sums)
    for k in range(1, min(max_lag, len(ids) - 1) + 1):
        lag = frame[k:] - frame[:-k]
        ok = (ids[k:] == ids[:-k]) & (lag <= max_lag)
        d2 = np.sum((pos[k:] - pos[:-k]) ** 2, axis=1)
        np.add.at(sums, (ids[:-k][ok], lag[ok] - 1), d2[ok])
        np.add.at(pairs, (ids[:-k][ok], lag[ok] - 1), 1.0)
    return sums, pairs


def _fit_msd(lags: np.ndarray, msd: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of MSD = slope * lag + intercept (intercept 0 with a single lag)."""
    ok = np.isfinite(msd)
    if ok.sum() >= 2:
        slope, intercept = np.polyfit(lags[ok], msd[ok], 1)
        return float(slope), float(intercept)
    if ok.sum() == 1:
        return float(msd[ok][0] / lags[ok][0]), 0.0
    return float("nan"), float("nan")


def diffusion(
    tracks: pd.DataFrame,
    *,
    pixel_size_A: float,
    diffusing_class: str | None = DEFAULT_HOPPING_CLASS,
    hop_length_A: float = DEFAULT_HOP_LENGTH_A,
    max_lag_frames: int = 4,
    frame_time_s: float | None = None,
    n_boot: int = 200,
    ci: float = 0.95,
    rng: int | np.random.Generator | None = None,
) -> dict:
    """Diffusion coefficient and hop rate of one class from its mean squared displacement.

    Track segments where the class is ``diffusing_class`` give squared displacements at lags
    1..``max_lag_frames`` (gaps closed by the linker included); MSD(lag) = 4 D lag + c is fitted
    by least squares, the intercept c absorbing localisation noise (4 sigma^2). For a random walk
    of hops of length l = ``hop_length_A`` (S-S distance, a = 3.18 A for WS2) at k hops per frame,
    MSD per frame = k l^2, so k = 4 D / l^2. The confidence interval (level ``ci``) comes from
    ``n_boot`` bootstrap resamples of whole tracks, drawn with ``rng``.

    Returns
    -------
    dict
        ``msd`` (DataFrame ``lag_frames, msd_A2, n_pairs, ci_low_A2, ci_high_A2``), ``D_A2_per_frame``,
        ``D_ci_A2_per_frame`` ([low, high]), ``intercept_A2``, ``hop_rate_per_frame``,
        ``hop_rate_ci_per_frame``, the same per second when ``frame_time_s`` is given
        (``D_A2_per_s``, ...), counts (``n_tracks``, ``n_segments``, ``n_steps``), the inputs, and
        ``note`` ('' when all went well). Numbers that cannot be estimated are None.
    """
    if not pixel_size_A > 0 or not hop_length_A > 0 or int(max_lag_frames) < 1:
        raise ValueError(
            f"pixel_size_A={pixel_size_A!r}, hop_length_A={hop_length_A!r}: must be > 0; "
            f"max_lag_frames={max_lag_frames!r}: must be >= 1"
        )
    if frame_time_s is not None and not frame_time_s > 0:
        raise ValueError(f"frame_time_s={frame_time_s!r}: must be > 0 or None")
    if not 0 < ci < 1:
        raise ValueError(f"ci={ci!r}: must be in (0, 1)")
    max_lag = int(max_lag_frames)
    seg = _segments(tracks)
    seg = seg[seg["class"] == diffusing_class]
    sums, pairs = _msd_sums(seg, pixel_size_A, max_lag)
    used = pairs.sum(axis=1) > 0
    sums, pairs = sums[used], pairs[used]
    seg_track = seg.groupby("segment")["track"].first().to_numpy()[used] if len(seg) else np.zeros(0)
    lags = np.arange(1, max_lag + 1, dtype=np.float64)
    out = {
        "class": diffusing_class, "hop_length_A": hop_length_A, "max_lag_frames": max_lag,
        "frame_time_s": frame_time_s, "ci": ci, "n_tracks": int(len(np.unique(seg_track))),
        "n_segments": int(used.sum()), "n_steps": int(pairs[:, 0].sum()) if len(pairs) else 0,
    }
    total_pairs = pairs.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        msd = sums.sum(axis=0) / total_pairs
    table = pd.DataFrame({"lag_frames": lags.astype(np.int64), "msd_A2": msd, "n_pairs": total_pairs.astype(np.int64)})
    table = table[table["n_pairs"] > 0].reset_index(drop=True)
    if diffusing_class is None:
        note = "no class of the class set holds chalcogen vacancies: diffusion not estimated (give diffusing_class)"
        return _finish_diffusion(out, table.assign(ci_low_A2=[], ci_high_A2=[]), None, None, note)
    if table.empty:
        note = f"no {diffusing_class!r} track segment spans two frames: diffusion not estimated"
        return _finish_diffusion(out, table.assign(ci_low_A2=[], ci_high_A2=[]), None, None, note)
    slope, intercept = _fit_msd(lags, msd)
    boot_msd, boot_slope = _bootstrap(sums, pairs, seg_track, lags, n_boot, rng)
    alpha = 100 * (1 - ci) / 2
    if boot_slope is not None and np.isfinite(boot_slope).sum() >= 2:
        slope_ci = tuple(float(v) for v in np.nanpercentile(boot_slope, [alpha, 100 - alpha]))
        with warnings.catch_warnings():  # a lag no resample reaches has an all-NaN column
            warnings.filterwarnings("ignore", message="All-NaN slice", category=RuntimeWarning)
            low, high = np.nanpercentile(boot_msd[:, table["lag_frames"].to_numpy() - 1], [alpha, 100 - alpha], axis=0)
        table["ci_low_A2"], table["ci_high_A2"] = low, high
        note = ""
    else:
        slope_ci = None
        table["ci_low_A2"], table["ci_high_A2"] = table["msd_A2"], table["msd_A2"]
        note = f"only {out['n_tracks']} {diffusing_class!r} track(s): no confidence interval"
    if len(table) == 1:
        note = (note + "; " if note else "") + "only lag 1 observed: D includes localisation noise"
    if slope <= 0:
        note = (note + "; " if note else "") + "MSD does not grow with lag: no detectable diffusion"
    return _finish_diffusion(out, table, (slope, intercept), slope_ci, note)


def _bootstrap(sums, pairs, seg_track, lags, n_boot, rng):
    """Bootstrap over tracks: per-resample MSD curves (n_boot, max_lag) and fitted slopes."""
    tracks, inverse = np.unique(seg_track, return_inverse=True)
    if len(tracks) < 2 or n_boot < 2:
        return None, None
    gen = np.random.default_rng(rng)
    weights = gen.multinomial(len(tracks), np.full(len(tracks), 1 / len(tracks)), size=n_boot)[:, inverse]
    with np.errstate(invalid="ignore", divide="ignore"):
        curves = (weights @ sums) / (weights @ pairs)
    slopes = np.array([_fit_msd(lags, c)[0] for c in curves])
    return curves, slopes


def _finish_diffusion(out: dict, table: pd.DataFrame, fit, slope_ci, note: str) -> dict:
    l2 = out["hop_length_A"] ** 2
    d = None if fit is None else fit[0] / 4
    d_ci = None if slope_ci is None else [slope_ci[0] / 4, slope_ci[1] / 4]
    out.update(
        msd=table, D_A2_per_frame=d, D_ci_A2_per_frame=d_ci,
        intercept_A2=None if fit is None else fit[1],
        hop_rate_per_frame=None if d is None else 4 * d / l2,
        hop_rate_ci_per_frame=None if d_ci is None else [4 * v / l2 for v in d_ci],
        note=note,
    )
    dt = out["frame_time_s"]
    for key in ("D_A2", "D_ci_A2", "hop_rate", "hop_rate_ci"):
        value = out[f"{key}_per_frame"]
        per_s = None if dt is None or value is None else (
            [v / dt for v in value] if isinstance(value, list) else value / dt
        )
        out[f"{key}_per_s"] = per_s
    if note:
        log.info("diffusion: %s", note)
    return out


def transitions(tracks: pd.DataFrame, *, classes: Sequence[str] = ()) -> dict:
    """First-order transition matrix between classes along tracks, per frame.

    Every pair of detections of one track in consecutive frames (t, t+1) counts one transition
    from the class at t to the class at t+1 (staying in the same class counts too); pairs across
    a closed gap are left out, since they span more than one frame.

    Returns
    -------
    dict
        ``counts`` (DataFrame, index = from class, columns = to class, int64), ``probabilities``
        (row-normalised; rows without transitions are NaN), ``n_transitions`` (Series, per from
        class), ``classes`` (list) and ``note`` ('' when there was at least one transition).
    """
    names = _class_order(tracks, classes)
    t = tracks.sort_values(["track", "frame"], kind="stable")
    code = pd.Categorical(t["class"].astype(str), categories=names).codes
    track, frame = t["track"].to_numpy(), t["frame"].to_numpy()
    ok = (track[1:] == track[:-1]) & (np.diff(frame) == 1)
    counts = np.zeros((len(names), len(names)), dtype=np.int64)
    np.add.at(counts, (code[:-1][ok], code[1:][ok]), 1)
    counts_df = pd.DataFrame(counts, index=pd.Index(names, name="from"), columns=pd.Index(names, name="to"))
    n = counts_df.sum(axis=1).rename("n_transitions")
    probs = counts_df.div(n.where(n > 0), axis=0).astype(np.float64)
    note = "" if n.sum() > 0 else "no track has detections in two consecutive frames: no transitions"
    return {"counts": counts_df, "probabilities": probs, "n_transitions": n, "classes": names, "note": note}


def lifetimes(tracks: pd.DataFrame, *, n_frames: int, classes: Sequence[str] = ()) -> dict:
    """How long defects stay in each class: class segments of tracks and a per-class summary.

    A segment is a run of one class within one track. It *ended* when its last frame is before
    the last movie frame (the class changed or the track stopped: the defect left, healed or was
    lost by the linker); otherwise it is right-censored. For a memoryless (geometric) stay the
    maximum-likelihood mean lifetime is (sum of frames at risk) / (number ended), where an ended
    segment of d frames contributes d trials and a censored one d - 1.

    Returns
    -------
    dict
        ``segments`` (DataFrame ``track, class, first_frame, last_frame, duration_frames,
        n_detections, ended``), ``summary`` (per class: ``class, n_segments, n_ended,
        mean_duration_frames, mean_lifetime_frames``; the last is NaN without an ended segment),
        ``note``.
    """
    seg = _segments(tracks)
    grouped = seg.groupby("segment")
    segments = pd.DataFrame({
        "track": grouped["track"].first(), "class": grouped["class"].first(),
        "first_frame": grouped["frame"].min(), "last_frame": grouped["frame"].max(),
        "n_detections": grouped.size(),
    }).reset_index(drop=True)
    segments["duration_frames"] = segments["last_frame"] - segments["first_frame"] + 1
    segments["ended"] = segments["last_frame"] < n_frames - 1
    trials = segments["duration_frames"] - (~segments["ended"]).astype(np.int64)
    rows = []
    for name in _class_order(tracks, classes):
        mask = segments["class"] == name
        n_ended = int(segments.loc[mask, "ended"].sum())
        rows.append({
            "class": name, "n_segments": int(mask.sum()), "n_ended": n_ended,
            "mean_duration_frames": float(segments.loc[mask, "duration_frames"].mean()) if mask.any() else np.nan,
            "mean_lifetime_frames": float(trials[mask].sum() / n_ended) if n_ended else np.nan,
        })
    columns = ["class", "n_segments", "n_ended", "mean_duration_frames", "mean_lifetime_frames"]
    summary = pd.DataFrame(rows, columns=columns)
    note = "" if len(segments) else "no tracks: no lifetimes"
    return {"segments": segments, "summary": summary, "note": note}


def creation(
    tracks: pd.DataFrame,
    *,
    n_frames: int,
    frame_shape: Sequence[int],
    pixel_size_A: float,
    created_class: str | None = DEFAULT_HOPPING_CLASS,
    edge_margin_px: float = 0.0,
    dose_per_frame: ArrayLike | None = None,
) -> dict:
    """Rate at which new defects of one class appear: tracks starting after frame 0 in that class.

    ``tracks`` must hold input-frame positions (not drift corrected): a track whose first
    detection lies within ``edge_margin_px`` of the frame edge is taken as drifting in, not
    created. Tracks restarting after a gap longer than the linker's memory count as created.

    Returns
    -------
    dict
        ``per_frame`` (DataFrame ``frame, n_created`` for frames 1..T-1), ``n_created``,
        ``rate_per_frame``, ``rate_per_nm2_per_frame`` (over the frame area inside the margin),
        ``rate_per_e_per_A2`` and ``rate_per_nm2_per_e_per_A2`` (per unit dose, when
        ``dose_per_frame`` is given; e/A^2), ``note``. Unavailable numbers are None.
    """
    h, w = frame_shape
    inner = (h - 2 * edge_margin_px, w - 2 * edge_margin_px)
    if edge_margin_px < 0 or min(inner) <= 0:
        raise ValueError(
            f"edge_margin_px={edge_margin_px!r}: must be >= 0 and leave area inside frame_shape={tuple(frame_shape)}"
        )
    area = frame_area_nm2(inner, pixel_size_A)
    first = tracks.sort_values(["track", "frame"], kind="stable").groupby("track").head(1)
    inside = (first["row"].between(edge_margin_px, h - 1 - edge_margin_px)
              & first["col"].between(edge_margin_px, w - 1 - edge_margin_px))
    new = first[(first["frame"] > 0) & (first["class"] == created_class) & inside]
    per_frame = new.groupby("frame").size().reindex(range(1, n_frames), fill_value=0)
    per_frame = per_frame.rename("n_created").rename_axis("frame").reset_index()
    out = {"class": created_class, "edge_margin_px": edge_margin_px, "per_frame": per_frame,
           "n_created": int(len(new)), "rate_per_frame": None, "rate_per_nm2_per_frame": None,
           "rate_per_e_per_A2": None, "rate_per_nm2_per_e_per_A2": None, "note": ""}
    if created_class is None:
        out["note"] = "no class of the class set holds chalcogen vacancies: no creation rate (give diffusing_class)"
        return out
    if n_frames < 2:
        out["note"] = "fewer than two frames: no creation rate"
        return out
    out["rate_per_frame"] = len(new) / (n_frames - 1)
    out["rate_per_nm2_per_frame"] = out["rate_per_frame"] / area
    dose = dose_array(dose_per_frame, n_frames)
    if dose is not None and dose[1:].sum() > 0:
        out["rate_per_e_per_A2"] = len(new) / float(dose[1:].sum())
        out["rate_per_nm2_per_e_per_A2"] = out["rate_per_e_per_A2"] / area
    return out
