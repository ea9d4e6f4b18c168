"""Benchmark 1b: are the classifier's probabilities calibrated? Reliability diagram and ECE of the
bundled classifier on the benchmark's held-out simulated tiles (all noise modes, the benchmark
seed: never the tiles the temperature was fitted on, seed 31337), before and after the temperature
stored beside its weights (:mod:`stem2d.models.temperature`; ``p_class`` in detections.csv is the
scaled probability).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from stem2d.bench.classifier import held_out_data, render
from stem2d.bench.config import BenchConfig, Checkpoints
from stem2d.bench.report import Section, Table, unavailable
from stem2d.evolution.plots import save_figure
from stem2d.models.loading import load_classifier
from stem2d.models.temperature import (
    apply_temperature,
    expected_calibration_error,
    load_temperature,
    reliability,
    temperature_path,
)
from stem2d.predict.classify import classify_tiles

log = logging.getLogger(__name__)

TITLE = "1b. Probability calibration of the classifier (reliability, ECE)"
N_BINS = 10


def _nll(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None))))


def reliability_figure(curves: dict[str, dict]) -> Figure:
    """Accuracy vs confidence per curve (bins with tiles), the diagonal, and the tile counts."""
    fig = Figure(figsize=(4.6, 4.2), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="calibrated")
    for name, r in curves.items():
        ok = r["count"] > 0
        ax.plot(r["confidence"][ok], r["accuracy"][ok], marker="o", ms=4, label=name)
    ax.set(xlabel="confidence (top probability)", ylabel="accuracy", xlim=(0, 1.02), ylim=(0, 1.02))
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def run(cfg: BenchConfig, ckpts: Checkpoints, out: Path, work: Path) -> Section:
    """ECE / NLL / accuracy before and after the stored temperature, and the reliability diagram."""
    if not ckpts.cam_cnn.is_file():
        return unavailable(TITLE, f"missing checkpoint: {ckpts.cam_cnn}")
    model = load_classifier(ckpts.cam_cnn)
    temperature = load_temperature(ckpts.cam_cnn)
    ds = held_out_data(cfg).datasets["test"]
    n = min(cfg.n_tiles_per_mode, len(ds))
    tiles = render(ds, n, noise=None, desc="calibration")
    probs = classify_tiles(model, tiles.tiles, bf16=False).probs
    scaled = apply_temperature(probs, temperature)
    sec = Section(TITLE)
    stored = temperature_path(ckpts.cam_cnn)
    sec.paragraphs.append(
        f"{n} held-out tiles (benchmark seed {cfg.seed}, all noise modes, movie surroundings) through "
        f"`{ckpts.cam_cnn.name}`; temperature {temperature:.3f} "
        + (f"from `{stored.name}` (fitted by `python scripts/fit_temperature.py` on other simulated tiles, "
           "never on real labels)." if stored.is_file() else "(none stored: probabilities are not scaled)."))
    table = Table(f"Calibration ({N_BINS} equal-width confidence bins):",
                  ["probabilities", "accuracy", "mean confidence", "ECE", "NLL"])
    curves = {}
    for name, p in (("raw", probs), (f"T = {temperature:.2f}", scaled)):
        r = reliability(p, tiles.labels, n_bins=N_BINS)
        curves[name] = r
        table.add(name, float((p.argmax(1) == tiles.labels).mean()), float(p.max(1).mean()),
                  expected_calibration_error(p, tiles.labels, n_bins=N_BINS), _nll(p, tiles.labels))
    sec.tables.append(table)
    low = float((probs.max(1) < 0.9).mean())
    sec.paragraphs.append(f"{100 * low:.1f} % of the tiles have a raw confidence below 0.9, so the left "
                          "part of the diagram rests on few tiles; ECE weights every bin by its tiles.")
    save_figure(reliability_figure(curves), out / "bench_reliability.png")
    sec.figures.append(("bench_reliability.png", "reliability diagram of the classifier"))
    return sec
