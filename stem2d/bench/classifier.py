"""Benchmark 1: the tile classifiers on freshly simulated held-out tiles.

Tiles come from the ``test`` split of a :class:`~stem2d.data.simulated.SimulatedDataModule`
seeded with the benchmark seed (never a training seed), with the training augmentation; every
noise mode is applied to the same tiles (paired comparison). The dose curve keeps only shot and
detector noise at a fixed dose. CAM localisation is scored on correctly classified defect tiles.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter
from torchmetrics.functional.classification import (
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)
from tqdm.auto import tqdm

from stem2d.bench.config import BenchConfig, Checkpoints
from stem2d.bench.report import NOT_AVAILABLE, Section, Table, unavailable
from stem2d.data.simulated import SimulatedDataModule, SimulatedTileDataset
from stem2d.evolution.plots import save_figure
from stem2d.models.cam import localisation_errors
from stem2d.models.classifier import confusion_figure
from stem2d.models.loading import load_classifier
from stem2d.predict.classify import classify_tiles
from stem2d.sim.imaging import Acquisition

log = logging.getLogger(__name__)

TITLE = "1. Tile classifiers on held-out simulated tiles"
ISOLATED = "no neighbours"


@dataclass(frozen=True)
class TileSet:
    """Raw tiles (counts or [0, 1] images), their class index and true defect (row, col) in px."""

    tiles: np.ndarray
    labels: np.ndarray
    pos: np.ndarray


def held_out_data(cfg: BenchConfig, *, isolated: bool = False) -> SimulatedDataModule:
    """The simulated-data module of the benchmark's held-out tiles (``test`` split, set up).

    ``isolated``: the same bases without neighbouring defects or displaced dopants.
    """
    n = max(cfg.n_tiles_per_mode, cfg.n_tiles_per_dose)
    alone = {"neighbour_density_per_nm2": 0.0, "max_dopant_offset_A": 0.0} if isolated else {}
    dm = SimulatedDataModule(None, seed=cfg.tile_seed, n_test_bases_per_class=cfg.n_bases_per_class,
                             n_test_samples=n, num_workers=0, persistent_workers=False, **alone)
    dm.setup("test")
    return dm


def render(ds: SimulatedTileDataset, n: int, *, noise: int | None, desc: str) -> TileSet:
    """The first ``n`` samples of ``ds`` (noise mode index forced unless None)."""
    tiles, labels, pos = [], [], []
    for i in tqdm(range(n), desc=desc, unit="tile", leave=False):
        s = ds.sample(i, noise=noise)
        tiles.append(s.image.astype(np.float32))
        labels.append(ds.bases.label[ds.base_index(i)])
        pos.append(s.pos)
    return TileSet(np.stack(tiles), np.asarray(labels, np.int64), np.asarray(pos, np.float64))


def dose_of_counts(w_peak_counts: float, pixel_size_A: float) -> float:
    """Dose (e/A^2) at which a pristine W column peaks at ``w_peak_counts`` counts."""
    return float(w_peak_counts) / Acquisition(dose_e_per_A2=1.0).peak_counts(pixel_size_A)


def at_dose(ds: SimulatedTileDataset, dose_e_per_A2: float) -> SimulatedTileDataset:
    """Same bases and geometry stream, fixed dose, physical noise only (mode ``dose``)."""
    params = replace(ds.params, dose_range_e_per_A2=(dose_e_per_A2, dose_e_per_A2), noise_modes=("dose",),
                     noise_probabilities=None)
    return SimulatedTileDataset(ds.bases, n_samples=len(ds), seed=ds.seed, params=params)


def scores(pred: np.ndarray, labels: np.ndarray, n_classes: int) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix (torchmetrics)."""
    p, t = torch.from_numpy(pred), torch.from_numpy(labels)
    kw = {"num_classes": n_classes, "average": "none"}
    return {
        "n": len(labels),
        "acc": float((pred == labels).mean()) if len(labels) else None,
        "macro_f1": float(multiclass_f1_score(p, t, n_classes, average="macro")),
        "precision": multiclass_precision(p, t, **kw).numpy(),
        "recall": multiclass_recall(p, t, **kw).numpy(),
        "f1": multiclass_f1_score(p, t, **kw).numpy(),
        "confmat": multiclass_confusion_matrix(p, t, n_classes).numpy(),
    }


@dataclass(frozen=True)
class Predictions:
    """What is kept of a classifier run: predicted class and CAM peak (row, col) px per tile."""

    labels: np.ndarray
    cam_pos: np.ndarray


def cam_errors_A(pred: Predictions, truth: TileSet, *, pristine: int,
                 pixel_size_A: float) -> tuple[np.ndarray, np.ndarray]:
    """CAM-peak error (A; NaN for a flat CAM) and class of every correctly classified defect tile."""
    ok = (pred.labels == truth.labels) & (truth.labels != pristine)
    err = localisation_errors(pred.cam_pos[ok], truth.pos[ok], pixel_size_A=pixel_size_A)
    return err, truth.labels[ok]


