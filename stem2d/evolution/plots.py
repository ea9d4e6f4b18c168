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
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from stem2d.viz.style import class_styles

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
    """The class colour of each name (:mod:`stem2d.viz.style`: by name, the same in every output)."""
    return {name: st.rgb01 for name, st in class_styles(names).items()}


def _markers(names: Sequence[str]) -> dict[str, str]:
    return {name: st.mpl_marker for name, st in class_styles(names).items()}


def _integer_axis(axis) -> None:
    """Ticks on whole numbers only (frames, counts)."""
    axis.set_major_locator(MaxNLocator(integer=True))


def _no_data(title: str, note: str) -> Figure:
    fig = Figure(figsize=(5, 3.5), layout="constrained")
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, f"no data\n{note}".strip(), ha="center", va="center", wrap=True, transform=ax.transAxes)
    return fig


def plot_counts(counts: pd.DataFrame, *, classes: Sequence[str] = ()) -> Figure:
    """Defect count per class vs frame (and vs accumulated dose when ``dose_e_per_A2`` is a column).

    ``classes`` fixes the order of classes (others follow, sorted); colours and markers are the
    class style (:mod:`stem2d.viz.style`).
    """
    if counts.empty or counts["count"].sum() == 0:
        return _no_data("Defect counts", "no detections")
    names = _order(counts["class"], classes)
    xs = [("frame", "frame")]
    if "dose_e_per_A2" in counts.columns:
        xs.append(("dose_e_per_A2", "accumulated dose (e/Å²)"))
    fig = Figure(figsize=(5.5 * len(xs), 3.8), layout="constrained")
    axes = fig.subplots(1, len(xs), squeeze=False)[0]
    colors, markers = _colors(names), _markers(names)
    n_points = counts["frame"].nunique()
    for ax, (key, label) in zip(axes, xs, strict=False):
        scale = 1.0
        if key == "dose_e_per_A2" and counts[key].max() >= 1e4:  # "10⁶ e/Å²" in the label, not "1e6" at the corner
            exp = int(np.floor(np.log10(counts[key].max())))
            scale = 10.0**exp
            label = f"accumulated dose (10$^{{{exp}}}$ e/Å²)"
        for name in names:
            sel = counts[counts["class"] == name]
            ax.plot(sel[key] / scale, sel["count"], "-", marker=markers[name], ms=3.5 if n_points <= 60 else 0,
                    lw=1.3, color=colors[name], label=name)
        ax.set_xlabel(label)
        ax.set_ylabel("defects per frame")
        ax.set_ylim(bottom=0)
        _integer_axis(ax.yaxis)
        ax.grid(alpha=0.3)
    _integer_axis(axes[0].xaxis)
    axes[0].legend(fontsize="small")
    fig.suptitle("Defect counts")
    return fig


def _nm(pixel_size_A: float | None) -> tuple[float, str]:
    """Factor from px to the axis unit and the unit's name (nm when the pixel size is known)."""
    return (1.0, "px") if not pixel_size_A else (float(pixel_size_A) / 10.0, "nm")


def plot_broom(tracks: pd.DataFrame, *, frame_shape: Sequence[int], pixel_size_A: float | None = None,
               classes: Sequence[str] = ()) -> Figure:
    """3D space-time plot: (x, y) positions (nm when ``pixel_size_A`` is given) vs frame, coloured
    by class, tracks as thin lines."""
    if tracks.empty:
        return _no_data("Space-time broom plot", "no tracks")
    names = _order(tracks["class"], classes)
    colors, markers = _colors(names), _markers(names)
    f, unit = _nm(pixel_size_A)
    fig = Figure(figsize=(6.5, 5.5), layout="constrained")
    ax = fig.add_subplot(projection="3d")
    stride = max(1, int(np.ceil(len(tracks) / MAX_BROOM_POINTS)))
    for _, grp in tracks.groupby("track", sort=False):
        if len(grp) > 1 and len(grp) >= stride:
            ax.plot(grp["col"] * f, grp["row"] * f, grp["frame"], color="0.6", lw=0.4, alpha=0.6)
    thin = tracks.iloc[::stride]
    for name in names:
        sel = thin[thin["class"] == name]
        ax.scatter(sel["col"] * f, sel["row"] * f, sel["frame"], s=4, color=colors[name], marker=markers[name],
                   label=name, depthshade=False)
    ax.set(xlabel=f"x ({unit})", ylabel=f"y ({unit})", zlabel="frame",
           xlim=(0, frame_shape[1] * f), ylim=(frame_shape[0] * f, 0))
    _integer_axis(ax.zaxis)
    ax.legend(fontsize="small", loc="upper left", markerscale=2)
    ax.set_title("Defect positions over time")
    return fig


