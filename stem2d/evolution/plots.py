"""Figures of defect evolution: counts, space-time "broom", occupancy, transitions, MSD.

Figures are built with the object-oriented API (``matplotlib.figure.Figure``, rendered by Agg
when saved), never pyplot, so no GUI backend or global figure registry is touched; the pipeline
can hand the same objects to TensorBoard (``SummaryWriter.add_figure``). Empty inputs give a
figure carrying a "no data" note.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

if TYPE_CHECKING:  # pragma: no cover
    from stem2d.evolution import EvolutionResult

log = logging.getLogger(__name__)

#: Most points drawn in the 3D broom plot (a random-free stride thins larger tables).
MAX_BROOM_POINTS = 20_000


def _order(observed, classes: Sequence[str]) -> list[str]:
    """Classes in ``classes`` order (those observed), then other observed classes sorted."""
    seen = set(map(str, observed))
    return [c for c in classes if c in seen] + sorted(seen - set(classes))


def _colors(names: Sequence[str]) -> dict[str, tuple]:
    """One tab10 colour per class name; pass the same ``names`` everywhere for matching colours."""
    cmap = colormaps["tab10"]
    return {name: cmap(i % 10) for i, name in enumerate(names)}


def _no_data(title: str, note: str) -> Figure:
    fig = Figure(figsize=(5, 3.5), layout="constrained")
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, f"no data\n{note}".strip(), ha="center", va="center", wrap=True, transform=ax.transAxes)
    return fig


def plot_counts(counts: pd.DataFrame, *, classes: Sequence[str] = ()) -> Figure:
    """Defect count per class vs frame (and vs accumulated dose when ``dose_e_per_A2`` is a column).

    ``classes`` fixes the order and colours of classes (others follow, sorted).
    """
    if counts.empty or counts["count"].sum() == 0:
        return _no_data("Defect counts", "no detections")
    names = _order(counts["class"], classes)
    xs = [("frame", "frame")]
    if "dose_e_per_A2" in counts.columns:
        xs.append(("dose_e_per_A2", "accumulated dose (e/Å²)"))
    fig = Figure(figsize=(5.5 * len(xs), 3.8), layout="constrained")
    axes = fig.subplots(1, len(xs), squeeze=False)[0]
    colors = _colors(_order(counts["class"], classes))
    for ax, (key, label) in zip(axes, xs, strict=False):
        for name in names:
            sel = counts[counts["class"] == name]
            ax.plot(sel[key], sel["count"], "-o", ms=2.5, lw=1.2, color=colors[name], label=name)
        ax.set_xlabel(label)
        ax.set_ylabel("defects per frame")
    axes[0].legend(fontsize="small")
    fig.suptitle("Defect counts")
    return fig


def plot_broom(tracks: pd.DataFrame, *, frame_shape: Sequence[int], classes: Sequence[str] = ()) -> Figure:
    """3D space-time plot: (col, row) positions vs frame, coloured by class, tracks as thin lines."""
    if tracks.empty:
        return _no_data("Space-time broom plot", "no tracks")
    names = _order(tracks["class"], classes)
    colors = _colors(names)
    fig = Figure(figsize=(6.5, 5.5), layout="constrained")
    ax = fig.add_subplot(projection="3d")
    stride = max(1, int(np.ceil(len(tracks) / MAX_BROOM_POINTS)))
    for _, grp in tracks.groupby("track", sort=False):
        if len(grp) > 1 and len(grp) >= stride:
            ax.plot(grp["col"], grp["row"], grp["frame"], color="0.6", lw=0.4, alpha=0.6)
    thin = tracks.iloc[::stride]
    for name in names:
        sel = thin[thin["class"] == name]
        ax.scatter(sel["col"], sel["row"], sel["frame"], s=3, color=colors[name], label=name, depthshade=False)
    ax.set(xlabel="col (px)", ylabel="row (px)", zlabel="frame", xlim=(0, frame_shape[1]), ylim=(frame_shape[0], 0))
    ax.legend(fontsize="small", loc="upper left")
    ax.set_title("Defect positions over time")
    return fig


def plot_occupancy(
    tracks: pd.DataFrame, *, frame_shape: Sequence[int], bin_px: float = 4.0, classes: Sequence[str] = ()
) -> Figure:
    """2D histogram of defect positions over all frames, one panel per class (the first 6)."""
    if tracks.empty:
        return _no_data("Occupancy", "no tracks")
    names = _order(tracks["class"], classes)[:6]
    h, w = frame_shape
    edges_r = np.arange(0, h + bin_px, bin_px) - 0.5
    edges_c = np.arange(0, w + bin_px, bin_px) - 0.5
    ncol = min(3, len(names))
    nrow = int(np.ceil(len(names) / ncol))
    fig = Figure(figsize=(3.6 * ncol + 0.8, 3.4 * nrow), layout="constrained")
    axes = fig.subplots(nrow, ncol, squeeze=False).ravel()
    for ax, name in zip(axes, names, strict=False):
        sel = tracks[tracks["class"] == name]
        hist, _, _ = np.histogram2d(sel["row"], sel["col"], bins=(edges_r, edges_c))
        im = ax.imshow(hist, cmap="magma", extent=(edges_c[0], edges_c[-1], edges_r[-1], edges_r[0]))
        ax.set_title(f"{name} (n={len(sel)})", fontsize="medium")
        ax.set_xlabel("col (px)")
        ax.set_ylabel("row (px)")
        fig.colorbar(im, ax=ax, shrink=0.8, label="detections per bin")
    for ax in axes[len(names):]:
        ax.set_axis_off()
    fig.suptitle(f"Occupancy ({bin_px:g} px bins, all frames)")
    return fig


def plot_transitions(trans: dict) -> Figure:
    """Heat map of the row-normalised transition matrix, each cell annotated with p and its count."""
    counts, probs = trans["counts"], trans["probabilities"]
    if counts.empty or counts.to_numpy().sum() == 0:
        return _no_data("Class transitions", trans.get("note", ""))
    names = list(counts.index)
    fig = Figure(figsize=(1.2 * len(names) + 2.5, 1.0 * len(names) + 1.8), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(np.nan_to_num(probs.to_numpy(), nan=0.0), cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            p, n = probs.iat[i, j], counts.iat[i, j]
            label = "–" if not np.isfinite(p) else f"{p:.2f}\n({n})"
            ax.text(j, i, label, ha="center", va="center", fontsize="small",
                    color="white" if np.isfinite(p) and p > 0.6 else "black")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), [f"{c} (n={trans['n_transitions'].iat[i]})" for i, c in enumerate(names)])
    ax.set_xlabel("to class (frame t+1)")
    ax.set_ylabel("from class (frame t)")
    fig.colorbar(im, ax=ax, label="transition probability per frame")
    ax.set_title("Class transitions along tracks")
    return fig


def plot_msd(diff: dict) -> Figure:
    """MSD vs lag with its bootstrap interval, the fitted line 4 D t + c and the D / hop-rate result."""
    msd = diff["msd"]
    if msd.empty or diff["D_A2_per_frame"] is None:
        return _no_data(f"MSD of {diff['class']}", diff.get("note", ""))
    fig = Figure(figsize=(5.5, 4), layout="constrained")
    ax = fig.add_subplot()
    lag = msd["lag_frames"].to_numpy()
    ax.fill_between(lag, msd["ci_low_A2"], msd["ci_high_A2"], color="C0", alpha=0.25, label=f"{diff['ci']:.0%} CI")
    ax.plot(lag, msd["msd_A2"], "o", color="C0", label="MSD")
    t = np.linspace(0, lag.max(), 50)
    d, c = diff["D_A2_per_frame"], diff["intercept_A2"]
    ax.plot(t, 4 * d * t + c, "-", color="C3", label="fit 4Dt + c")
    text = f"D = {d:.3g} Å²/frame"
    if diff["D_ci_A2_per_frame"] is not None:
        lo, hi = diff["D_ci_A2_per_frame"]
        text += f" [{lo:.3g}, {hi:.3g}]"
    text += f"\nhop rate = {diff['hop_rate_per_frame']:.3g} /frame (l = {diff['hop_length_A']:g} Å)"
    text += f"\n{diff['n_tracks']} tracks, {diff['n_steps']} steps"
    ax.text(0.03, 0.97, text, transform=ax.transAxes, va="top", fontsize="small")
    ax.set(xlabel="lag (frames)", ylabel="MSD (Å²)", xlim=(0, None), ylim=(0, None))
    ax.legend(loc="lower right", fontsize="small")
    ax.set_title(f"Mean squared displacement of {diff['class']}")
    return fig


def figures(result: EvolutionResult) -> dict[str, Figure]:
    """All figures of an evolution result, by file stem (also the TensorBoard tag suffix)."""
    classes = result.transitions["classes"]
    return {
        "counts": plot_counts(result.counts, classes=classes),
        "broom": plot_broom(result.sample_tracks, frame_shape=result.frame_shape, classes=classes),
        "occupancy": plot_occupancy(result.sample_tracks, frame_shape=result.frame_shape, classes=classes),
        "transitions": plot_transitions(result.transitions),
        "msd": plot_msd(result.diffusion),
    }


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: int = 120) -> Path:
    """Save a figure as PNG through a temporary name, so a crash never leaves a half-written file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        fig.savefig(tmp, format="png", dpi=dpi)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_all(result: EvolutionResult, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write every figure of ``result`` to ``out_dir/evolution_<name>.png``; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: save_figure(fig, out_dir / f"evolution_{name}.png") for name, fig in figures(result).items()}
    log.info("wrote %d evolution figures to %s", len(paths), out_dir)
    return paths
