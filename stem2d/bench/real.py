"""Benchmark 5: the pipeline on the four real MoS2 frames against the column labels of the dev set.

The labels (``tests/assets/real_labels/<frame>.csv``: ``row,col,class,certain`` per column, made by
``scripts/label_real.py`` plus an eye check; their README records the thresholds and doubts) are an
**evaluation set only**: nothing in stem2d is trained, tuned or selected on them. Columns with
``certain = 0`` are "don't care": a detection within ``dontcare_dist_A`` of one, and not matched to
a certain defect, is neither a true nor a false positive. Only certain non-pristine columns are
truth. The frames themselves stay outside the project (``../shared/data/real/mos2_scilink``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from stem2d.bench import movies
from stem2d.bench.config import BenchConfig, Checkpoints
from stem2d.bench.report import Section, Table, unavailable
from stem2d.predict.scoring import match_with_dont_care, prf

log = logging.getLogger(__name__)

TITLE = "5. Real MoS2 frames (column-labelled dev set)"
#: Columns every label file has (more may follow: sublattice, intensity_rel).
LABEL_COLUMNS = ("row", "col", "class", "certain")
#: The MoS2 classes of the labels that a detection can match (others are "don't care" only).
DEFECT_CLASSES = ("w_dopant", "v_dopant", "s_vacancy", "mo_vacancy", "mo_antisite")
#: Classes that only ever appear as "don't care" (regions, not point defects).
REGION_CLASSES = ("hole", "contamination")


def labels_dir() -> Path:
    """``tests/assets/real_labels`` of the source checkout stem2d runs from."""
    return Path(__file__).resolve().parents[2] / "tests" / "assets" / "real_labels"


def frames_dir() -> Path:
    """The real frames beside the checkout: ``../shared/data/real/mos2_scilink``."""
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "real" / "mos2_scilink"


def read_labels(path: str | Path) -> pd.DataFrame:
    """One label file: ``row,col`` in frame pixels, ``class``, ``certain`` (bool).

    Raises
    ------
    ValueError
        A required column is missing, a certain row has a region class, or ``certain`` is not 0/1.
    """
    path = Path(path)
    table = pd.read_csv(path)
    missing = [c for c in LABEL_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: label columns {missing} missing (need {list(LABEL_COLUMNS)})")
    if not table["certain"].isin([0, 1]).all():
        raise ValueError(f"{path}: 'certain' must be 0 or 1")
    table["certain"] = table["certain"].astype(bool)
    bad = table["certain"] & table["class"].isin(REGION_CLASSES)
    if bad.any():
        raise ValueError(f"{path}: {int(bad.sum())} certain rows have a region class {REGION_CLASSES}")
    return table


def score_frame(pred: pd.DataFrame, labels: pd.DataFrame, *, max_dist_px: float, dontcare_dist_px: float,
                region_dist_px: float, classes: Sequence[str] = DEFECT_CLASSES) -> dict:
    """Score one frame's detections against its column labels, "don't care" columns excluded.

    Parameters
    ----------
    pred : DataFrame
        Detections with ``row, col, class`` (frame pixels); ``unknown`` rows (candidates the
        pipeline flags as unconfirmed, ``classify.unconfirmed=unknown``) are not claims and not scored.
    labels : DataFrame
        :func:`read_labels` output. Truth = certain rows whose class is not ``pristine``.
    max_dist_px : float
        A detection matches a true defect within this distance (Hungarian, class ignored).
    dontcare_dist_px : float
        An unmatched detection this close to a "don't care" column is ignored: about half the
        metal-chalcogen distance, so that only a detection *on* that column is ignored, not one on a
        certain column or a hollow next to it.
    region_dist_px : float
        Same for "don't care" columns of a region class (hole, contamination): larger, so that
        detections on the hollows of a region are ignored too.
    classes : sequence of str
        Classes scored one by one (a true positive needs the same class).

    Returns
    -------
    dict
        ``detection`` (prf dict), ``per_class`` {class: prf dict}, ``n_ignored`` (detections in
        "don't care"), ``n_matched``, ``n_class_correct``.

    Examples
    --------
    >>> lab = pd.DataFrame({"row": [10.0, 30.0], "col": [10.0, 30.0], "class": ["s_vacancy", "hole"],
    ...                     "certain": [True, False]})
    >>> det = pd.DataFrame({"row": [10.5, 30.2, 60.0], "col": [10.0, 29.0, 60.0],
    ...                     "class": ["s_vacancy", "s_vacancy", "w_dopant"]})
    >>> s = score_frame(det, lab, max_dist_px=3, dontcare_dist_px=1, region_dist_px=3)
    >>> s["detection"]["tp"], s["detection"]["n_pred"], s["n_ignored"]
    (1, 2, 1)
    """
    pred = pred[pred["class"] != "unknown"]
    truth = labels[labels["certain"] & (labels["class"] != "pristine")]
    dc = labels[~labels["certain"]]
    region = dc["class"].isin(REGION_CLASSES)
    pi, ti, ignored = match_with_dont_care(
        pred[["row", "col"]].to_numpy(dtype=float), truth[["row", "col"]].to_numpy(dtype=float),
        max_dist=max_dist_px, dont_care=[(dc.loc[~region, ["row", "col"]].to_numpy(dtype=float), dontcare_dist_px),
                                         (dc.loc[region, ["row", "col"]].to_numpy(dtype=float), region_dist_px)])
    counted = ~ignored
    p_cls = pred["class"].to_numpy()
    t_cls = truth["class"].to_numpy()
    ok = p_cls[pi] == t_cls[ti]
    per = {}
    for c in classes:
        tp = int(((p_cls[pi] == c) & (t_cls[ti] == c)).sum())
        per[c] = prf(tp, int(((p_cls == c) & counted).sum()), int((t_cls == c).sum()))
    return {"detection": prf(len(pi), int(counted.sum()), len(truth)), "per_class": per,
            "n_ignored": int(ignored.sum()), "n_matched": len(pi), "n_class_correct": int(ok.sum())}


def pool(scores: Sequence[dict]) -> dict:
    """Sum the counts of several :func:`score_frame` results and recompute the ratios."""
    def pooled(parts):
        return prf(*(sum(p[k] for p in parts) for k in ("tp", "n_pred", "n_true")))

    classes = list(scores[0]["per_class"]) if scores else []
    matched = sum(s["n_matched"] for s in scores)
    correct = sum(s["n_class_correct"] for s in scores)
    return {"detection": pooled([s["detection"] for s in scores]),
            "per_class": {c: pooled([s["per_class"][c] for s in scores]) for c in classes},
            "n_ignored": sum(s["n_ignored"] for s in scores), "n_matched": matched,
            "n_class_correct": correct, "class_accuracy": correct / matched if matched else None}


def frame_pairs(frames: Path | None = None, labels: Path | None = None) -> list[tuple[Path, Path]]:
    """(frame .npy, label .csv) for every label file whose frame exists."""
    frames, labels = frames or frames_dir(), labels or labels_dir()
    out = []
    for lab in sorted(labels.glob("*.csv")):
        frame = frames / f"{lab.stem}.npy"
        if lab.stem != "overrides" and frame.is_file():
            out.append((frame, lab))
    return out


def run_frame(cfg: BenchConfig, frame: Path, *, run_dir: Path, overrides: Sequence[str] = ()) -> tuple[pd.DataFrame, dict]:
    """``python infer.py movie=<frame> material=MoS2 classes=mos2`` (quiet); detections and summary."""
    ov = [f"movie={movies.quote(frame)}", "material=MoS2", "classes=mos2", "outputs.evolution=false", *overrides]
    summary = movies.run(cfg, ov, run_dir=run_dir)
    return pd.read_csv(run_dir / "detections.csv"), summary


def variants(ckpts: Checkpoints) -> list[tuple[str, list[Path]]]:
    """The detector/classifier pairs scored side by side, fixed in advance (none is chosen by these
    labels): (description, [U-Net, classifier or None for the bundled MoS2 classifier])."""
    from stem2d.models.loading import bundled_site_classifier_path

    own_sites = bundled_site_classifier_path("MoS2")
    return [
        ("default: unet_ws2 + cam_cnn_mos2 (both trained on one image model)", [ckpts.unet, None]),
        ("physics-randomised U-Net unet_mx2 + cam_cnn_mos2", [ckpts.unet_mx2, None]),
        (f"unet_mx2 + physics-randomised MoS2 site model {own_sites.name} (projected onto the mos2 names)",
         [ckpts.unet_mx2, own_sites]),
        ("unet_mx2 + physics-randomised family model cam_cnn_mx2.ckpt (projected onto the mos2 names)",
         [ckpts.unet_mx2, ckpts.cam_cnn_mx2]),
        (f"physics-randomised MoS2-only U-Net unet_mos2 + {own_sites.name} (projected)",
         [own_sites.parent / "unet_mos2.ckpt", own_sites]),
    ]


def score_runs(cfg: BenchConfig, pairs: Sequence[tuple[Path, Path]], *, work: Path, unet: Path,
               classifier: Path | None, match_dist_A: float, dontcare_dist_A: float,
               region_dist_A: float) -> tuple[list[tuple[str, dict, int, int]], dict]:
    """Run infer.py with one U-Net and classifier on every frame; per-frame rows and the pooled score."""
    overrides = [f"unet_ckpt_path={movies.quote(unet)}"]
    if classifier is not None:
        overrides.append(f"ckpt_path={movies.quote(classifier)}")
    runs = []
    for frame, lab in pairs:
        pred, summary = run_frame(cfg, frame, run_dir=work / frame.stem, overrides=overrides)
        runs.append((frame, read_labels(lab), pred, float(summary["pixel_size_A"])))
    # classes the pipeline may call besides the labelled ones (unknown, adatom, ...): scored as never correct
    extra = sorted({c for *_, pred, _ in runs for c in pred["class"]} - set(DEFECT_CLASSES))
    per_frame, rows = [], []
    for frame, labels, pred, px in runs:
        s = score_frame(pred, labels, max_dist_px=match_dist_A / px, dontcare_dist_px=dontcare_dist_A / px,
                        region_dist_px=region_dist_A / px, classes=[*DEFECT_CLASSES, *extra])
        per_frame.append(s)
        rows.append((frame.stem, s, int(labels["certain"].sum() - (labels["certain"] & (labels["class"] == "pristine")).sum()),
                     int((~labels["certain"]).sum())))
    return rows, pool(per_frame)


def run(cfg: BenchConfig, ckpts: Checkpoints, out: Path, work: Path, *, match_dist_A: float = 1.5,
        dontcare_dist_A: float = 0.9, region_dist_A: float = 2.0) -> Section:
    """Score ``infer.py`` (bundled MoS2 classifier, ``ckpts.unet``) on every labelled real frame, then
    the physics-randomised detector/classifier variants beside it (pooled rows)."""
    pairs = frame_pairs()[:cfg.real_frames]
    if not pairs:
        return unavailable(TITLE, f"no real frames in {frames_dir()} (the labels are in {labels_dir()})")
    if not ckpts.unet.is_file():
        return unavailable(TITLE, f"missing checkpoint: {ckpts.unet}")
    sec = Section(TITLE)
    dist = {"match_dist_A": match_dist_A, "dontcare_dist_A": dontcare_dist_A, "region_dist_A": region_dist_A}
    rows, total = score_runs(cfg, pairs, work=work / "default", unet=ckpts.unet, classifier=None, **dist)
    det = Table(
        f"Detection per frame (`python infer.py movie=<frame> material=MoS2 classes=mos2`, defaults otherwise; "
        f"match within {match_dist_A} A; unmatched detections within {dontcare_dist_A} A of a \"don't care\" "
        f"column or {region_dist_A} A of a hole/contamination column are ignored):",
        ["frame", "true defects", "don't care columns", "detections scored", "ignored", "P", "R", "F1",
         "class accuracy (matched)"])
    for name, s, n_true, n_dc in rows:
        d = s["detection"]
        det.add(name, n_true, n_dc, d["n_pred"], s["n_ignored"], d["precision"], d["recall"], d["f1"],
                s["n_class_correct"] / s["n_matched"] if s["n_matched"] else None)
    d = total["detection"]
    det.add("**all**", d["n_true"], sum(r[3] for r in rows), d["n_pred"], total["n_ignored"], d["precision"],
            d["recall"], d["f1"], total["class_accuracy"])
    cls = Table("Per class, all frames pooled (a true positive needs the same class):",
                ["class", "true", "predicted", "P", "R", "F1"])
    for c, v in total["per_class"].items():
        cls.add(c, v["n_true"], v["n_pred"], v["precision"], v["recall"], v["f1"])
    var = Table("Detector and classifier variants, all frames pooled (the pairs were fixed before "
                "scoring; the default row is the table above):",
                ["U-Net + classifier", "detections scored", "P", "R", "F1", "class accuracy (matched)",
                 "macro F1 over classes"])
    for i, (what, (unet, clf)) in enumerate(variants(ckpts)):
        missing = [p for p in (unet, clf) if p is not None and not Path(p).is_file()]
        if missing:
            var.add(what, f"missing {missing[0].name}", None, None, None, None, None)
            continue
        if i > 0:
            _, total = score_runs(cfg, pairs, work=work / f"variant{i}", unet=unet, classifier=clf, **dist)
        d = total["detection"]
        f1s = [v["f1"] for c, v in total["per_class"].items() if c in DEFECT_CLASSES and v["n_true"]]
        var.add(what, d["n_pred"], d["precision"], d["recall"], d["f1"], total["class_accuracy"],
                sum(f1s) / len(f1s) if f1s else None)
    sec.paragraphs.append(
        "The labels are an evaluation set only (never used to train, tune or select). They hold the "
        "columns whose reading was unambiguous; single S vacancies are mostly \"don't care\" (the S2 "
        "column noise of these frames is 0.4-0.6 of its median), so recall here is recall of the clear "
        "defects. See tests/assets/real_labels/README.md.")
    sec.tables += [det, cls, var]
    return sec