def _dose_figure(curves: dict[str, list[float]], counts) -> Figure:
    fig = Figure(figsize=(5.5, 3.8), layout="constrained")
    ax = fig.add_subplot()
    for name, acc in curves.items():
        ax.plot(counts, acc, "o-", label=name)
    ax.set(xscale="log", xlabel="W column peak (counts per pixel, 0.3 A/px)", ylabel="accuracy",
           ylim=(0, 1.02), title="Tile accuracy vs dose (shot + detector noise only)")
    ax.set_xticks(list(counts), [f"{v:.0f}" for v in counts])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def _evaluate(cfg: BenchConfig, ds: SimulatedTileDataset, models: dict, doses: list[float],
              n_classes: int, isolated: SimulatedTileDataset) -> tuple[dict, dict]:
    """Classify every tile set with every model, one set in memory at a time.

    Returns ``{model: {set: (Predictions, scores)}}`` and ``{set: TileSet without the images}``.
    """
    modes = ds.params.noise_modes
    jobs = [(m, ds, i, cfg.n_tiles_per_mode) for i, m in enumerate(modes)]
    jobs.append((ISOLATED, isolated, None, cfg.n_tiles_per_mode))
    jobs += [(f"dose:{c}", at_dose(ds, d), 0, cfg.n_tiles_per_dose) for c, d in zip(cfg.dose_counts, doses)]
    res: dict[str, dict] = {k: {} for k in models}
    truth = {}
    for key, dset, noise, n in tqdm(jobs, desc="tile sets"):
        ts = render(dset, n, noise=noise, desc=key)
        for k, model in models.items():
            r = classify_tiles(model, ts.tiles)
            res[k][key] = (Predictions(r.labels, r.cam_pos), scores(r.labels, ts.labels, n_classes))
        truth[key] = TileSet(np.zeros((0, 0, 0), np.float32), ts.labels, ts.pos)
    return res, truth


def run(cfg: BenchConfig, ckpts: Checkpoints, out: Path) -> Section:
    """Measure every available classifier; figures go to ``out``."""
    paths = ckpts.classifiers()
    present = {k: p for k, p in paths.items() if p.is_file()}
    if not present:
        return unavailable(TITLE, "no classifier checkpoint (" + ", ".join(str(p) for p in paths.values()) + ")")
    dm = held_out_data(cfg)
    ds, names, modes = dm.datasets["test"], dm.class_names, dm.noise_modes
    models = {k: load_classifier(p, expected_classes=names) for k, p in present.items()}
    pristine = names.index("pristine")
    doses = [dose_of_counts(c, ds.params.pixel_size_A) for c in cfg.dose_counts]
    isolated = held_out_data(cfg, isolated=True).datasets["test"]
    res, sets = _evaluate(cfg, ds, models, doses, len(names), isolated)
    sec = Section(TITLE)
    lo, hi = (Acquisition(d).peak_counts(ds.params.pixel_size_A) for d in ds.params.dose_range_e_per_A2)
    setting = (f"{cfg.n_bases_per_class} held-out bases per class ({len(names)} classes), `test` split of "
               f"`SimulatedDataModule(seed={cfg.tile_seed})` with the training augmentation of "
               f"conf/data/simulated.yaml (dose {ds.params.dose_range_e_per_A2[0]:.3g}-"
               f"{ds.params.dose_range_e_per_A2[1]:.3g} e/A^2, i.e. W peak {lo:.0f}-{hi:.0f} counts) and its "
               f"surroundings of a movie window (other defects at "
               f"{dm.hparams.neighbour_density_per_nm2:g} per nm^2, no closer than "
               f"{dm.hparams.min_neighbour_distance_A:g} A, dopants displaced by up to "
               f"{dm.hparams.max_dopant_offset_A:g} A); the row 'no neighbours' has the same bases alone")
    sec.paragraphs.append(
        f"Settings: {setting}; the same {cfg.n_tiles_per_mode} tiles under each noise mode. "
        f"Checkpoints: " + ", ".join(f"{k} = `{p}`" + ("" if p.is_file() else f" ({NOT_AVAILABLE})")
                                     for k, p in paths.items()) + ".")
    all_modes = {k: {"labels": np.concatenate([r[m][0].labels for m in modes]),
                     "truth": np.concatenate([sets[m].labels for m in modes])} for k, r in res.items()}
    pooled = {k: scores(v["labels"], v["truth"], len(names)) for k, v in all_modes.items()}
    sec.tables.append(_mode_table(paths, res, pooled, modes, cfg))
    sec.tables.append(_class_table(paths, pooled, names, cfg))
    for k, r in res.items():
        sec.tables.append(_class_mode_table(k, r, names, modes, cfg))
    sec.tables.append(_dose_table(paths, res, cfg, doses))
    sec.tables.append(_cam_table(paths, res, sets, modes, names, pristine, ds.params.pixel_size_A, cfg,
                                 ds.params.tile_size_px))
    curves = {k: [res[k][f"dose:{c}"][1]["acc"] for c in cfg.dose_counts] for k in res}
    save_figure(_dose_figure(curves, cfg.dose_counts), out / "bench_accuracy_vs_dose.png")
    sec.figures.append(("bench_accuracy_vs_dose.png", "accuracy vs W-peak counts"))
    for k, s in pooled.items():
        name = f"bench_confusion_{k}.png"
        fig = confusion_figure(s["confmat"], names)
        fig.suptitle(f"{k}: all noise modes, {s['n']} tiles")
        save_figure(fig, out / name)
        sec.figures.append((name, f"confusion matrix {k}"))
    return sec


