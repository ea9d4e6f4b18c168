"""Command: ``python -m stem2d.evolution PATH`` analyses the defect evolution of an infer run.

PATH is an infer run folder (``detections.csv`` and ``summary.json``) or a detections CSV (then
give ``--pixel-size-A`` and ``--frame-shape``, or ``--frames``). From a run folder it repeats the
pipeline's analysis exactly: the same confirmed detections (``unknown`` rows left out), the drift
measured while streaming (``drift_px``), material, classes, dose and ``evolution.*`` settings of
``summary.json``; options given on the command line win. Outputs go to ``<folder>/evolution/``
(beside the detections CSV), or into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from stem2d.classes import ClassSet
from stem2d.evolution import evolve
from stem2d.io.tables import read_detections
from stem2d.predict.evidence import UNKNOWN

log = logging.getLogger("stem2d.evolution")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m stem2d.evolution", description=__doc__.split("\n\n")[0])
    p.add_argument("path", type=Path, help="infer run folder or detections CSV")
    p.add_argument("--pixel-size-A", type=float, help="angstrom per px (required for a bare CSV)")
    p.add_argument("--frame-shape", type=int, nargs=2, metavar=("H", "W"), help="frame size in px")
    p.add_argument("--n-frames", type=int, help="number of frames (default: from frames or detections)")
    p.add_argument("--frames", type=Path, help="movie (.npy or .tif, shape T x H x W) to measure the drift again")
    p.add_argument("--dose-per-frame", type=float, help="electron dose per frame, e/A^2")
    p.add_argument("--frame-time-s", type=float, help="seconds per frame")
    p.add_argument("--material", help="sets the lattice constant (default: the run's, else WS2)")
    p.add_argument("--diffusing-class", help="class for diffusion and creation (default: the class holding "
                   "chalcogen vacancies, s_vacancy / chalcogen_single_vacancy)")
    p.add_argument("--search-range-A", type=float, help="linking search range, angstrom (default 5)")
    p.add_argument("--class-change-cost-A", type=float, help="linking cost of a class change, angstrom (default 2.5)")
    p.add_argument("--memory", type=int, help="frames a defect may be missed (gap closing; default 2)")
    p.add_argument("--max-lag-frames", type=int, help="largest MSD lag fitted (default 4)")
    p.add_argument("--n-boot", type=int, help="bootstrap resamples for the D interval (default 200)")
    p.add_argument("--seed", type=int, help="bootstrap seed (default 0)")
    p.add_argument("--out", type=Path, help="output folder (default: evolution/ beside the detections)")
    return p


#: Command-line flags -> keyword of :func:`stem2d.evolution.evolve` (the ``evolution.*`` keys of infer.py).
_SETTINGS = {"diffusing_class": "diffusing_class", "search_range_A": "search_range_A",
             "class_change_cost_A": "class_change_cost_A", "memory": "memory", "max_lag_frames": "max_lag_frames",
             "frame_time_s": "frame_time_s", "n_boot": "n_boot", "seed": "rng"}


def _settings(args: argparse.Namespace, meta: dict) -> dict:
    """``evolve`` keywords: the run's ``settings.evolution`` (summary.json), then the flags given."""
    run = (meta.get("settings") or {}).get("evolution")
    kwargs = {k: v for k, v in run.items() if k in _SETTINGS.values()} if isinstance(run, dict) else {}
    kwargs.update({key: getattr(args, flag) for flag, key in _SETTINGS.items() if getattr(args, flag) is not None})
    return kwargs


def _read_inputs(args: argparse.Namespace) -> tuple[pd.DataFrame, dict, Path]:
    """Detections table, metadata from summary.json (or {}), and the default output folder."""
    path: Path = args.path
    if path.is_dir():
        csv, meta_path = path / "detections.csv", path / "summary.json"
        for f in (csv, meta_path):
            if not f.is_file():
                raise FileNotFoundError(f"{f}: not found (an infer run folder holds detections.csv and summary.json)")
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{meta_path}: not valid JSON ({err})") from None
    elif path.is_file():
        csv, meta = path, {}
    else:
        raise FileNotFoundError(f"{path}: no such file or folder")
    return read_detections(csv), meta, csv.parent


def _class_set(meta: dict) -> ClassSet | list[str]:
    """The run's classes: a ClassSet with kinds from ``settings.classes`` of summary.json when it
    holds the same names as ``class_names``, else the bare names (pristine left out)."""
    names = [c for c in meta.get("class_names", ()) if c != "pristine"]
    mapping = (meta.get("settings") or {}).get("classes")
    if isinstance(mapping, dict):
        try:
            classes = ClassSet.from_mapping(mapping)
        except ValueError:
            return names
        if set(names) <= set(classes.names):
            return classes
    return names


def _read_frames(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"--frames {path}: not found")
    if path.suffix == ".npy":
        return np.load(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(path)
    raise ValueError(f"--frames {path}: expected a .npy or .tif/.tiff stack")


def _pick(value, meta: dict, key: str, flag: str, path: Path):
    """The command-line value, else ``meta[key]``; ValueError naming both when neither is there."""
    if value is None:
        value = meta.get(key)
    if value is None:
        raise ValueError(f"{path}: {key} unknown; give {flag} (or {key!r} in summary.json)")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        detections, meta, folder = _read_inputs(args)
        detections = detections[detections["class"] != UNKNOWN]  # as the pipeline: flagged candidates are no claims
        frames = None if args.frames is None else _read_frames(args.frames)
        if frames is not None:
            meta.setdefault("frame_shape", list(frames.shape[1:]))
        pixel_size_A = _pick(args.pixel_size_A, meta, "pixel_size_A", "--pixel-size-A", args.path)
        frame_shape = _pick(args.frame_shape, meta, "frame_shape", "--frame-shape H W", args.path)
        n_frames = args.n_frames if args.n_frames is not None else meta.get("n_frames")
        dose = args.dose_per_frame if args.dose_per_frame is not None else \
            (meta.get("settings") or {}).get("dose_per_frame")
        classes = _class_set(meta)
        drift = None if frames is not None or meta.get("drift_px") is None else np.asarray(meta["drift_px"], float)
        result = evolve(
            detections, pixel_size_A=float(pixel_size_A), frame_shape=tuple(frame_shape), frames=frames,
            drift_px=drift, dose_per_frame=dose, n_frames=n_frames, classes=classes,
            material=args.material or meta.get("material") or "WS2", **_settings(args, meta),
        )
        # a run folder has its own counts.png (the pipeline's evolution/ skips its copy too)
        paths = result.write(args.out or folder / "evolution",
                             skip_figures=("counts",) if args.path.is_dir() else ())
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    d = result.diffusion
    log.info("%d tracks; %s hop rate %s /frame; summary: %s", result.tracks["track"].nunique(), d["class"],
             "n/a" if d["hop_rate_per_frame"] is None else f"{d['hop_rate_per_frame']:.3g}", paths["summary"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
