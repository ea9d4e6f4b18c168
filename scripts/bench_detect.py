"""Defect-site detection on held-out synthetic movies: Fourier labels (both) vs the U-Net.

Usage::

    python scripts/bench_detect.py                                 # bundled U-Net, 2 movies x 3 frames
    python scripts/bench_detect.py --ckpt outputs/.../last.ckpt --movies 4 --frames 5 --json out.json
    python scripts/bench_detect.py --skip-fourier --dose 2e4

Every method sees the frame resampled to 0.3 A/px and returns positions that are mapped back to
input-frame pixels; a detection is a true positive when the Hungarian matching pairs it with a
true defect site within 1.5 A (``stem2d.predict.scoring``). Per-class numbers are recalls (the methods
do not classify). The U-Net speed is the wall time of :func:`stem2d.predict.pixelmap.predict_frame` on a
512 x 512 frame at 0.3 A/px with ``torch.set_num_threads(--threads)``: best and median of
``--repeats`` (the machine may be shared: the load average is printed beside it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from stem2d import CANONICAL_PIXEL_SIZE_A
from stem2d.lattice import lattice_points, maksov_points
from stem2d.lattice.scale import resample, resample_factors, to_input_coords
from stem2d.materials import get_material
from stem2d.models.loading import load_pixel_predictor
from stem2d.predict.pixelmap import extract_defects, predict_frame
from stem2d.predict.scoring import match_points
from stem2d.sim.movie import MovieConfig, simulate_movie

log = logging.getLogger("bench_detect")
DEFAULT_CKPT = Path(__file__).resolve().parents[1] / "stem2d" / "weights" / "unet_ws2.ckpt"
MATCH_DIST_A = 1.5


def evaluate(detect: Callable[[np.ndarray], np.ndarray], movies: list, frames: int) -> dict:
    """Detection precision / recall / F1 and per-class recall of ``detect`` (canonical frame ->
    (N, 2) canonical positions) over the first ``frames`` frames of each movie."""
    tp = n_pred = n_true = 0
    per_class: dict[str, list[int]] = {}
    seconds = []
    for movie in movies:
        for k in range(min(frames, len(movie.frames))):
            frame = movie.frames[k]
            factors = resample_factors(frame.shape, from_pixel_size_A=movie.pixel_size_A)
            canonical = resample(frame, from_pixel_size_A=movie.pixel_size_A)
            start = time.perf_counter()
            pos = to_input_coords(detect(canonical), factors)
            seconds.append(time.perf_counter() - start)
            truth = movie.truth[movie.truth["frame"] == k]
            pi, ti = match_points(pos, truth[["row", "col"]].to_numpy(), max_dist=MATCH_DIST_A / movie.pixel_size_A)
            tp, n_pred, n_true = tp + len(pi), n_pred + len(pos), n_true + len(truth)
            classes = truth["class"].to_numpy()
            for c in np.unique(classes):
                hit = per_class.setdefault(str(c), [0, 0])
                hit[0] += int((classes[ti] == c).sum())
                hit[1] += int((classes == c).sum())
    return {
        "precision": tp / n_pred if n_pred else None, "recall": tp / n_true if n_true else None,
        "f1": 2 * tp / (n_pred + n_true) if n_pred + n_true else None, "tp": tp, "n_pred": n_pred,
        "n_true": n_true, "recall_per_class": {c: h / n for c, (h, n) in sorted(per_class.items())},
        "n_true_per_class": {c: n for c, (_, n) in sorted(per_class.items())},
        "seconds_per_frame": float(np.median(seconds)) if seconds else None,
    }


def unet_detector(model, *, threshold: float, tile: int | None) -> Callable[[np.ndarray], np.ndarray]:
    """Canonical frame -> positions with a trained PixelPredictor."""
    def detect(canonical: np.ndarray) -> np.ndarray:
        prob = predict_frame(model.net, canonical, tile=tile)
        return extract_defects(prob, threshold=threshold, min_dist_px=1.2 / CANONICAL_PIXEL_SIZE_A)[0]
    return detect


def time_unet(model, *, tile: int | None, repeats: int, size: int = 512) -> dict:
    """Wall time (ms, best and median) and CPU time (ms, median) of predict_frame on a
    ``size`` x ``size`` frame."""
    frame = np.random.default_rng(0).normal(size=(size, size)).astype(np.float32)
    predict_frame(model.net, frame, tile=tile)  # warm-up
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        predict_frame(model.net, frame, tile=tile)
        wall.append(1e3 * (time.perf_counter() - start))
        cpu.append(1e3 * (time.process_time() - start_cpu))
    return {"best_ms": min(wall), "median_ms": float(np.median(wall)), "cpu_ms": float(np.median(cpu)),
            "tile": tile}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=Path, default=DEFAULT_CKPT, help="PixelPredictor checkpoint")
    parser.add_argument("--seed", type=int, default=1000, help="first held-out movie seed")
    parser.add_argument("--movies", type=int, default=2)
    parser.add_argument("--frames", type=int, default=3, help="frames scored per movie")
    parser.add_argument("--dose", type=float, default=None, help="dose e/A^2 (default: MovieConfig's)")
    parser.add_argument("--pixel-size-A", type=float, default=None, help="default: random 0.15-0.35")
    parser.add_argument("--threshold", type=float, default=0.5, help="U-Net probability threshold")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--skip-fourier", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)

    kw = {"n_frames": args.frames, "pixel_size_A": args.pixel_size_A}
    if args.dose is not None:
        kw["dose_e_per_A2"] = args.dose
    movies = [simulate_movie(MovieConfig(**kw), args.seed + i) for i in range(args.movies)]
    material = get_material(movies[0].config.material)
    results: dict[str, dict] = {}
    if not args.skip_fourier:
        results["fourier_maksov"] = evaluate(lambda f: maksov_points(f, material=material), movies, args.frames)
        results["fourier_lattice"] = evaluate(lambda f: lattice_points(f, material=material), movies, args.frames)
    model = load_pixel_predictor(args.ckpt)
    results["unet"] = evaluate(unet_detector(model, threshold=args.threshold, tile=None), movies, args.frames)
    speed = {str(t): time_unet(model, tile=t, repeats=args.repeats) for t in (None, 256)}
    load = os.getloadavg()[0]

    classes = sorted({c for r in results.values() for c in r["recall_per_class"]})
    head = f"{'method':16s} {'P':>6s} {'R':>6s} {'F1':>6s} " + " ".join(f"{c[:10]:>10s}" for c in classes) + "   s/frame"
    print(f"held-out movies seeds {args.seed}..{args.seed + args.movies - 1}, {args.frames} frames each, "
          f"pixel sizes {[round(m.pixel_size_A, 3) for m in movies]} A/px, match within {MATCH_DIST_A} A")
    print(head)
    for name, r in results.items():
        cells = " ".join(f"{r['recall_per_class'].get(c, float('nan')):10.3f}" for c in classes)
        print(f"{name:16s} {r['precision']:6.3f} {r['recall']:6.3f} {r['f1']:6.3f} {cells}   {r['seconds_per_frame']:.3f}")
    print("n true per class: " + ", ".join(f"{c} {n}" for c, n in results['unet']['n_true_per_class'].items()))
    for tile, s in speed.items():
        print(f"U-Net predict_frame 512x512 (tile={tile}): best {s['best_ms']:.1f} ms, median "
              f"{s['median_ms']:.1f} ms (CPU {s['cpu_ms']:.1f} ms), {args.threads} threads, load average {load:.1f}")
    if args.json is not None:
        args.json.write_text(json.dumps({"results": results, "speed": speed, "load_average": load,
                                         "args": {k: str(v) for k, v in vars(args).items()}}, indent=2))


if __name__ == "__main__":
    main()
