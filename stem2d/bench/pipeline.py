"""Benchmark 2: the whole movie pipeline on synthetic movies with truth.

``run_movie`` (``detector=unet``, scored beside its ``score.baseline=lattice`` Fourier-lattice detector
with the same classifier) on ``n_movies`` seeds at each dose; ``detector=grid`` (the original
study's windows on a grid) once, beside the Maksov FFT baseline (``score.baseline=fourier``).
Scores pool the matched / detected / true counts of all frames (``stem2d.predict.scoring``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter
from tqdm.auto import tqdm

from stem2d.bench import movies
from stem2d.bench.config import BenchConfig, Checkpoints
from stem2d.bench.report import Section, Table, unavailable
from stem2d.evolution.plots import save_figure
from stem2d.predict.scoring import prf

log = logging.getLogger(__name__)

TITLE = "2. Pipeline on synthetic movies"


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def pool(scores: Sequence[dict]) -> dict:
    """Pool ``score_detections`` results: sum their counts, recompute the ratios."""
    def pooled(parts):
        return prf(*(sum(p[k] for p in parts) for k in ("tp", "n_pred", "n_true")))

    matched = sum(s["n_matched"] for s in scores)
    class_ok = sum(s["n_class_correct"] for s in scores)
    classes = list(scores[0]["per_class"]) if scores else []
    return {"detection": pooled([s["detection"] for s in scores]), "n_matched": matched,
            "class_accuracy": _ratio(class_ok, matched),
            "per_class": {c: pooled([s["per_class"][c] for s in scores]) for c in classes}}


def _runs(cfg: BenchConfig, ckpts: Checkpoints, work: Path) -> dict:
    """Every run of this section: {(dose, seed): summary} and the grid run."""
    jobs = [(d, s) for d in cfg.movie_doses_e_per_A2 for s in cfg.movie_seeds]
    out = {}
    for d, s in tqdm(jobs, desc="pipeline movies"):
        ov = [*movies.model_overrides(ckpts), *movies.movie_overrides(cfg, seed=s, n_frames=cfg.movie_frames,
                                                                       dose_e_per_A2=d),
              "score.baseline=lattice", "outputs.evolution=false"]
        out[(d, s)] = movies.run(cfg, ov, run_dir=work / f"unet_{d:g}_{s}")
    s0 = cfg.movie_seeds[0]
    ov = [*movies.model_overrides(ckpts), *movies.movie_overrides(cfg, seed=s0, n_frames=cfg.grid_frames,
                                                                   dose_e_per_A2=cfg.default_dose_e_per_A2,
                                                                   detector="grid"),
          "score.baseline=fourier", "outputs.evolution=false"]
    out["grid"] = movies.run(cfg, ov, run_dir=work / "grid")
    return out


def run(cfg: BenchConfig, ckpts: Checkpoints, out: Path, work: Path) -> Section:
    """Measure the pipeline; figures go to ``out``, run folders to ``work``."""
    missing = [str(p) for p in (ckpts.cam_cnn, ckpts.unet) if not p.is_file()]
    if missing:
        return unavailable(TITLE, f"missing checkpoint(s): {', '.join(missing)}")
    runs = _runs(cfg, ckpts, work)
    d0, seeds = cfg.default_dose_e_per_A2, cfg.movie_seeds
    head = [runs[(d0, s)] for s in seeds]
    grid = runs["grid"]
    sec = Section(TITLE)
    sec.paragraphs.append(
        f"Settings: `run_movie` on synthetic WS2 movies of conf/synthetic/ws2.yaml (random pixel size and "
        f"rotation per seed), {cfg.frame_shape[0]}x{cfg.frame_shape[1]} px, {cfg.movie_frames} frames, "
        f"movie seeds {list(seeds)}, doses {[f'{d:g}' for d in cfg.movie_doses_e_per_A2]} e/A^2 (headline "
        f"{d0:g}); checkpoints `{ckpts.cam_cnn}` and `{ckpts.unet}`; a detection matches a true defect "
        f"within {head[0]['metrics']['match_dist_A']} A (Hungarian). `detector=grid` ran on seed {seeds[0]}, "
        f"{cfg.grid_frames} frame(s), beside the Maksov FFT baseline. Baselines use the same classifier.")
    rows = [("unet (pipeline)", "pipeline", head, f"{len(seeds)} x {cfg.movie_frames}"),
            ("lattice (baseline)", "baseline", head, f"{len(seeds)} x {cfg.movie_frames}"),
            ("grid (pipeline)", "pipeline", [grid], f"1 x {cfg.grid_frames}"),
            ("fourier / Maksov (baseline)", "baseline", [grid], f"1 x {cfg.grid_frames}")]
    pooled = {name: pool([r["metrics"][key] for r in rs]) for name, key, rs, _ in rows}
    t = Table(f"**Detection and classification at {d0:g} e/A^2** (movie seeds {list(seeds)}; "
              f"torch threads: {torch.get_num_threads()}).",
              ["method", "movies x frames", "precision", "recall", "F1", "class accuracy (matched)",
               "matched", "detections", "true"])
    for name, _, _, n in rows:
        p = pooled[name]
        det = p["detection"]
        t.add(name, n, det["precision"], det["recall"], det["f1"], p["class_accuracy"], det["tp"],
              det["n_pred"], det["n_true"])
    sec.tables.append(t)
    sec.tables.append(_class_table(pooled, ["unet (pipeline)", "lattice (baseline)"],
                                   f"**Per class at {d0:g} e/A^2, unet vs lattice** (seeds {list(seeds)}; "
                                   "a true positive needs a match and the same class)."))
    sec.tables.append(_class_table(pooled, ["grid (pipeline)", "fourier / Maksov (baseline)"],
                                   f"**Per class, grid vs Maksov FFT** (seed {seeds[0]}, {cfg.grid_frames} frame(s))."))
    sec.tables.append(_dose_table(cfg, runs))
    table, mean_abs = _pixel_table(cfg, runs)
    sec.tables.append(table)
    sec.paragraphs.append(f"Pixel size from the lattice: mean absolute error {mean_abs:.3f} % over "
                          f"{len(table.rows)} movies (table below).")
    fig = _dose_figure(cfg, runs)
    save_figure(fig, out / "bench_pipeline_vs_dose.png")
    sec.figures.append(("bench_pipeline_vs_dose.png", "pipeline F1 vs dose"))
    return sec


def _class_table(pooled: dict, methods: list[str], caption: str) -> Table:
    classes = list(pooled[methods[0]]["per_class"])
    t = Table(caption, ["class", "true"] + [f"{m.split(' ')[0]} {k}" for m in methods
                                            for k in ("precision", "recall", "F1")])
    for c in classes:
        cells = []
        for m in methods:
            v = pooled[m]["per_class"][c]
            cells += [v["precision"], v["recall"], v["f1"]]
        t.add(c, pooled[methods[0]]["per_class"][c]["n_true"], *cells)
    return t


def _by_dose(cfg: BenchConfig, runs: dict) -> list[dict]:
    rows = []
    for d in cfg.movie_doses_e_per_A2:
        rs = [runs[(d, s)] for s in cfg.movie_seeds]
        rows.append({"dose": d, "w_peak": float(np.mean([r["synthetic"]["params"]["w_peak_counts"] for r in rs])),
                     "unet": pool([r["metrics"]["pipeline"] for r in rs]),
                     "lattice": pool([r["metrics"]["baseline"] for r in rs]),
                     "fps": float(np.mean([r["frames_per_s"] for r in rs]))})
    return rows


def _dose_table(cfg: BenchConfig, runs: dict) -> Table:
    t = Table(f"**Pipeline vs dose** (movie seeds {list(cfg.movie_seeds)}, {cfg.movie_frames} frames each; "
              "W peak: mean over the movies, whose pixel sizes differ).",
              ["dose (e/A^2)", "W peak (counts)", "unet F1", "lattice F1", "unet class accuracy",
               "lattice class accuracy", "unet frames/s"])
    for r in _by_dose(cfg, runs):
        t.add(f"{r['dose']:g}", f"{r['w_peak']:.0f}", r["unet"]["detection"]["f1"], r["lattice"]["detection"]["f1"],
              r["unet"]["class_accuracy"], r["lattice"]["class_accuracy"], r["fps"])
    return t


def _pixel_table(cfg: BenchConfig, runs: dict) -> tuple[Table, float]:
    """Per movie: true vs measured pixel size; also the mean absolute relative error (%)."""
    t = Table("**Pixel size measured from the lattice** (frame 0 of each movie; truth from the generator).",
              ["movie seed", "dose (e/A^2)", "true (A/px)", "measured (A/px)", "error (%)"])
    errors = []
    for (dose, seed), r in ((k, v) for k, v in runs.items() if k != "grid"):
        true, meas = movies.true_pixel_size(r), float(r["pixel_size_measured_A"])
        errors.append(100.0 * (meas - true) / true)
        t.add(seed, f"{dose:g}", f"{true:.5f}", f"{meas:.5f}", f"{errors[-1]:+.3f}")
    return t, float(np.mean(np.abs(errors)))


def _dose_figure(cfg: BenchConfig, runs: dict) -> Figure:
    rows = _by_dose(cfg, runs)
    fig = Figure(figsize=(5.5, 3.8), layout="constrained")
    ax = fig.add_subplot()
    w = [r["w_peak"] for r in rows]
    for key, label in (("unet", "unet (pipeline)"), ("lattice", "lattice (baseline)")):
        f1 = [np.nan if r[key]["detection"]["f1"] is None else r[key]["detection"]["f1"] for r in rows]
        ax.plot(w, f1, "o-", label=label)
    ax.set(xscale="log", xlabel="W column peak (counts per pixel)", ylabel="detection F1", ylim=(0, 1.02),
           title=f"Movie pipeline vs dose ({len(cfg.movie_seeds)} movie(s) per dose)")
    ax.set_xticks(list(w), [f"{v:.0f}" for v in w])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.grid(alpha=0.3)
    ax.legend()
    return fig
