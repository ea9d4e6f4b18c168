"""Benchmark 7: the U-Net detectors on frames of the MX2 family, in range and under physics shift.

Frame crops come from the ``test`` split of :class:`~stem2d.data.randomized_frames.RandomizedFrameDataset`
seeded with the benchmark seed (training uses 12345) with the ranges of ``conf/data/mx2_frames.yaml``:
*in range* per material, then *physics / acquisition / processing shift* with the shift sets of the
tile benchmark (:mod:`stem2d.bench.physics`), each alone, pooled over the eight materials. A last
row scores frames of the synthetic WS2 movies (``MovieConfig`` defaults, the WS2 U-Net's own
training simulator). Both detectors run as ``python infer.py detector=unet`` builds them
(``conf/detector/unet.yaml``). A detection is a true positive when matched (Hungarian) to a defect
site within 1.5 A; only sites and detections at least ``EDGE_PX`` from the crop border are counted
(sites just outside the crop may still be matched, so their blobs are not false positives).
Nothing here is used for training or model selection.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml

from stem2d import CANONICAL_PIXEL_SIZE_A
from stem2d.bench.config import BenchConfig, Checkpoints
from stem2d.bench.physics import ACQUISITION_SHIFTS, ALL_AT_ONCE, MIXED, PHYSICS_SHIFTS, PROCESSING_SHIFTS, PURE
from stem2d.bench.report import Section, Table, unavailable
from stem2d.classes import SITE_CLASS_KINDS
from stem2d.data.randomized_frames import RandomizedFrameDataModule, RandomizedFrameDataset
from stem2d.lattice.scale import resample, resample_factors, to_resampled_coords
from stem2d.predict.detectors import build_detector
from stem2d.predict.scoring import match_points, prf
from stem2d.sim.movie import MovieConfig, simulate_movie

log = logging.getLogger(__name__)

TITLE = "7. Physics shift: the U-Net detectors on MX2 frames"
MATCH_DIST_A = 1.5
#: Border (px at 0.3 A/px) left out of the scoring: a site there may have its blob half outside.
EDGE_PX = 6
#: Side of the benchmark crops at 0.3 A/px.
CROP_PX = 192
#: Acquisition pixel size outside the training range (0.2-0.4 A/px; the real dev-set frames are 0.13-0.18).
SAMPLING_SHIFTS: dict[str, dict] = {"pixel size 0.12-0.2 A/px (resampled)": {"pixel_size_range_A": (0.12, 0.2)}}
#: Site class of every (generic) defect kind of the vocabulary.
KIND_CLASS = {k: name for name, kinds in SITE_CLASS_KINDS.items() for k in kinds}


def _data(cfg: BenchConfig) -> RandomizedFrameDataModule:
    """``conf/data/mx2_frames.yaml`` values with the benchmark seed and crop size."""
    raw = yaml.safe_load((cfg.conf_dir / "data" / "mx2_frames.yaml").read_text())
    keep = {k: v for k, v in raw.items() if k not in ("_target_", "seed")}
    keep.update(seed=cfg.tile_seed, crop_px=CROP_PX)
    return RandomizedFrameDataModule(**keep)


def score(pred: np.ndarray, truth: np.ndarray, shape: tuple[int, int], *, max_dist_px: float,
          edge_px: float) -> tuple[int, int, int, np.ndarray]:
    """(tp, n_pred, n_true, matched-truth flags) counting only points ``edge_px`` inside ``shape``.

    Every prediction is matched against every site (inside the frame or not); matched pairs count
    where the site is inside, unmatched predictions and sites where they are inside.
    """
    def inner(p):
        p = np.asarray(p, dtype=float).reshape(-1, 2)
        return np.all((p >= edge_px) & (p <= np.asarray(shape) - 1 - edge_px), axis=1)

    pi, ti = match_points(pred, truth, max_dist=max_dist_px)
    t_in, p_in = inner(truth), inner(pred)
    hit = np.zeros(len(truth), bool)
    hit[ti] = True
    matched_pred = np.zeros(len(pred), bool)
    matched_pred[pi] = True
    tp = int((hit & t_in).sum())
    fp = int((~matched_pred & p_in).sum())
    return tp, tp + fp, int(t_in.sum()), hit & t_in


def _detect_all(detectors: dict, frames: list[tuple[np.ndarray, np.ndarray, tuple[str, ...]]]) -> dict:
    """Pooled counts and per-class hits of each detector over (image, sites, kinds) frames."""
    out = {}
    for name, det in detectors.items():
        tp = n_pred = n_true = 0
        per_class: dict[str, list[int]] = {}
        for image, sites, kinds in frames:
            points = det(image)[0]
            a, b, c, hit = score(points, sites, image.shape, max_dist_px=MATCH_DIST_A / CANONICAL_PIXEL_SIZE_A,
                                 edge_px=EDGE_PX)
            tp, n_pred, n_true = tp + a, n_pred + b, n_true + c
            inside = np.all((sites >= EDGE_PX) & (sites <= np.asarray(image.shape) - 1 - EDGE_PX), axis=1)
            for kind, h, ok in zip(kinds, hit, inside):
                if ok:
                    counts = per_class.setdefault(KIND_CLASS.get(kind, kind), [0, 0])
                    counts[0] += int(h)
                    counts[1] += 1
        out[name] = {**prf(tp, n_pred, n_true), "per_class": per_class}
    return out


def _crops(dm: RandomizedFrameDataModule, n: int, *, materials, physics=None, params=None,
           processing=None, settings=None) -> list:
    ds = RandomizedFrameDataset(split="test", n_samples=n, seed=dm.seed, materials=materials,
                                settings=replace(dm.settings, **(settings or {})),
                                params=replace(dm.params, **(params or {})),
                                physics=replace(dm.physics, **(physics or {})),
                                processing=replace(dm.processing, **(processing or {})), label_radius_A=1.0)
    frames = []
    for k in range(n):
        frame, image, _ = ds.sample(k)
        frames.append((image, frame.points, frame.kinds))
    return frames


def _movie_frames(cfg: BenchConfig, n_movies: int, n_frames: int) -> list:
    """Frames of default synthetic WS2 movies resampled to 0.3 A/px, with their truth sites."""
    frames = []
    for i in range(n_movies):
        movie = simulate_movie(MovieConfig(n_frames=n_frames), int(cfg.seed) + 500 + i)
        for k in range(n_frames):
            frame = movie.frames[k]
            factors = resample_factors(frame.shape, from_pixel_size_A=movie.pixel_size_A)
            truth = movie.truth[movie.truth["frame"] == k]
            sites = to_resampled_coords(truth[["row", "col"]].to_numpy(float), factors)
            frames.append((resample(frame, from_pixel_size_A=movie.pixel_size_A), sites,
                           tuple(truth["class"].astype(str))))
    return frames


def run(cfg: BenchConfig, ckpts: Checkpoints, out: Path, work: Path | None = None) -> Section:
    """P/R/F1 of the WS2 and the MX2 U-Net per material, per shift family and on WS2 movie frames."""
    paths = {"unet_ws2": Path(ckpts.unet), "unet_mx2": Path(ckpts.unet_mx2)}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        return unavailable(TITLE, f"missing checkpoint(s): {', '.join(missing)}")
    settings = yaml.safe_load((cfg.conf_dir / "detector" / "unet.yaml").read_text())
    settings = {k: v for k, v in settings.items() if k not in ("name", "ckpt_path", "device")}  # interpolations of infer.yaml
    detectors = {name: build_detector("unet", ckpt_path=p, **settings) for name, p in paths.items()}
    dm = _data(cfg)
    n = cfg.physics_frames_per_set
    sec = Section(TITLE, [
        f"Detection by `{paths['unet_ws2'].name}` (trained on synthetic WS2 movies of one contrast model) and "
        f"`{paths['unet_mx2'].name}` (physics-randomised MX2 frames, `python train.py experiment=mx2_unet`) on "
        f"{CROP_PX} px crops at 0.3 A/px from held-out seeds ({cfg.tile_seed}; {n} crops per row, 7-46 defects "
        f"per 10 nm^2 of random site classes), as `detector=unet` runs them (conf/detector/unet.yaml). Match "
        f"within {MATCH_DIST_A} A; {EDGE_PX} px borders not scored. Shift sets: those of section 6."])
    header = ["frames", "crops", "true sites", "ws2 P", "ws2 R", "ws2 F1", "mx2 P", "mx2 R", "mx2 F1"]
    everything = PURE + MIXED
    groups = [
        ("**In range, per material** (training ranges of the MX2 U-Net).",
         [(m, {"materials": [m]}) for m in everything]),
        ("**Physics and acquisition shift** (all materials): one family outside its training range.",
         [(k, {"materials": everything, "physics": v}) for k, v in PHYSICS_SHIFTS.items()]
         + [(k, {"materials": everything, "params": v}) for k, v in ACQUISITION_SHIFTS.items()]
         + [(k, {"materials": everything, "settings": v}) for k, v in SAMPLING_SHIFTS.items()]
         + [("all physics shifts at once", {"materials": everything, "physics": ALL_AT_ONCE})]),
        ("**Processing shift** (all materials): each type forced beyond its training parameters.",
         [(k, {"materials": everything, "processing": v}) for k, v in PROCESSING_SHIFTS.items()]),
    ]
    pooled: dict[str, list] = {}
    for caption, rows in groups:
        t = Table(caption, header)
        for name, kw in rows:
            frames = _crops(dm, n, **kw)
            r = _detect_all(detectors, frames)
            pooled.setdefault(caption, []).append(r)
            t.add(name, len(frames), r["unet_ws2"]["n_true"], *_cells(r))
        sec.tables.append(t)
    movie = _movie_frames(cfg, n_movies=max(1, n // 12), n_frames=3)
    r = _detect_all(detectors, movie)
    t = Table("**Synthetic WS2 movie frames** (MovieConfig defaults: the WS2 U-Net's training simulator; "
              f"seeds {cfg.seed + 500}.., frames 0-2, whole frames).", header)
    t.add("WS2 movies", len(movie), r["unet_ws2"]["n_true"], *_cells(r))
    sec.tables.append(t)
    summary = Table("**Pooled** over the rows of each group above.", ["group", "true sites", "ws2 F1", "mx2 F1"])
    for (caption, _), key in zip(groups, ("in range", "physics / acquisition shift", "processing shift")):
        f1 = {m: _pooled(pooled[caption], m) for m in detectors}
        summary.add(key, f1["unet_ws2"]["n_true"], f1["unet_ws2"]["f1"], f1["unet_mx2"]["f1"])
    sec.tables.insert(0, summary)
    sec.tables.append(_class_table(pooled[groups[0][0]]))
    return sec


def _cells(r: dict) -> list:
    return [r[m][k] for m in ("unet_ws2", "unet_mx2") for k in ("precision", "recall", "f1")]


def _pooled(results: list[dict], name: str) -> dict:
    return prf(*(sum(r[name][k] for r in results) for k in ("tp", "n_pred", "n_true")))


def _class_table(results: list[dict]) -> Table:
    t = Table("**Recall per site class**, in range, all materials pooled.", ["site class", "true", "ws2 R", "mx2 R"])
    for c in [c for c in SITE_CLASS_KINDS if c != "pristine"]:
        hits = {m: [sum(r[m]["per_class"].get(c, [0, 0])[i] for r in results) for i in (0, 1)]
                for m in ("unet_ws2", "unet_mx2")}
        n = hits["unet_ws2"][1]
        t.add(c, n, *(hits[m][0] / n if n else None for m in ("unet_ws2", "unet_mx2")))
    return t


__all__ = ["SAMPLING_SHIFTS", "TITLE", "run", "score"]