def _class_cmap(rgb01: tuple[float, float, float]):
    """White -> the class colour -> a darker shade of it: density in the class's own colour."""
    from matplotlib.colors import LinearSegmentedColormap

    dark = tuple(0.35 * c for c in rgb01)
    return LinearSegmentedColormap.from_list("class", [(1, 1, 1), rgb01, dark])


def plot_occupancy(
    tracks: pd.DataFrame, *, frame_shape: Sequence[int], pixel_size_A: float | None = None,
    bandwidth_A: float = 3.0, n_frames: int | None = None, classes: Sequence[str] = (),
) -> Figure:
    """Where each class sits: a kernel density of its positions over all frames, one panel per class.

    Parameters
    ----------
    tracks : DataFrame
        ``frame, row, col, class`` (px; drift-corrected positions are best).
    frame_shape : (int, int)
        Frame size in px.
    pixel_size_A : float, optional
        Å/px; axes in nm and density per nm² when given (else px and per px²).
    bandwidth_A : float, default 3.0
        Gaussian kernel sigma in Å (about one lattice constant: a site that holds a defect in
        many frames is one spot). In px when ``pixel_size_A`` is None.
    n_frames : int, optional
        Frames the positions come from (default: the distinct frames in ``tracks``); the map is
        the time-averaged number of defects per unit area, so it integrates to the mean count per frame.
    """
    from scipy.ndimage import gaussian_filter

    if tracks.empty:
        return _no_data("Occupancy", "no tracks")
    names = _order(tracks["class"], classes)[:9]
    colors = _colors(names)
    f, unit = _nm(pixel_size_A)
    sigma_px = bandwidth_A / pixel_size_A if pixel_size_A else bandwidth_A
    n_frames = int(n_frames or tracks["frame"].nunique() or 1)
    h, w = (int(v) for v in frame_shape)
    edges_r, edges_c = np.arange(h + 1) - 0.5, np.arange(w + 1) - 0.5
    ncol = min(3, len(names))
    nrow = int(np.ceil(len(names) / ncol))
    fig = Figure(figsize=(3.7 * ncol + 0.6, 3.5 * nrow + 0.4), layout="constrained")
    axes = fig.subplots(nrow, ncol, squeeze=False).ravel()
    extent = (-0.5 * f, (w - 0.5) * f, (h - 0.5) * f, -0.5 * f)
    for ax, name in zip(axes, names, strict=False):
        sel = tracks[tracks["class"] == name]
        hist, _, _ = np.histogram2d(sel["row"], sel["col"], bins=(edges_r, edges_c))
        density = gaussian_filter(hist, sigma_px, mode="reflect") / (n_frames * f * f)
        im = ax.imshow(density, cmap=_class_cmap(colors[name]), extent=extent, vmin=0, interpolation="bilinear")
        ax.set_title(f"{name} ({len(sel)} detections)", fontsize="medium")
        ax.set_xlabel(f"x ({unit})")
        ax.set_ylabel(f"y ({unit})")
        fig.colorbar(im, ax=ax, shrink=0.85, label=f"defects per {unit}² (mean over frames)")
    for ax in axes[len(names):]:
        ax.set_axis_off()
    bw = f"{bandwidth_A:g} Å" if pixel_size_A else f"{bandwidth_A:g} px"
    fig.suptitle(f"Occupancy: kernel density (σ = {bw}) over {n_frames} frames")
    return fig


