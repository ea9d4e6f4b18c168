"""Evidence of detections (stem2d.predict.evidence) on simulated frames whose columns are known."""

from __future__ import annotations

import numpy as np
import pytest

from stem2d.classes import ClassSet
from stem2d.lattice.columns import quantify_columns
from stem2d.materials import get_material
from stem2d.predict.evidence import (
    ADATOM,
    OFF_LATTICE,
    UNKNOWN,
    annotate_detections,
    class_expectations,
    detection_evidence,
)
from stem2d.sim.imaging import Acquisition, Probe, acquire, render_haadf
from stem2d.sim.lattice import Columns, apply_defect, mx2_columns

WS2 = get_material("WS2")
PS = 0.3
SHAPE = (200, 200)
CLASSES = ClassSet.from_mapping(None)  # pristine, mo_dopant, s_vacancy, w_vacancy, w_dopant


def test_expectations_follow_z_contrast():
    exp = class_expectations(CLASSES, WS2)
    assert "pristine" not in exp
    assert exp["mo_dopant"] == [("metal", pytest.approx((42 / 74) ** 1.7))]
    assert sorted(exp["s_vacancy"]) == [("chalcogen", pytest.approx(0.0)), ("chalcogen", pytest.approx(0.5))]
    assert exp["w_dopant"][0] == ("chalcogen", pytest.approx(74**1.7 / (2 * 16**1.7)))


@pytest.fixture(scope="module")
def scene():
    """A frame with one S vacancy (V_S2), one Mo dopant and a Mo adatom on a hollow."""
    cols = mx2_columns(WS2, extent_A=(SHAPE[0] * PS, SHAPE[1] * PS), rotation_deg=11.0, origin_A=(1.0, 2.0))
    centre = np.array(SHAPE) * PS / 2
    d = np.hypot(*(cols.pos_A - centre).T)
    x = int(np.flatnonzero(cols.site == "X")[np.argmin(d[cols.site == "X"])])
    m = int(np.flatnonzero(cols.site == "M")[np.argsort(d[cols.site == "M"])[6]])
    cols = apply_defect(cols, _kind("V_S2"), x)
    cols = apply_defect(cols, _kind("Mo_W"), m)
    hollow_A = cols.pos_A[m] + np.array([8.0, 5.0])  # moved onto a hollow below
    clean = render_haadf(cols, shape=SHAPE, pixel_size_A=PS, probe=Probe())
    frame = acquire(clean, pixel_size_A=PS, acq=Acquisition(dose_e_per_A2=1e5), rng=1)
    q = quantify_columns(frame, material=WS2, pixel_size_A=PS)
    hollows = q.sites("hollow")[["row", "col"]].to_numpy()
    h = hollows[np.argmin(np.hypot(*(hollows - hollow_A / PS).T))]
    ad = Columns(np.vstack([cols.pos_A, [h * PS]]), np.append(cols.site, "X"), np.vstack([cols.atoms, [[42, 0]]]))
    frame_ad = acquire(render_haadf(ad, shape=SHAPE, pixel_size_A=PS, probe=Probe()), pixel_size_A=PS,
                       acq=Acquisition(dose_e_per_A2=1e5), rng=1)
    return {"q": quantify_columns(frame_ad, material=WS2, pixel_size_A=PS), "vac": cols.pos_A[x] / PS,
            "mo": cols.pos_A[m] / PS, "hollow": h, "intact_x": cols.pos_A[x] / PS + _x_step()}


def _kind(name):
    from stem2d.classes import parse_kind

    return parse_kind(name, WS2)


def _x_step():
    """From one chalcogen column to the next one (a lattice vector, rotated as the scene), px."""
    t = np.radians(11.0)
    return np.array([np.sin(t), np.cos(t)]) * WS2.a_A / PS


