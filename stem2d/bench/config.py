"""Benchmark settings: the full run (docs/results.md, < 30 min on 2 CPU cores) and a tiny quick one.

Seeds: every random stream of the benchmark derives from one ``seed`` (default 2024) that is not
a training seed (``conf/train.yaml`` uses 12345): classifier tiles come from the ``test`` split
of a :class:`~stem2d.data.simulated.SimulatedDataModule` seeded with ``seed``, synthetic movies
use ``seed + k``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import stem2d
from stem2d.models.loading import weights_dir

#: Sections in report order.
SECTIONS: tuple[str, ...] = ("classifier", "calibration", "pipeline", "evolution", "speed", "real", "physics",
                             "physics_frames")
DEFAULT_SEED = 2024


def bundled_weight(name: str) -> Path:
    """Path of ``stem2d/weights/<name>`` (which may not exist)."""
    return weights_dir() / name


def repo_conf_dir() -> Path:
    """The Hydra ``conf/`` folder of the source tree stem2d is installed from (editable install)."""
    return Path(stem2d.__file__).resolve().parents[1] / "conf"


@dataclass(frozen=True)
class Checkpoints:
    """Weights the benchmark evaluates; a missing file makes its sections "not available"."""

    cam_cnn: Path = field(default_factory=lambda: bundled_weight("cam_cnn_ws2.ckpt"))
    seed_cnn: Path = field(default_factory=lambda: bundled_weight("seed_cnn_ws2.ckpt"))
    unet: Path = field(default_factory=lambda: bundled_weight("unet_ws2.ckpt"))
    unet_fast: Path = field(default_factory=lambda: bundled_weight("unet_ws2_fast.ckpt"))  # the speed preset
    cam_cnn_mx2: Path = field(default_factory=lambda: bundled_weight("cam_cnn_mx2.ckpt"))
    unet_mx2: Path = field(default_factory=lambda: bundled_weight("unet_mx2.ckpt"))

    def classifiers(self) -> dict[str, Path]:
        return {"cam_cnn": self.cam_cnn, "seed_cnn": self.seed_cnn}


@dataclass(frozen=True)
class BenchConfig:
    """Sizes of every measurement (see :func:`full_config` and :func:`quick_config`).

    Classifier: ``n_bases_per_class`` clean test bases per class, ``n_tiles_per_mode``
    augmented tiles for each noise mode (the same tiles, each mode's noise forced),
    ``n_tiles_per_dose`` tiles with only shot/detector noise at each of ``dose_counts`` (W-peak
    counts at 0.3 A/px). Pipeline: ``n_movies`` x ``movie_doses_e_per_A2`` synthetic movies
    of ``movie_frames`` frames of ``frame_shape`` px (``default_dose_e_per_A2`` is the headline
    row), plus ``grid_frames`` frames in ``detector=grid``. Evolution: one movie of
    ``evolution_frames`` frames, truth jittered by ``localisation_noise_A``. Speed: counts of
    simulated tiles, frames, training steps (batch ``train_batch``), inferred tiles, the U-Net
    frame side ``unet_frame_px`` and end-to-end frames (``python infer.py`` in a subprocess when
    ``e2e_subprocess``, else ``run_movie`` in this process; each variant ``e2e_repeats`` times).
    ``detect_tile_px`` overrides the pipeline's U-Net tile (``detector.tile_size_px``; None keeps
    conf/detector/unet.yaml's). Physics: ``physics_tiles_per_set`` tiles per row of the
    physics-shift section, ``physics_frames_per_set`` U-Net frame crops per row of the
    frame-level one. Real: the first
    ``real_frames`` labelled real MoS2 frames (``stem2d.bench.real``).
    """

    name: str
    seed: int = DEFAULT_SEED
    n_bases_per_class: int = 40
    n_tiles_per_mode: int = 2000
    n_tiles_per_dose: int = 1000
    dose_counts: tuple[float, ...] = tuple(float(c) for c in np.geomspace(15.0, 500.0, 6).round(1))
    n_movies: int = 2
    movie_frames: int = 10
    frame_shape: tuple[int, int] = (512, 512)
    movie_doses_e_per_A2: tuple[float, ...] = (1.5e4, 5e4, 1.5e5)
    default_dose_e_per_A2: float = 5e4
    grid_frames: int = 5
    evolution_frames: int = 40
    localisation_noise_A: float = 0.2
    speed_tiles: int = 500
    speed_frames: int = 5
    train_steps: int = 5
    train_batch: int = 128
    infer_tiles: int = 1024
    e2e_frames: int = 20
    e2e_repeats: int = 2
    e2e_subprocess: bool = True
    large_frame_px: int | None = 2048  # end-to-end rows on a large-frame movie too (None: skipped)
    large_frames: int = 10  # frames 3..10 give the once-running rate (6 gave 0.8-0.96 frames/s run to run)
    unet_frame_px: int = 512
    detect_tile_px: int | None = None
    real_frames: int = 4
    physics_tiles_per_set: int = 600
    physics_frames_per_set: int = 24
    conf_dir: Path = field(default_factory=repo_conf_dir)

    def __post_init__(self) -> None:
        counts = {k: getattr(self, k) for k in (
            "n_bases_per_class", "n_tiles_per_mode", "n_tiles_per_dose", "n_movies", "movie_frames", "grid_frames",
            "evolution_frames", "speed_tiles", "speed_frames", "train_steps", "train_batch",
            "infer_tiles", "e2e_frames", "e2e_repeats", "unet_frame_px", "real_frames", "large_frames",
            "physics_tiles_per_set", "physics_frames_per_set")}
        for key, value in counts.items():
            if int(value) < 1:
                raise ValueError(f"{key}={value} must be >= 1")
        if self.evolution_frames < 3:
            raise ValueError(f"evolution_frames={self.evolution_frames} must be >= 3 (tracks need frames)")
        if self.default_dose_e_per_A2 not in self.movie_doses_e_per_A2:
            raise ValueError(f"default_dose_e_per_A2={self.default_dose_e_per_A2} must be one of "
                             f"movie_doses_e_per_A2={list(self.movie_doses_e_per_A2)}")
        if int(self.seed) < 0:
            raise ValueError(f"seed={self.seed} must be >= 0")
        if not (self.conf_dir / "infer.yaml").is_file():
            raise FileNotFoundError(f"conf_dir={str(self.conf_dir)!r} has no infer.yaml (run from a source "
                                    "checkout of stem2d, or pass --conf)")

    @property
    def tile_seed(self) -> int:
        """Seed of the held-out classifier tiles (``test`` split of the simulated data)."""
        return int(self.seed)

    @property
    def movie_seeds(self) -> tuple[int, ...]:
        """Seeds of the pipeline movies: ``seed, seed + 1, ...``."""
        return tuple(int(self.seed) + k for k in range(int(self.n_movies)))

    @property
    def evolution_seed(self) -> int:
        """Seed of the longer evolution movie (distinct from the pipeline movies)."""
        return int(self.seed) + 100


def full_config(*, seed: int = DEFAULT_SEED, conf_dir: Path | None = None) -> BenchConfig:
    """The settings behind docs/results.md (about 15-25 min on 2 CPU cores)."""
    kw = {} if conf_dir is None else {"conf_dir": Path(conf_dir)}
    return BenchConfig("full", seed=seed, **kw)


def quick_config(*, seed: int = DEFAULT_SEED, conf_dir: Path | None = None) -> BenchConfig:
    """Tiny settings for a smoke run (the test suite): every code path, seconds of work."""
    kw = {} if conf_dir is None else {"conf_dir": Path(conf_dir)}
    return BenchConfig(
        "quick", seed=seed, n_bases_per_class=1, n_tiles_per_mode=20, n_tiles_per_dose=10,
        dose_counts=(15.0, 500.0), n_movies=1, movie_frames=1, frame_shape=(160, 160),
        movie_doses_e_per_A2=(1.5e4, 5e4), grid_frames=1, evolution_frames=4, speed_tiles=20,
        speed_frames=2, train_steps=1, train_batch=8, infer_tiles=64, e2e_frames=2, e2e_repeats=1, e2e_subprocess=False,
        large_frame_px=None,
        unet_frame_px=128, detect_tile_px=128, real_frames=1, physics_tiles_per_set=40,
        physics_frames_per_set=1, **kw)