def _model_cells(paths, values: dict[str, tuple], width: int) -> list:
    """Cells of every model in ``paths`` order: its values, or "not available" without a checkpoint."""
    cells = []
    for k in paths:
        cells += list(values[k]) if k in values else [NOT_AVAILABLE] * width
    return cells


def _mode_table(paths, res, pooled, modes, cfg) -> Table:
    header = ["noise mode", "tiles"] + [f"{k} {m}" for k in paths for m in ("accuracy", "macro-F1")]
    t = Table(f"**Accuracy and macro-F1 per noise mode** (seed {cfg.tile_seed}; the same tiles per mode).",
              header)
    for m in modes:
        values = {k: (r[m][1]["acc"], r[m][1]["macro_f1"]) for k, r in res.items()}
        t.add(m, cfg.n_tiles_per_mode, *_model_cells(paths, values, 2))
    values = {k: (p["acc"], p["macro_f1"]) for k, p in pooled.items()}
    t.add("all modes", cfg.n_tiles_per_mode * len(modes), *_model_cells(paths, values, 2))
    values = {k: (r[ISOLATED][1]["acc"], r[ISOLATED][1]["macro_f1"]) for k, r in res.items()}
    t.add("mixed modes, no neighbours", cfg.n_tiles_per_mode, *_model_cells(paths, values, 2))
    return t


def _class_table(paths, pooled, names, cfg) -> Table:
    header = ["class", "tiles"] + [f"{k} {m}" for k in paths for m in ("precision", "recall", "F1")]
    t = Table(f"**Per class, all noise modes pooled** (seed {cfg.tile_seed}).", header)
    any_k = next(iter(pooled))
    support = pooled[any_k]["confmat"].sum(axis=1)
    for c, name in enumerate(names):
        values = {k: (p["precision"][c], p["recall"][c], p["f1"][c]) for k, p in pooled.items()}
        t.add(name, int(support[c]), *_model_cells(paths, values, 3))
    return t


def _class_mode_table(key, res, names, modes, cfg) -> Table:
    t = Table(f"**{key}: per-class F1 by noise mode** (seed {cfg.tile_seed}, "
              f"{cfg.n_tiles_per_mode} tiles per mode).", ["class", *modes])
    for c, name in enumerate(names):
        t.add(name, *(res[m][1]["f1"][c] for m in modes))
    return t


def _dose_table(paths, res, cfg, doses) -> Table:
    header = ["W peak (counts)", "dose (e/A^2)", "tiles"] + [f"{k} {m}" for k in paths
                                                             for m in ("accuracy", "macro-F1")]
    t = Table(f"**Accuracy vs dose**: shot + detector noise only, fixed dose, 0.3 A/px, "
              f"{cfg.n_tiles_per_dose} tiles per dose (seed {cfg.tile_seed}).", header)
    for c, d in zip(cfg.dose_counts, doses):
        values = {k: (r[f"dose:{c}"][1]["acc"], r[f"dose:{c}"][1]["macro_f1"]) for k, r in res.items()}
        t.add(f"{c:g}", f"{d:.3g}", cfg.n_tiles_per_dose, *_model_cells(paths, values, 2))
    return t


def _cam_table(paths, res, sets, modes, names, pristine, pixel_size_A, cfg, tile_px: int) -> Table:
    t = Table(f"**CAM localisation error** of correctly classified defect tiles, all noise modes "
              f"(distance from the CAM peak to the true defect site; seed {cfg.tile_seed}).",
              ["model", "class", "tiles", "median error (A)", "within 1 A", "within 2 A"])
    for k in paths:
        if k not in res:
            t.add(k, "all defects", *[NOT_AVAILABLE] * 4)
            continue
        parts = [cam_errors_A(res[k][m][0], sets[m], pristine=pristine, pixel_size_A=pixel_size_A) for m in modes]
        err, cls = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        groups = [(names[c], cls == c) for c in range(len(names)) if c != pristine]
        for label, sel in [*groups, ("all defects", np.ones(len(err), bool))]:
            e = err[sel]
            ok = np.isfinite(e)
            t.add(k, label, int(sel.sum()), float(np.median(e[ok])) if ok.any() else None,
                  float((e <= 1.0).mean()) if len(e) else None, float((e <= 2.0).mean()) if len(e) else None)
    # the yardstick: the defect is always near the tile centre, so "the centre" is a locator too
    pos = np.concatenate([sets[m].pos[sets[m].labels != pristine] for m in modes])
    centre = np.full_like(pos, (tile_px - 1) / 2.0)
    e = localisation_errors(centre, pos, pixel_size_A=pixel_size_A)
    t.add("tile centre (no model)", "all defects", len(e), float(np.median(e)), float((e <= 1.0).mean()),
          float((e <= 2.0).mean()))
    return t