def plot_transitions(trans: dict) -> Figure:
    """Heat map of the row-normalised transition matrix, each cell annotated with p and its count."""
    counts, probs = trans["counts"], trans["probabilities"]
    if counts.empty or counts.to_numpy().sum() == 0:
        return _no_data("Class transitions", trans.get("note", ""))
    names = list(counts.index)
    ylabels = [f"{c} (n={trans['n_transitions'].iat[i]})" for i, c in enumerate(names)]
    label_in = 0.075 * max(len(t) for t in ylabels)  # room for the longest tick label (inches)
    fig = Figure(figsize=(0.85 * len(names) + 2.4 + label_in, 0.75 * len(names) + 1.5 + 0.5 * label_in),
                 layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(np.nan_to_num(probs.to_numpy(), nan=0.0), cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            p, n = probs.iat[i, j], counts.iat[i, j]
            label = "–" if not np.isfinite(p) else f"{p:.2f}\n({n})"
            ax.text(j, i, label, ha="center", va="center", fontsize="small",
                    color="white" if np.isfinite(p) and p > 0.6 else "black")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), ylabels)
    colors = _colors(names)
    for tick, name in zip(ax.get_xticklabels() + ax.get_yticklabels(), names + names, strict=False):
        tick.set_color(tuple(0.75 * c for c in colors[name]))  # a shade darker: readable on white
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
    colour = _colors([diff["class"]])[diff["class"]]
    ax.fill_between(lag, msd["ci_low_A2"], msd["ci_high_A2"], color=colour, alpha=0.25, label=f"{diff['ci']:.0%} CI")
    ax.plot(lag, msd["msd_A2"], _markers([diff["class"]])[diff["class"]], color=colour, label="MSD")
    t = np.linspace(0, lag.max(), 50)
    d, c = diff["D_A2_per_frame"], diff["intercept_A2"]
    ax.plot(t, 4 * d * t + c, "-", color="0.2", label="fit 4Dt + c")
    text = f"D = {d:.3g} Å²/frame"
    if diff["D_ci_A2_per_frame"] is not None:
        lo, hi = diff["D_ci_A2_per_frame"]
        text += f" [{lo:.3g}, {hi:.3g}]"
    text += f"\nhop rate = {diff['hop_rate_per_frame']:.3g} /frame (l = {diff['hop_length_A']:g} Å)"
    text += f"\n{diff['n_tracks']} tracks, {diff['n_steps']} steps"
    ax.text(0.03, 0.97, text, transform=ax.transAxes, va="top", fontsize="small")
    ax.set(xlabel="lag (frames)", ylabel="MSD (Å²)", xlim=(0, None), ylim=(0, None))
    _integer_axis(ax.xaxis)
    ax.legend(loc="lower right", fontsize="small")
    ax.set_title(f"Mean squared displacement of {diff['class']}")
    return fig


def figures(result: EvolutionResult) -> dict[str, Figure]:
    """All figures of an evolution result, by file stem (also the TensorBoard tag suffix)."""
    classes = result.transitions["classes"]
    return {
        "counts": plot_counts(result.counts, classes=classes),
        "broom": plot_broom(result.sample_tracks, frame_shape=result.frame_shape, pixel_size_A=result.pixel_size_A,
                            classes=classes),
        "occupancy": plot_occupancy(result.sample_tracks, frame_shape=result.frame_shape,
                                    pixel_size_A=result.pixel_size_A, n_frames=result.n_frames, classes=classes),
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


def save_all(result: EvolutionResult, out_dir: str | os.PathLike, *, skip: Sequence[str] = ()) -> dict[str, Path]:
    """Write every figure of ``result`` but those named in ``skip`` to ``out_dir/evolution_<name>.png``.

    The movie pipeline skips ``counts``: it writes the same figure as the run's ``counts.png``.
    Returns the paths by figure name.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: save_figure(fig, out_dir / f"evolution_{name}.png")
             for name, fig in figures(result).items() if name not in skip}
    log.info("wrote %d evolution figures to %s", len(paths), out_dir)
    return paths
