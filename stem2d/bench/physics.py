"""Benchmark 6: the MX2 family classifier on its own physics and on physics it never saw.

Held-out tiles come from the ``test`` split of :class:`~stem2d.data.mx2.MX2DataModule` seeded
with the benchmark seed (training uses 12345). *In range*: the training ranges of
``conf/data/mx2.yaml``, per material. *Physics shift*: the same scenes rendered with ranges
outside the training ones (stronger or weaker contrast exponent, channelling, probe, detector,
scan distortion, dose), each alone and all at once; *processing*: each processing type forced,
with parameters beyond the training ones; *alloy composition*: S/Se alloys at fixed x.
Nothing here is used for training or model selection.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml

from stem2d.bench.config import BenchConfig, Checkpoints
from stem2d.bench.physics_overlap import (
    SiteRatios,
    column_ratios,
    confused_pairs,
    overlap,
    sublattice_contrast,
    sublattices_alike,
)
from stem2d.bench.physics_own import default_ws2_table, own_model_table
from stem2d.bench.report import Section, Table, unavailable
from stem2d.classes import SITE_CLASS_KINDS, condition_on_material, site_label
from stem2d.data.mx2 import MX2DataModule, RandomizedTileDataset, simulate_scenes
from stem2d.materials import get_material
from stem2d.models.loading import load_classifier
from stem2d.models.precision import cpu_has_bf16
from stem2d.predict.classify import classify_tiles

log = logging.getLogger(__name__)

TITLE = "6. Physics shift: the MX2 family classifier outside its training physics"
PURE = ("WS2", "MoS2", "WSe2", "MoSe2")
MIXED = ("WSSe", "MoSSe", "WSSe_janus", "MoSSe_janus")
ALLOY_FRACTIONS = (0.05, 0.3, 0.5, 0.7, 0.95)
#: Confused pairs shown per material, and physics draws behind each class's ratio range.
TOP_CONFUSIONS = 3
RATIO_DRAWS = 1000
#: A same-site pair whose ratio ranges share at least this much counts as a physics confusion.
PHYSICS_SHARED = 0.5

#: Physics outside the training ranges (``conf/data/mx2.yaml``), one family at a time.
PHYSICS_SHIFTS: dict[str, dict] = {
    "contrast n 2.0-2.3": {"z_exponent": (2.0, 2.3)},
    "contrast n 1.1-1.3": {"z_exponent": (1.1, 1.3)},
    "species factors 0.8-1.25": {"species_factor": (0.8, 1.25), "light_metal_ratio": (0.28, 0.62)},
    "channelling c 0.35-0.6": {"second_atom_factor": (0.35, 0.6)},
    "channelling c 1.5-2.0": {"second_atom_factor": (1.5, 2.0)},
    "probe FWHM 1.2-1.4 A": {"probe_fwhm_A": (1.2, 1.4)},
    "astigmatism 0.3-0.5": {"astigmatism": (0.3, 0.5)},
    "probe tail 30-40 %": {"tail_fraction": (0.3, 0.4), "tail_fwhm_A": (4.0, 6.0)},
    "defocus ring 10-15 %": {"ring_fraction": (0.1, 0.15)},
    "detector gamma 0.75-0.9 / offset 0.1-0.2": {"detector_gamma": (0.75, 0.9), "detector_offset": (0.1, 0.2)},
}
#: Acquisition and scan outside the training ranges.
ACQUISITION_SHIFTS: dict[str, dict] = {
    "dose 3.4e3-1e4 e/A^2 (15-45 counts)": {"dose_range_e_per_A2": (3.4e3, 1.0e4)},
    "scan shear up to 0.22, jitter up to 1 px": {"max_shear": 0.22, "max_jitter_px": 1.0},
}
ALL_AT_ONCE = {"z_exponent": (2.0, 2.2), "second_atom_factor": (1.5, 1.8), "probe_fwhm_A": (1.2, 1.3),
               "astigmatism": (0.3, 0.4), "tail_fraction": (0.3, 0.35), "detector_gamma": (0.85, 0.9)}
#: Processing beyond the training ranges, one type at a time.
PROCESSING_SHIFTS: dict[str, dict] = {
    "top-hat, radius 2-3 A": {"types": ("tophat",), "tophat_radius_A": (2.0, 3.0)},
    "Gaussian, sigma 1.2-1.6 px": {"types": ("gaussian",), "gaussian_sigma_px": (1.2, 1.6)},
    "median 5 px": {"types": ("median",), "median_size_px": (5, 5)},
    "Wiener, cutoff 1.5-2.0 A": {"types": ("wiener",), "wiener_cutoff_A": (1.5, 2.0)},
    "8-bit + clipping 1.5-4 %": {"types": ("none",), "quantize_probability": 1.0, "clip_probability": 1.0,
                                 "clip_percentile": (1.5, 4.0)},
}


def _data(cfg: BenchConfig) -> MX2DataModule:
    """The benchmark's MX2 data module: ``conf/data/mx2.yaml`` values, benchmark seed and sizes."""
    with open(cfg.conf_dir / "data" / "mx2.yaml") as f:
        raw = yaml.safe_load(f)
    keep = {k: v for k, v in raw.items() if k not in ("_target_", "classes", "seed")}
    keep.update(num_workers=0, persistent_workers=False, seed=cfg.tile_seed)
    return MX2DataModule(SITE_CLASS_KINDS, **keep)


