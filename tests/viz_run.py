"""A tiny finished run folder (made in tmp_path, no pipeline run) for the report and napari tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

CLASSES = {"pristine": [], "mo_dopant": ["Mo_W"], "s_vacancy": ["V_S", "V_S2"], "w_vacancy": ["V_W"],
           "w_dopant": ["W_S2", "W_S"]}


def make_run(root: Path, *, n_frames: int = 3, size: int = 64, evidence: bool = True) -> Path:
    """A run folder: movie.npy as the source, summary.json, detections.csv (with evidence columns),
    evolution/tracks.csv, counts.png, cam_heat.npy (binned 2x) and a log with one warning."""
    from stem2d.evolution.analysis import counts_per_frame
    from stem2d.evolution.plots import plot_counts, save_figure

    run = root / "run"
    (run / "evolution").mkdir(parents=True)
    rng = np.random.default_rng(0)
    movie = root / "movie.npy"
    np.save(movie, rng.poisson(50, size=(n_frames, size, size)).astype(np.float32))
    rows = []
    for k in range(n_frames):
        rows.append((k, 10.0 + k, 20.0, "s_vacancy", 0.91))
        rows.append((k, 40.0, 30.0, "mo_dopant", 0.99))
    det = pd.DataFrame(rows, columns=["frame", "row", "col", "class", "score"])
    if evidence:
        det["sublattice"] = np.where(det["class"] == "mo_dopant", "metal", "chalcogen")
        det["intensity_rel"] = 0.8
    det.to_csv(run / "detections.csv", index=False)
    tracks = det[["frame", "row", "col", "class", "score"]].assign(track=(det["class"] == "mo_dopant").astype(int))
    tracks.to_csv(run / "evolution" / "tracks.csv", index=False)
    counts = counts_per_frame(det, n_frames=n_frames, classes=["mo_dopant", "s_vacancy"], frame_area_nm2=1.0)
    save_figure(plot_counts(counts, classes=["mo_dopant", "s_vacancy"]), run / "counts.png", dpi=40)
    np.save(run / "cam_heat.npy", np.zeros((n_frames, size // 2, size // 2), np.uint8))
    (run / "infer.log").write_text("[2026-01-01 00:00:00][stem2d][WARNING] - metadata pixel size off by 12 %\n")
    summary = {
        "stem2d_version": "0.1.0", "source": str(movie), "n_frames": n_frames, "frame_shape": [size, size],
        "pixel_size_A": 0.25, "pixel_size_measured_A": 0.25, "pixel_size_metadata_A": 0.28, "material": "WS2",
        "mode": "unet", "class_names": list(CLASSES), "counts_total": {"mo_dopant": n_frames, "s_vacancy": n_frames},
        "mean_defects_per_frame": 2.0, "frames_per_s": 5.0, "peak_rss_mb": 700.0,
        "timings_s": {"analyse": 1.5, "overlay": 0.02}, "settings": {"classes": CLASSES, "seed": 0},
        "evolution": {"notes": ["too few tracks for diffusion"]},
    }
    (run / "summary.json").write_text(json.dumps(summary))
    return run
