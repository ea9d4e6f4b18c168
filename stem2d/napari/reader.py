"""napari reader: a stem2d run folder (or its ``summary.json``) as layers.

Layers, all in nm (the run's pixel size) with frame as the first axis:

- the movie (grey), read again from its source file; a synthetic movie is simulated again from
  the run's settings (same seed, same frames); when neither works, the overlay movie's frames;
- ``CAM heat`` (hidden): the class activation maps the overlay shows (``cam_heat.npy``);
- one Points layer per class, coloured and shaped as everywhere else (:mod:`stem2d.viz.style`),
  with the detection's ``class``, ``score`` and any evidence columns of ``detections.csv``
  (``sublattice``, ``intensity_rel``, ``p_class``, ...) as features, shown when hovering;
- ``tracks`` (``evolution/tracks.csv``) as a Tracks layer.

:func:`run_layers` returns napari's layer-data tuples ``(data, kwargs, layer_type)`` built from
numpy and pandas only, so it is tested without napari.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from stem2d.viz.style import HEAT_COLORMAP, class_styles, drawn_classes

log = logging.getLogger(__name__)

LayerData = tuple  # (data, kwargs, layer_type)
#: Marker diameter in Å (the overlay's markers are 2.4 Å in radius).
MARKER_DIAMETER_A = 4.8


def run_folder(path: str | os.PathLike) -> Path | None:
    """The run folder of ``path`` (the folder or its summary.json), or None if it is not a stem2d run."""
    p = Path(path)
    if p.is_file() and p.name == "summary.json":
        p = p.parent
    if p.is_dir() and (p / "summary.json").is_file() and (p / "detections.csv").is_file():
        return p
    return None


def get_reader(path: str | list[str]) -> Callable[[str], list[LayerData]] | None:
    """npe2 reader contribution: a reader function for stem2d run folders, None for anything else."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    return read_run if run_folder(path) is not None else None


def read_run(path: str | list[str]) -> list[LayerData]:
    """The layers of one run folder (see :func:`run_layers`)."""
    if isinstance(path, list):
        path = path[0]
    return run_layers(path)


def run_layers(path: str | os.PathLike, *, movie: bool = True) -> list[LayerData]:
    """Layer-data tuples of a run: movie, CAM heat (hidden), one Points layer per class, tracks.

    Parameters
    ----------
    path : path
        The run folder or its ``summary.json``.
    movie : bool, default True
        Load the movie layer (False: only the results, e.g. to lay them over a movie already open).
    """
    run = run_folder(path)
    if run is None:
        raise FileNotFoundError(f"{str(path)!r} is not a finished stem2d run (no summary.json and detections.csv)")
    summary = json.loads((run / "summary.json").read_text())
    nm = float(summary["pixel_size_A"]) / 10.0
    scale = (1.0, nm, nm)
    common = {"scale": scale, "units": ("", "nm", "nm"), "axis_labels": ("frame", "y", "x")}
    layers: list[LayerData] = []
    if movie:
        frames, name = _movie(run, summary)
        if frames is not None:
            lo, hi = np.percentile(frames[0], [0.5, 99.5]) if frames.ndim == 3 else (0, 255)
            kwargs = {**common, "name": name, "colormap": "gray", "metadata": {"pixel_size_A": summary["pixel_size_A"]}}
            if frames.ndim == 3:
                kwargs["contrast_limits"] = [float(lo), float(hi if hi > lo else lo + 1)]
            else:
                kwargs["rgb"] = True
            layers.append((frames, kwargs, "image"))
    heat = _heat(run, summary, common)
    if heat is not None:
        layers.append(heat)
    layers += _points(run, summary, common)
    tracks = _tracks(run, common)
    if tracks is not None:
        layers.append(tracks)
    return layers


def _movie(run: Path, summary: dict) -> tuple[np.ndarray | None, str]:
    n = int(summary["n_frames"])
    source = str(summary.get("source", ""))
    try:
        if source.startswith("synthetic"):
            frames = _synthetic(summary)
        else:
            from stem2d.io.readers import read_movie

            settings = summary.get("settings") or {}
            mv = read_movie(source, dataset=settings.get("dataset"), lazy=True)
            frames = mv.frames
        return np.stack([np.asarray(frames[k], dtype=np.float32) for k in range(n)]), Path(source).name or "movie"
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning("cannot read the movie %r again (%s); showing the overlay movie instead", source, err)
    mp4 = run / "overlay.mp4"
    if not mp4.is_file():
        return None, ""
    import imageio.v2 as imageio

    h = int(summary["frame_shape"][0])
    reader = imageio.get_reader(mp4)
    try:
        frames = np.stack([f[:h] for f in reader.iter_data()])
    finally:
        reader.close()
    return frames, "overlay"


