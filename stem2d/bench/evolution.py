"""Benchmark 3: defect evolution (drift, tracks, hops, switching) against the generator's truth.

One longer synthetic movie. (a) Its truth defects, jittered by a small localisation noise, go
through :func:`stem2d.evolution.evolve` with the rendered frames (drift from the lattice): this
isolates the evolution code from the models. Dopant configurations A/B are kept as two classes
there, so the Mo switching probabilities can be measured. (b) The whole pipeline (``run_movie``,
``detector=unet``) on the same movie. Both are scored with ``link_recovery`` and against
``movie.params`` and ``movie.drift_px``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from stem2d.bench import movies
from stem2d.bench.config import BenchConfig, Checkpoints
from stem2d.bench.report import NOT_AVAILABLE, Section, Table
from stem2d.evolution import analysis, evolve
from stem2d.evolution.plots import save_figure
from stem2d.evolution.tracking import link_recovery_counts

log = logging.getLogger(__name__)

TITLE = "3. Defect evolution"
PERSISTENT = ("mo_dopant", "s_vacancy", "w_vacancy", "w_dopant")


def split_dopant_configs(truth: pd.DataFrame) -> pd.DataFrame:
    """Truth with ``mo_dopant`` split into ``mo_a`` / ``mo_b`` by the dopant configuration."""
    out = truth.copy()
    mo = out["class"] == "mo_dopant"
    out.loc[mo, "class"] = np.where(out.loc[mo, "config"] == "B", "mo_b", "mo_a")
    return out


def jittered(truth: pd.DataFrame, *, sigma_px: float, rng) -> pd.DataFrame:
    """Truth points as detections (``score`` 1) with Gaussian localisation noise of ``sigma_px``."""
    gen = np.random.default_rng(rng)
    det = truth[["frame", "row", "col", "class"]].assign(score=1.0).reset_index(drop=True)
    det[["row", "col"]] += gen.normal(0.0, sigma_px, (len(det), 2))
    return det


def _recovery(tracks: pd.DataFrame, truth: pd.DataFrame, max_dist_px: float) -> dict:
    c = link_recovery_counts(tracks, truth, max_dist_px=max_dist_px)
    c["recovery"] = c["n_recovered"] / c["n_linkable"] if c["n_linkable"] else None
    return c


def _stay(probs: pd.DataFrame, name: str) -> float | None:
    if name not in probs.index or name not in probs.columns:
        return None
    v = probs.loc[name, name]
    return None if not np.isfinite(v) else float(v)


def run(cfg: BenchConfig, ckpts: Checkpoints, out: Path, work: Path) -> Section:
    """Measure the evolution analysis on truth and (when the weights exist) on the pipeline."""
    ov = movies.movie_overrides(cfg, seed=cfg.evolution_seed, n_frames=cfg.evolution_frames,
                                dose_e_per_A2=cfg.default_dose_e_per_A2)
    movie = movies.synthetic_movie(cfg.conf_dir, ov, run_dir=work / "evolution_truth")
    px = movie.pixel_size_A
    match_px = 1.5 / px
    truth = movie.truth
    split = split_dopant_configs(truth)
    frames = np.stack([movie.frames[k] for k in range(len(movie.frames))])
    det = jittered(split, sigma_px=cfg.localisation_noise_A / px, rng=cfg.evolution_seed)
    res = evolve(det, pixel_size_A=px, frame_shape=frames.shape[1:], frames=frames, n_boot=200, rng=cfg.seed)
    del frames
    d = movie.drift_px
    still = split.assign(row=split["row"] - d[split["frame"], 0], col=split["col"] - d[split["frame"], 1])
    exact = {"diffusion": analysis.diffusion(still, pixel_size_A=px, n_boot=200, rng=cfg.seed),
             "transitions": analysis.transitions(split),
             "merged": analysis.transitions(truth)["probabilities"]}
    on_truth = {"recovery": _recovery(res.tracks, truth, match_px),
                "drift": movies.drift_error_px(res.drift, d), "drift_path": res.drift,
                "diffusion": res.diffusion, "transitions": res.transitions}
    pipe = None
    if ckpts.cam_cnn.is_file() and ckpts.unet.is_file():
        pipe = _pipeline(cfg, ckpts, ov, work / "evolution_pipeline", truth, d, match_px)
    p = movie.params
    sec = Section(TITLE)
    sec.paragraphs.append(
        f"Settings: synthetic movie seed {cfg.evolution_seed}, {cfg.evolution_frames} frames of "
        f"{cfg.frame_shape[0]}x{cfg.frame_shape[1]} px at {px:.4f} A/px, dose {cfg.default_dose_e_per_A2:g} "
        f"e/A^2, {len(truth)} true defect points. 'evolve on truth': truth positions + Gaussian noise "
        f"sigma {cfg.localisation_noise_A} A (seed {cfg.evolution_seed}), dopant configurations A/B as two "
        f"classes, drift from the rendered frames. 'pipeline': `run_movie` detector=unet on the same movie "
        f"(checkpoints `{ckpts.cam_cnn}`, `{ckpts.unet}`). Matches within 1.5 A; bootstrap seed {cfg.seed}.")
    if pipe is None:
        sec.paragraphs.append(f"Pipeline columns: **{NOT_AVAILABLE}** (missing checkpoint).")
    sec.tables.append(_tracking_table(on_truth, pipe))
    sec.tables.append(_hop_table(p, exact, on_truth, pipe))
    sec.tables.append(_switch_table(p, exact, on_truth))
    sec.tables.append(_persistence_table(exact, pipe))
    save_figure(_drift_figure(d, on_truth["drift_path"], None if pipe is None else pipe["drift_path"]),
                out / "bench_drift.png")
    sec.figures.append(("bench_drift.png", "drift: truth vs measured"))
    return sec


def _pipeline(cfg, ckpts, ov, run_dir: Path, truth, drift_true, match_px) -> dict:
    summary = movies.run(cfg, [*movies.model_overrides(ckpts), *ov, "score.baseline=null",
                               "outputs.evolution=true"], run_dir=run_dir)
    tracks = pd.read_csv(run_dir / "evolution" / "tracks.csv")
    ev = summary["evolution"]
    names = ev["transitions"]["classes"]
    probs = pd.DataFrame(np.array(ev["transitions"]["probabilities"], dtype=float).reshape(len(names), len(names)),
                         index=names, columns=names)
    drift = np.asarray(summary["drift_px"], float)
    return {"recovery": _recovery(tracks, truth, match_px), "drift": movies.drift_error_px(drift, drift_true),
            "drift_path": drift, "diffusion": ev["diffusion"], "merged": probs}


def _tracking_table(on_truth: dict, pipe: dict | None) -> Table:
    t = Table("**Tracking and drift** (link recovery: true frame-to-frame links whose matched detections share "
              "a track, over the links with both ends detected).",
              ["input", "link recovery", "recovered", "linkable", "true links", "drift RMS error (px)",
               "drift max error (px)", "true drift path (px)"])
    for name, r in (("evolve on truth", on_truth), ("pipeline", pipe)):
        if r is None:
            t.add(name, *[NOT_AVAILABLE] * 7)
            continue
        c, dr = r["recovery"], r["drift"]
        t.add(name, c["recovery"], c["n_recovered"], c["n_linkable"], c["n_true_links"], dr["rms_px"], dr["max_px"],
              dr["path_px"])
    return t


def _hop_table(p: dict, exact: dict, on_truth: dict, pipe: dict | None) -> Table:
    t = Table(f"**S-vacancy hop rate** per frame from the MSD (k = 4 D / a^2). Generator: isolated V_S hop "
              f"probability {p['s_vacancy_hop_prob']:g}, times {p['s_vacancy_sticky_factor']:g} per vacancy "
              f"neighbour (so clustered vacancies hop less).",
              ["input", "hop rate (1/frame)", "95% CI low", "95% CI high", "V_S tracks", "V_S steps"])
    for name, r in (("truth tracks, exact positions", {"diffusion": exact["diffusion"]}),
                    ("evolve on truth", on_truth), ("pipeline", pipe)):
        if r is None:
            t.add(name, *[NOT_AVAILABLE] * 5)
            continue
        dd = r["diffusion"]
        ci = dd["hop_rate_ci_per_frame"] or [None, None]
        t.add(name, dd["hop_rate_per_frame"], ci[0], ci[1], dd["n_tracks"], dd["n_steps"])
    return t


def _switch_table(p: dict, exact: dict, on_truth: dict) -> Table:
    t = Table(f"**Mo dopant switching** per frame between configuration A (on the W site) and B (displaced "
              f"{p['mo_b_offset_A']:g} A). Generator: P(A->B) = {p['mo_switch_prob_ab']:g}, "
              f"P(B->A) = {p['mo_switch_prob_ba']:g}. The pipeline's classifier has one `mo_dopant` class, so "
              "only truth-based inputs resolve A/B.",
              ["input", "P(A->B)", "P(B->A)", "transitions from A", "transitions from B"])
    for name, trans in (("truth tracks", exact["transitions"]), ("evolve on truth", on_truth["transitions"])):
        probs, n = trans["probabilities"], trans["n_transitions"]
        ok = {"mo_a", "mo_b"} <= set(probs.index)
        t.add(name, float(probs.loc["mo_a", "mo_b"]) if ok else None, float(probs.loc["mo_b", "mo_a"]) if ok else None,
              int(n.get("mo_a", 0)), int(n.get("mo_b", 0)))
    return t


def _persistence_table(exact: dict, pipe: dict | None) -> Table:
    t = Table("**Class persistence**: probability that a tracked defect keeps its class from one frame to the "
              "next (truth tracks vs pipeline tracks).", ["class", "truth tracks", "pipeline"])
    for c in PERSISTENT:
        t.add(c, _stay(exact["merged"], c), NOT_AVAILABLE if pipe is None else _stay(pipe["merged"], c))
    return t


def _drift_figure(truth: np.ndarray, on_truth: np.ndarray, pipe: np.ndarray | None) -> Figure:
    fig = Figure(figsize=(8, 3.4), layout="constrained")
    axes = fig.subplots(1, 2, sharex=True)
    series = [("truth", truth, "k-"), ("evolve (frames)", on_truth, "C0--")]
    if pipe is not None:
        series.append(("pipeline", pipe, "C1:"))
    for ax, axis, label in zip(axes, (0, 1), ("row", "col")):
        for name, path, style in series:
            ax.plot(np.asarray(path)[:, axis], style, label=name)
        ax.set(xlabel="frame", ylabel=f"drift {label} (px)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    return fig
