"""Write synthetic movies to disk, and the command that makes one.

    python -m stem2d.sim.movie_cli --out movie.tif --frames 20 --seed 0 \\
        [--dose 5e4] [--pixel-size-A 0.25] [--size 512] [--<any MovieConfig field> VALUE]

writes ``movie.tif`` (multi-page float32 ImageJ TIFF, pixel size in the calibration),
``movie_truth.csv`` (the truth table) and ``movie.json`` (config and true parameters) and prints
the path of the TIFF.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import typing
from dataclasses import fields
from pathlib import Path

import numpy as np

from stem2d.io.tables import truth_path
from stem2d.sim.movie import MovieConfig, SyntheticMovie, simulate_movie

__all__ = ["write_movie", "truth_path", "metadata_path", "main"]

log = logging.getLogger(__name__)

_TIF_SUFFIXES = (".tif", ".tiff")


def metadata_path(path: str | Path) -> Path:
    """``<stem>.json`` beside the movie file (the readers' sidecar: it holds ``pixel_size_A``)."""
    return Path(path).with_suffix(".json")


def write_movie(movie: SyntheticMovie, path: str | Path, *, progress: bool = False) -> Path:
    """Write a movie as a float32 ImageJ TIFF stack, with its truth CSV and JSON beside it.

    Frames are rendered and written one at a time (bounded memory). Everything is written to
    temporary names first and renamed at the end (TIFF last), so a crash never leaves a
    complete-looking movie.

    Parameters
    ----------
    movie : SyntheticMovie
    path : str or Path
        Output ``.tif``/``.tiff``; its folder is created if needed.
    progress : bool, default False
        Show a tqdm progress bar over frames.

    Returns
    -------
    Path of the TIFF. The pixel size is stored as ImageJ calibration (XResolution in pixels per
    nm, ``unit='nm'``) and as ``pixel_size_A`` at the top of the JSON.
    """
    import tifffile
    from tqdm import tqdm

    path = Path(path)
    if path.suffix.lower() not in _TIF_SUFFIXES:
        raise ValueError(f"movie path {str(path)!r} must end in .tif or .tiff")
    path.parent.mkdir(parents=True, exist_ok=True)
    targets = [truth_path(path), metadata_path(path), path]
    temps = [p.with_name(f".{p.stem}.tmp{os.getpid()}{p.suffix}") for p in targets]
    n, h, w = movie.shape
    px_per_nm = 10.0 / movie.pixel_size_A
    try:
        movie.truth.to_csv(temps[0], index=False)
        meta = {"pixel_size_A": movie.pixel_size_A, "source": movie.source, "shape": [n, h, w],
                "hop_length_A": movie.hop_length_A, "params": movie.params,
                "config": movie.config.to_dict(), "drift_px": movie.drift_px.tolist()}
        temps[1].write_text(json.dumps(meta, indent=1))
        frames = tqdm(movie.frames, total=n, desc="frames", unit="frame", disable=not progress)
        with tifffile.TiffWriter(temps[2], imagej=True) as tif:
            tif.write((np.asarray(f, dtype=np.float32) for f in frames), shape=(n, h, w),
                      dtype=np.float32, resolution=(px_per_nm, px_per_nm),
                      metadata={"axes": "TYX", "unit": "nm", "finterval": 1.0})
        for tmp, target in zip(temps, targets):
            os.replace(tmp, target)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
    log.info("wrote %s (%d frames of %dx%d at %.4f A/px), %s, %s", path, n, h, w,
             movie.pixel_size_A, targets[0].name, targets[1].name)
    return path


def _float_or_none(text: str) -> float | None:
    return None if text.strip().lower() in ("none", "null", "") else float(text)


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    """One ``--field-name`` option per MovieConfig field, typed from its annotation."""
    aliases = {"n_frames": ["--frames"], "dose_e_per_A2": ["--dose"], "frame_shape": ["--size"]}
    hints = typing.get_type_hints(MovieConfig)
    group = parser.add_argument_group("MovieConfig fields (defaults as in conf/synthetic/ws2.yaml)")
    for f in fields(MovieConfig):
        hint = hints[f.name]
        flags = [f"--{f.name.replace('_', '-')}", *aliases.get(f.name, [])]
        kw: dict = {"dest": f.name, "default": None, "help": f"default: {f.default}"}
        if typing.get_origin(hint) is tuple:
            elem = typing.get_args(hint)[0]
            kw.update(type=elem, nargs="+", metavar="N")
            if f.name == "frame_shape":
                kw["help"] += " (one value: square)"
        elif type(None) in typing.get_args(hint):
            kw.update(type=_float_or_none, help=kw["help"] + " ('none': random)")
        else:
            kw["type"] = hint
        group.add_argument(*flags, **kw)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stem2d.sim.movie_cli",
        description="Simulate a synthetic HAADF movie with beam-driven defect dynamics and write "
                    "<out>.tif, <out-stem>_truth.csv and <out-stem>.json.")
    parser.add_argument("--out", required=True, type=Path, help="output .tif path")
    parser.add_argument("--seed", type=int, default=0, help="movie seed (default: 0)")
    parser.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_config_options(parser)
    return parser


def config_from_args(args: argparse.Namespace) -> MovieConfig:
    """MovieConfig from parsed options (options not given keep the dataclass defaults)."""
    given = {f.name: getattr(args, f.name) for f in fields(MovieConfig)
             if getattr(args, f.name) is not None}
    shape = given.get("frame_shape")
    if shape is not None and len(shape) == 1:
        given["frame_shape"] = (shape[0], shape[0])
    return MovieConfig(**given)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = config_from_args(args)
        movie = simulate_movie(cfg, args.seed)
        path = write_movie(movie, args.out, progress=not args.no_progress)
    except ValueError as err:
        parser.error(str(err))
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
