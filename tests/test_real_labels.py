"""The real MoS2 dev set: label asset, scorer, and the labels against the frames (where present)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from stem2d.bench.real import (
    DEFECT_CLASSES,
    REGION_CLASSES,
    frame_pairs,
    frames_dir,
    labels_dir,
    pool,
    read_labels,
    score_frame,
)

LABEL_FILES = sorted(p for p in labels_dir().glob("*.csv") if p.stem != "overrides")
KNOWN = {*DEFECT_CLASSES, *REGION_CLASSES, "pristine"}
needs_frames = pytest.mark.skipif(not frames_dir().is_dir(), reason=f"real frames not present: {frames_dir()}")


def test_asset_has_the_four_frames_and_parses():
    assert [p.stem for p in LABEL_FILES] == ["MoS2_stem_Exp-000-2", "MoS2_stem_Exp-001-5", "MoS2_stem_Exp-002-5",
                                             "MoS2_stem_legacy_Vdoped"]
    for path in LABEL_FILES:
        lab = read_labels(path)
        assert set(lab["class"]) <= KNOWN, path
        assert lab[["row", "col"]].to_numpy().min() >= -0.5 and lab[["row", "col"]].to_numpy().max() <= 511.5
        assert set(lab["sublattice"]) <= {"metal", "chalcogen"}
        certain = lab[lab["certain"] & (lab["class"] != "pristine")]
        assert len(certain) >= 4, path
        # metal-site classes sit on the metal sublattice, S vacancies on the chalcogen one
        on_metal = certain["class"].isin(["mo_vacancy", "v_dopant", "w_dopant"])
        assert (certain.loc[on_metal, "sublattice"] == "metal").all()
        assert (certain.loc[certain["class"] == "s_vacancy", "sublattice"] == "chalcogen").all()


def test_read_labels_names_the_problem(tmp_path):
    bad = tmp_path / "x.csv"
    pd.DataFrame({"row": [1.0], "col": [2.0], "class": ["hole"], "certain": [1]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="region class"):
        read_labels(bad)
    pd.DataFrame({"row": [1.0], "col": [2.0], "class": ["hole"]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="certain"):
        read_labels(bad)


def _labels(rows):
    return pd.DataFrame(rows, columns=["row", "col", "class", "certain"])


def test_score_frame_counts_dont_care_and_classes():
    lab = _labels([(10, 10, "s_vacancy", True), (10, 30, "w_dopant", True), (30, 10, "s_vacancy", False),
                   (30, 30, "contamination", False), (50, 50, "pristine", False)])
    det = pd.DataFrame({
        "row": [10.5, 10.0, 30.5, 32.5, 50.5, 51.8, 70.0],
        "col": [10.0, 30.5, 10.0, 30.0, 50.0, 50.0, 70.0],
        "class": ["s_vacancy", "v_dopant", "s_vacancy", "mo_antisite", "s_vacancy", "s_vacancy", "w_dopant"]})
    s = score_frame(det, lab, max_dist_px=2.0, dontcare_dist_px=1.0, region_dist_px=3.0)
    # matched: 2 (one with the wrong class); ignored: on the dc column, within 3 px of contamination,
    # on the dc pristine column; counted as false: 1.3 px from the dc pristine column (> 1 px), far away
    assert s["n_matched"] == 2 and s["n_class_correct"] == 1 and s["n_ignored"] == 3
    assert s["detection"] == {"precision": 2 / 4, "recall": 1.0, "f1": 2 * 2 / (4 + 2), "tp": 2, "n_pred": 4,
                              "n_true": 2}
    assert s["per_class"]["s_vacancy"]["tp"] == 1 and s["per_class"]["s_vacancy"]["n_pred"] == 2
    assert s["per_class"]["w_dopant"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "tp": 0, "n_pred": 1,
                                          "n_true": 1}
    both = pool([s, s])
    assert both["detection"]["tp"] == 4 and both["n_ignored"] == 6 and both["class_accuracy"] == 0.5


def test_score_frame_without_detections_or_truth():
    lab = _labels([(5, 5, "pristine", False)])
    empty = pd.DataFrame({"row": [], "col": [], "class": []})
    s = score_frame(empty, lab, max_dist_px=2, dontcare_dist_px=1, region_dist_px=3)
    assert s["detection"]["precision"] is None and s["detection"]["recall"] is None and s["n_matched"] == 0


@needs_frames
def test_labels_agree_with_the_frames():
    """Certain W sits on a bright column, certain vacancies on dark sites (0.25 A smoothed frame)."""
    pairs = frame_pairs()
    assert len(pairs) == 4
    for frame, lab_path in pairs:
        img = np.load(frame).astype(np.float64)
        smooth = ndimage.gaussian_filter(img, 1.5)
        lab = read_labels(lab_path)
        lab = lab[lab["certain"]]
        value = ndimage.map_coordinates(smooth, lab[["row", "col"]].to_numpy().T, order=1)
        bright = value[lab["class"].to_numpy() == "w_dopant"]
        dark = value[lab["class"].isin(["s_vacancy", "mo_vacancy"]).to_numpy()]
        assert (bright > np.percentile(smooth, 97)).all(), frame.name
        assert (dark < np.percentile(smooth, 50)).all(), frame.name