def _tiles(ds: RandomizedTileDataset, n: int) -> tuple[np.ndarray, np.ndarray]:
    tiles = np.stack([ds.sample(i).image.astype(np.float32) for i in range(n)])
    labels = np.array([ds.bases.label[ds.base_index(i)] for i in range(n)], np.int64)
    return tiles, labels


def _render(dm: MX2DataModule, *, materials, n_tiles: int, n_bases: int, physics=None, processing=None,
            params=None, second_fraction=None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Held-out tiles of ``materials`` under (shifted) ranges: tiles, labels, material of each tile."""
    bases = simulate_scenes(dm.classes, materials=materials, n_per_class=n_bases, split="test",
                            seed=dm.seed, second_fraction=second_fraction, skip_missing=True)
    ds = RandomizedTileDataset(
        bases, n_samples=n_tiles, seed=dm.seed, params=replace(dm.params, **(params or {})),
        physics=replace(dm.physics, **(physics or {})),
        processing=replace(dm.processing, **(processing or {})))
    tiles, labels = _tiles(ds, n_tiles)
    return tiles, labels, [bases.material[ds.base_index(i)] for i in range(n_tiles)]


def _classify(model, tiles: np.ndarray, labels: np.ndarray, materials: Sequence[str], names: Sequence[str], *,
              bf16: bool) -> dict:
    """Predictions of the classifier alone and as infer.py reports them for a known material
    (classes the tile's material cannot hold get probability 0)."""
    probs = classify_tiles(model, tiles, bf16=bf16).probs
    given = probs.copy()
    mats = np.asarray(materials)
    for m in set(materials):
        on = mats == m
        given[on] = condition_on_material(probs[on], names, get_material(m))
    return {"pred": probs.argmax(axis=1), "pred_given": given.argmax(axis=1), "labels": labels}


def _measure(model, dm: MX2DataModule, *, bf16: bool, **render) -> dict:
    tiles, labels, materials = _render(dm, **render)
    return _classify(model, tiles, labels, materials, dm.class_names, bf16=bf16)


def _row(name: str, r: dict, n_classes: int) -> list:
    ok = r["pred"] == r["labels"]
    recall = [ok[r["labels"] == c].mean() if (r["labels"] == c).any() else np.nan for c in range(n_classes)]
    worst = int(np.nanargmin(recall))
    return [name, len(ok), ok.mean(), (r["pred_given"] == r["labels"]).mean(), np.nanmin(recall), worst]


def run(cfg: BenchConfig, ckpts: Checkpoints, out: Path, work: Path | None = None) -> Section:
    """Accuracy and class recall in range, under physics / processing shifts and per alloy x."""
    ckpt = ckpts.cam_cnn_mx2
    if not Path(ckpt).is_file():
        return unavailable(TITLE, f"no family classifier at {ckpt}")
    dm = _data(cfg)
    names = dm.class_names
    model = load_classifier(ckpt, expected_classes=names)
    bf16 = cpu_has_bf16()
    n, nb = cfg.physics_tiles_per_set, max(1, cfg.physics_tiles_per_set // (4 * len(names)))
    sec = Section(TITLE, [
        f"Family classifier `{Path(ckpt).name}` ({len(names)} site classes) on tiles rendered from "
        f"held-out scenes (seed {cfg.tile_seed}, {n} tiles per row, {nb} scenes per class and "
        f"material set; bf16 autocast {'on' if bf16 else 'off'}). Training ranges: "
        "`conf/data/mx2.yaml` and docs/physics.md. Targets: in range >= 0.99 per material; "
        "physics shift >= 0.97 with every class recall >= 0.95. *material given*: the accuracy infer.py "
        "gives when the material is known (`material=`: site classes the tile's material cannot hold get "
        "probability 0, `stem2d.classes.condition_on_material`); the other columns are the classifier "
        "alone."])
    header = ["tiles", "n", "accuracy", "material given", "worst class recall", "worst class"]
    pooled: dict[str, list] = {"in range": [], "shift": []}

    def table(caption, rows):
        t = Table(caption, header)
        for name, kw in rows:
            r = _measure(model, dm, n_tiles=n, n_bases=nb, bf16=bf16, **kw)
            row = _row(name, r, len(names))
            row[5] = names[row[5]]
            t.add(*row)
            yield t, r

    in_range = [(m, {"materials": [m]}) for m in PURE + MIXED]
    shifted = ([(k, {"materials": PURE + MIXED, "physics": v}) for k, v in PHYSICS_SHIFTS.items()]
               + [(k, {"materials": PURE + MIXED, "params": v}) for k, v in ACQUISITION_SHIFTS.items()]
               + [("all physics shifts at once", {"materials": PURE + MIXED, "physics": ALL_AT_ONCE})])
    processed = [(k, {"materials": PURE + MIXED, "processing": v}) for k, v in PROCESSING_SHIFTS.items()]
    alloys = [(f"{m} x = {x}", {"materials": [m], "second_fraction": x})
              for m in ("WSSe", "MoSSe") for x in ALLOY_FRACTIONS]
    per_material: dict[str, dict] = {}
    for key, caption, rows in (
            ("in range", "**In range, per material** (training physics and processing).", in_range),
            ("shift", "**Physics shift**: one family of parameters outside its training range.", shifted),
            ("shift", "**Processing shift**: each processing type forced, beyond its training parameters.",
             processed),
            ("alloy", "**Alloy composition** (x = Se fraction; training draws x in 0.1-0.9).", alloys)):
        t = None
        for (t, r), (name, _) in zip(table(caption, rows), rows):
            pooled.setdefault(key, []).append(r)
            if rows is in_range:
                per_material[name] = r
        sec.tables.append(t)
    sec.tables.append(_confusion_table(per_material, names, dm, cfg.tile_seed, sec.paragraphs))
    shifts = {"physics shifts": [*({"physics": v} for v in PHYSICS_SHIFTS.values()),
                                 *({"params": v} for v in ACQUISITION_SHIFTS.values()), {"physics": ALL_AT_ONCE}],
              "processing shifts": [{"processing": v} for v in PROCESSING_SHIFTS.values()]}
    own = own_model_table(model, dm, n_tiles=n, n_bases=nb, bf16=bf16, render=_render, classify=_classify,
                          shifts=shifts)
    default = (default_ws2_table(load_classifier(ckpts.cam_cnn), dm, n_tiles=n, n_bases=nb, bf16=bf16,
                                 render=_render, shifts=shifts) if Path(ckpts.cam_cnn).is_file() else None)
    sec.tables += [t for t in (own, default) if t is not None]
    summary = Table("**Pooled** (every row of the tables above in each group), per-class recall.",
                    ["group", "n", "accuracy"] + list(names))
    for key, results in pooled.items():
        if not results:
            continue
        pred = np.concatenate([r["pred"] for r in results])
        labels = np.concatenate([r["labels"] for r in results])
        recall = [(pred[labels == c] == c).mean() if (labels == c).any() else None for c in range(len(names))]
        summary.add(key, len(labels), (pred == labels).mean(), *recall)
    sec.tables.insert(0, summary)
    return sec


def _confusion_table(per_material: dict[str, dict], names: Sequence[str], dm: MX2DataModule, seed: int,
                     paragraphs: list[str]) -> Table:
    """Top confused pairs per material (in range), each class's column-strength ratio range under
    the training physics, and how much the two ranges share (:mod:`stem2d.bench.physics_overlap`);
    a one-line tally (physics vs learnable) is appended to ``paragraphs``."""
    tally = {"physics": 0, "learnable": 0}
    t = Table(
        f"**Where it breaks, per material** (the in-range tiles above): the {TOP_CONFUSIONS} most frequent "
        "confusions (true -> called, n, fraction of the true class's tiles) and the column-strength ratio "
        "each class can take, relative to the full host column of its site, under the training physics "
        "(`conf/data/mx2.yaml` `physics:` z_exponent, species_factor, light_metal_ratio, second_atom_factor, "
        f"detector_gamma; 1-99 % of {RATIO_DRAWS} draws of `stem2d.sim.physics.draw_physics`, seed {seed}; "
        "alloys: relative to the same column before the defect, over its S/Se orders). *shared*: the larger "
        "fraction of one class's ratios inside the other's range: near 1 = the column's brightness cannot "
        "tell them apart under these ranges (unreachable by construction), 0 = apart (learnable). "
        "*other site (a alike)*: the classes sit on different sublattices; *a* is the fraction of draws "
        "whose chalcogen/metal column contrast equals the metal/chalcogen contrast of some family "
        "material (the model is not told the material, so the sublattice itself is then ambiguous), and "
        "the number after it min(a, shared ratios): near 0 = told apart by the sublattice (learnable). "
        "Neighbour tails raise small ratios in the image "
        "(docs/physics.md), and the neighbours' metal/chalcogen ratio constrains the physics within a "
        "tile, so overlap is necessary, not sufficient, for ambiguity.",
        ["material", "true", "called", "n", "fraction", "true ratio", "called ratio", "shared"])
    contrast = {m: sublattice_contrast(get_material(m), ranges=dm.physics, n_draws=RATIO_DRAWS, rng=seed)
                for m in per_material}
    for material_name, r in per_material.items():
        material = get_material(material_name)
        ratios = column_ratios(material, ranges=dm.physics, n_draws=RATIO_DRAWS, rng=seed)
        alike = sublattices_alike(contrast[material_name], list(contrast.values()))
        for a, b, count, fraction in confused_pairs(r["pred"], r["labels"], top=TOP_CONFUSIONS):
            ra, rb = ratios.get(names[a]), ratios.get(names[b])
            if ra is None or rb is None:  # a class the material lacks (Se on S in an S/Se alloy: the alloy)
                verdict = f"not a class of {material_name}"
            elif _shared(ra, rb) is not None:
                shared = _shared(ra, rb)
                verdict = shared
                tally["physics" if shared >= PHYSICS_SHARED else "learnable"] += count
            else:  # other sites: physics only if the sublattices look alike and the ratios overlap
                shared = min(alike, _shared(ra, rb, across_sites=True))
                verdict = f"other site ({alike:.2f} alike): {shared:.3f}"
                tally["physics" if shared >= PHYSICS_SHARED else "learnable"] += count
            t.add(material_name, _named(names[a], material), _named(names[b], material), count, fraction,
                  _range(ra, material_name), _range(rb, material_name), verdict)
    total = sum(tally.values())
    if total:
        paragraphs.append(
            f"Of the {total} tiles in the top confusions above (both classes in the material), "
            f"{tally['physics']} ({tally['physics'] / total:.0%}) are pairs whose ratio ranges share "
            f">= {PHYSICS_SHARED:.0%} under the training physics, on one site or on sublattices that look alike "
            "across the family: the column's brightness alone cannot separate them (overlap is necessary, not "
            "sufficient, for an unreachable target). The rest are told apart by the sublattice or apart in "
            "brightness: learnable errors. Calls of a class the material lacks are left out of this count.")
    return t


def _shared(a: SiteRatios, b: SiteRatios, *, across_sites: bool = False) -> float | None:
    one, other = overlap(a, b, across_sites=across_sites), overlap(b, a, across_sites=across_sites)
    return None if one is None else max(one, other)


def _range(r: SiteRatios | None, material_name: str) -> str:
    if r is None:
        return f"none in {material_name}"
    lo, hi = r.range
    return f"{lo:.2f}" if np.isclose(lo, hi, atol=5e-3) else f"{lo:.2f}-{hi:.2f}"


def _named(name: str, material) -> str:
    """A site class with its kind in a one-chalcogen material (``chalcogen_lighter (S_Se)``)."""
    label = site_label(name, material)
    return name if material.mixed or label == name else f"{name} ({label})"


__all__ = ["ACQUISITION_SHIFTS", "PHYSICS_SHIFTS", "PROCESSING_SHIFTS", "TITLE", "run"]