def test_evidence_names_the_site_and_its_intensity(scene):
    exp = class_expectations(CLASSES, WS2)
    pts = np.array([scene["vac"], scene["mo"], scene["intact_x"], [-50.0, -50.0]])
    ev = detection_evidence(pts, np.array(["s_vacancy", "mo_dopant", "s_vacancy", "s_vacancy"]), scene["q"],
                            expectations=exp)
    assert list(ev["sublattice"]) == ["chalcogen", "metal", "chalcogen", OFF_LATTICE]
    assert ev["intensity_rel"].iloc[0] < 0.2
    assert ev["intensity_rel"].iloc[1] == pytest.approx((42 / 74) ** 1.7, abs=0.1)
    assert ev["intensity_rel"].iloc[2] == pytest.approx(1.0, abs=0.3)
    assert list(ev["agrees"].iloc[:2]) == [1.0, 1.0]
    assert np.isnan(ev["intensity_rel"].iloc[3])


def test_annotation_demotes_what_the_columns_contradict(scene):
    exp = class_expectations(CLASSES, WS2)
    pts = np.array([scene["vac"], scene["intact_x"], scene["hollow"], scene["hollow"] + _x_step(),
                    scene["mo"]])
    labels = np.array([2, 2, 1, 1, 0])  # s_vacancy, s_vacancy, mo_dopant, mo_dopant, pristine
    probs = np.full((5, 5), 0.05)
    probs[np.arange(5), labels] = 0.8
    ann = annotate_detections(pts, labels, probs, scene["q"], class_names=CLASSES.names, expectations=exp,
                              pristine_index=0, temperature=1.0)
    # a vacancy that is one; an "S vacancy" on an intact column; a bright hollow; an empty
    # hollow; a window the classifier calls pristine
    assert list(ann["class"]) == ["s_vacancy", UNKNOWN, ADATOM, UNKNOWN, UNKNOWN]
    assert ann["p_class"].iloc[0] == pytest.approx(0.8)
    assert ann["p_class"].iloc[4] == pytest.approx(0.05)  # likeliest defect class of a pristine call
    hot = annotate_detections(pts[:1], labels[:1], probs[:1], scene["q"], class_names=CLASSES.names,
                              expectations=exp, temperature=2.0)
    assert 0.2 < hot["p_class"].iloc[0] < 0.8  # softened
    off = annotate_detections(pts[1:2], labels[1:2], probs[1:2], scene["q"], class_names=CLASSES.names,
                              expectations=exp, evidence_rule="off")
    assert list(off["class"]) == ["s_vacancy"]
    # the recall-side rule: an intact column still clearly contradicts an S vacancy (spread ~0.1)
    lax = annotate_detections(pts[:2], labels[:2], probs[:2], scene["q"], class_names=CLASSES.names,
                              expectations=exp, evidence_rule="contradict")
    assert list(lax["class"]) == ["s_vacancy", UNKNOWN]


def test_no_lattice_means_off_lattice():
    ev = detection_evidence(np.zeros((2, 2)), np.array(["s_vacancy"] * 2), None,
                            expectations=class_expectations(CLASSES, WS2))
    assert list(ev["sublattice"]) == [OFF_LATTICE] * 2 and ev["agrees"].isna().all()


def test_outlying_columns_are_candidates(scene):
    from concurrent.futures import Future

    from stem2d.predict.column_candidates import ColumnCache, column_candidates, with_column_candidates

    pts, scores = column_candidates(scene["q"])
    want = np.array([scene["vac"], scene["mo"], scene["hollow"]])
    d = np.hypot(*(pts[:, None] - want[None]).transpose(2, 0, 1))
    assert (d.min(axis=0) < 2).all()  # all three found
    assert len(pts) <= 4 and (scores > 0).all() and (scores <= 1).all()
    cache = ColumnCache(material=WS2, pixel_size_A=PS)
    frame = np.zeros(SHAPE, np.float32)
    assert cache(frame) is None  # no lattice: no evidence, no crash
    done = Future()
    done.set_result(scene["q"])
    cache._entries = [(frame, done)]  # as if quantified
    det = with_column_candidates(lambda f: (want[:1], np.ones(1)), cache, merge_dist_px=5.0)
    p, s = det(frame)
    assert len(p) == len(pts) and np.allclose(p[0], want[0])  # the detector's own point first, no duplicate
