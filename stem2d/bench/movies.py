"""Run the movie pipeline (``stem2d.pipeline.infer.run_movie``) on synthetic movies.

Configs are composed from ``conf/infer.yaml`` with override strings, as ``python infer.py ...``
does, so the benchmark measures exactly what the CLI runs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from stem2d.bench.config import BenchConfig, Checkpoints
from stem2d.classes import ClassSet
from stem2d.pipeline import infer
from stem2d.pipeline.utils import compose_job
from stem2d.sim.movie import SyntheticMovie

log = logging.getLogger(__name__)

#: Outputs a scoring run does not need (the speed section measures the video separately).
QUIET = ("outputs.video=false", "outputs.tensorboard=false", "outputs.progress=false")


def movie_overrides(cfg: BenchConfig, *, seed: int, n_frames: int, dose_e_per_A2: float,
                    detector: str = "unet") -> list[str]:
    """Overrides selecting one synthetic movie (the rest of ``conf/synthetic/ws2.yaml`` as is) and
    the detector (``conf/detector/<detector>.yaml``; the U-Net with the benchmark's tile)."""
    rows, cols = cfg.frame_shape
    ov = [f"seed={int(seed)}", f"synthetic.n_frames={int(n_frames)}", f"synthetic.frame_shape=[{rows},{cols}]",
          f"synthetic.dose_e_per_A2={float(dose_e_per_A2)!r}", f"detector={detector}"]
    if detector == "unet" and cfg.detect_tile_px is not None:
        ov.append(f"detector.tile_size_px={int(cfg.detect_tile_px)}")
    return ov


def quote(value) -> str:
    """A Hydra override value that stays one string whatever it holds (spaces, ``=``, quotes)."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def model_overrides(ckpts: Checkpoints) -> list[str]:
    """Overrides selecting the classifier and U-Net checkpoints."""
    return [f"ckpt_path={quote(ckpts.cam_cnn)}", f"unet_ckpt_path={quote(ckpts.unet)}"]


def run(cfg: BenchConfig, overrides: Sequence[str], *, run_dir: Path, quiet: bool = True) -> dict:
    """Compose and run the movie pipeline (``quiet``: without video, TensorBoard and progress bar);
    returns its summary dict."""
    infer_cfg = compose_job("infer", [*(QUIET if quiet else ()), *overrides], run_dir=run_dir, conf_dir=cfg.conf_dir)
    log.info("run_movie %s -> %s", " ".join(overrides), run_dir)
    return infer.run_movie(infer_cfg)


def synthetic_movie(conf_dir: Path, overrides: Sequence[str], *, run_dir: Path) -> SyntheticMovie:
    """The synthetic movie (with truth) that ``run_movie`` sees for the same overrides."""
    infer_cfg = compose_job("infer", overrides, run_dir=run_dir, conf_dir=conf_dir)
    classes = ClassSet.from_mapping(OmegaConf.to_container(infer_cfg.classes, resolve=True))
    return infer.synthetic_movie(infer_cfg, classes)


def true_pixel_size(summary: dict) -> float:
    """Pixel size the synthetic movie was rendered at (from the generator parameters)."""
    return float(summary["synthetic"]["params"]["pixel_size_A"])


def drift_error_px(measured: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """RMS and largest error (px) of a measured drift path (T, 2) against the true one."""
    measured, truth = np.asarray(measured, float).reshape(-1, 2), np.asarray(truth, float).reshape(-1, 2)
    if measured.shape != truth.shape:
        raise ValueError(f"drift paths differ in shape: measured {measured.shape}, true {truth.shape}")
    err = np.linalg.norm(measured - truth, axis=1)
    return {"rms_px": float(np.sqrt(np.mean(err**2))), "max_px": float(err.max()),
            "path_px": float(np.linalg.norm(truth[-1] - truth[0]))}