def _synthetic(summary: dict):
    from stem2d.classes import ClassSet
    from stem2d.sim.movie import MovieConfig, simulate_movie

    settings = summary["settings"]
    cfg = MovieConfig(**settings["synthetic"])
    return simulate_movie(cfg, rng=int(settings["seed"]), classes=ClassSet.from_mapping(settings.get("classes"))).frames


def _heat(run: Path, summary: dict, common: dict) -> LayerData | None:
    path = run / "cam_heat.npy"
    if not path.is_file():
        return None
    heat = np.load(path, mmap_mode="r")
    bin_px = int(round(int(summary["frame_shape"][1]) / heat.shape[2])) if heat.ndim == 3 and heat.shape[2] else 1
    nm = common["scale"][1]
    kwargs = {**common, "name": "CAM heat", "colormap": HEAT_COLORMAP, "blending": "additive", "opacity": 0.5,
              "visible": False, "contrast_limits": [0, 255], "scale": (1.0, nm * bin_px, nm * bin_px),
              "translate": (0.0, nm * (bin_px - 1) / 2, nm * (bin_px - 1) / 2)}
    return heat, kwargs, "image"


def _points(run: Path, summary: dict, common: dict) -> list[LayerData]:
    det = pd.read_csv(run / "detections.csv")
    return points_layers(det, pixel_size_A=float(summary["pixel_size_A"]), scale=common["scale"],
                         class_names=summary.get("class_names") or ())


def points_layers(det: pd.DataFrame, *, pixel_size_A: float, scale: Sequence[float] | None = None, ndim: int = 3,
                  class_names: Sequence[str] = ()) -> list[LayerData]:
    """One Points layer-data tuple per class of a detections table (``frame,row,col,class,...``).

    Points are ``(frame, row, col)`` (``ndim`` 3) or ``(row, col)`` (2) in px of the layer, with
    the layer's ``scale`` (default nm from ``pixel_size_A``); every other column of ``det``
    (``class``, ``score``, evidence such as ``sublattice``, ``intensity_rel``, ``p_class``) is a
    feature, shown when the pointer is over a point. Classes in ``class_names`` order first;
    ``pristine`` is not drawn.
    """
    nm = float(pixel_size_A) / 10.0
    axes = ["frame", "row", "col"][3 - ndim:]
    scale = tuple(scale) if scale is not None else (1.0, nm, nm)[3 - ndim:]
    present = set(det["class"].astype(str))
    names = [c for c in drawn_classes(class_names) if c in present]
    names += sorted(present - set(names) - {"pristine"})
    extra = [c for c in det.columns if c not in ("frame", "row", "col")]
    layers = []
    for name, st in class_styles(names).items():
        sel = det[det["class"].astype(str) == name]
        kwargs = {"scale": scale, "units": ("", "nm", "nm")[3 - ndim:], "axis_labels": ("frame", "y", "x")[3 - ndim:],
                  "name": f"{name} ({len(sel)})", "features": {c: sel[c].to_numpy() for c in extra},
                  "symbol": st.napari_symbol, "size": MARKER_DIAMETER_A / float(pixel_size_A),
                  "face_color": "transparent", "border_color": st.hex, "border_width": 0.15,
                  "border_width_is_relative": True, "metadata": {"class": name}}
        layers.append((sel[axes].to_numpy(dtype=float), kwargs, "points"))
    return layers


def _tracks(run: Path, common: dict) -> LayerData | None:
    path = run / "evolution" / "tracks.csv"
    if not path.is_file():
        return None
    tracks = pd.read_csv(path)
    if tracks.empty:
        return None
    data = tracks[["track", "frame", "row", "col"]].to_numpy(dtype=float)
    features = {"class": tracks["class"].astype(str).to_numpy(), "score": tracks["score"].to_numpy()}
    kwargs = {**common, "name": "tracks", "features": features, "tail_length": 10, "tail_width": 1.5,
              "visible": False}
    return data, kwargs, "tracks"
