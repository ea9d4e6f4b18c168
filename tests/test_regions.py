"""Holes, edges and contamination (stem2d.predict.regions) on simulated frames."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from stem2d.classes import ClassSet
from stem2d.lattice._neighbours import IndexNeighbours
from stem2d.lattice.columns import quantify_columns
from stem2d.materials import get_material
from stem2d.predict.column_candidates import ColumnCache
from stem2d.predict.evidence import class_expectations
from stem2d.predict.evidence_step import EvidenceStep, write_regions
from stem2d.predict.regions import REGION_KINDS, find_regions
from stem2d.sim.imaging import Acquisition, Probe, acquire, render_haadf
from stem2d.sim.lattice import Columns, mx2_columns

WS2 = get_material("WS2")
PS = 0.3
SHAPE = (200, 200)


def _frame(cols, *, background=None):
    clean = render_haadf(cols, shape=SHAPE, pixel_size_A=PS, probe=Probe())
    if background is not None:
        clean = clean + background
    return acquire(clean, pixel_size_A=PS, acq=Acquisition(dose_e_per_A2=5e4, background_fraction=0.1), rng=3)


def _holed():
    cols = mx2_columns(WS2, extent_A=(SHAPE[0] * PS, SHAPE[1] * PS), rotation_deg=23.0)
    centre = np.array([18.0, 20.0])
    keep = np.hypot(*(cols.pos_A - centre).T) > 6.0
    return Columns(cols.pos_A[keep], cols.site[keep], cols.atoms[keep]), centre / PS


def _bump(centre_px, sigma_px, height):
    r, c = np.indices(SHAPE)
    return height * np.exp(-((r - centre_px[0]) ** 2 + (c - centre_px[1]) ** 2) / (2 * sigma_px**2))


def test_clean_frame_is_lattice():
    cols = mx2_columns(WS2, extent_A=(SHAPE[0] * PS, SHAPE[1] * PS), rotation_deg=23.0)
    q = quantify_columns(_frame(cols), material=WS2, pixel_size_A=PS)
    r = find_regions(q, SHAPE, material_mx_distance_A=WS2.mx_distance_A)
    assert r.fractions()["lattice"] > 0.97
    assert r.lattice_area_nm2() > 0.97 * SHAPE[0] * SHAPE[1] * PS**2 / 100


def test_hole_edge_and_contamination_are_found():
    cols, hole_px = _holed()
    contam_px = np.array([140.0, 140.0])
    q = quantify_columns(_frame(cols, background=_bump(contam_px, 12, 1.2)), material=WS2, pixel_size_A=PS)
    r = find_regions(q, SHAPE, material_mx_distance_A=WS2.mx_distance_A)
    names = r.region_at(np.array([hole_px, hole_px + [0, 24], contam_px, [20.0, 180.0]]))
    assert list(names) == ["hole", "edge", "contamination", "lattice"]
    f = r.fractions()
    assert 0.01 < f["hole"] < 0.08 and f["contamination"] < 0.2 and f["lattice"] > 0.6
    # the contamination level from the quantification's index neighbours is the KD-tree's
    n = q.neighbours
    kd_only = IndexNeighbours(n.pos, n.ij, n.sub, n.offsets, n.inv, by_index=False)  # every query to a KD-tree
    by_tree = find_regions(dataclasses.replace(q, neighbours=kd_only), SHAPE, material_mx_distance_A=WS2.mx_distance_A)
    assert n.by_index and np.array_equal(by_tree.labels, r.labels)
    assert np.array_equal(by_tree.site_region, r.site_region)


def test_calls_in_holes_are_unconfirmed_and_regions_written(tmp_path):
    cols, hole_px = _holed()
    frame = _frame(cols)
    classes = ClassSet.from_mapping(None)
    step = EvidenceStep(ColumnCache(material=WS2, pixel_size_A=PS), material=WS2, class_names=classes.names,
                        expectations=class_expectations(classes, WS2), pristine_index=0)
    probs = np.full((2, 5), 0.05)
    probs[:, 2] = 0.8
    ev = step(frame, np.array([hole_px, [20.0, 180.0]]), np.array([2, 2]), probs, SHAPE)
    assert list(ev.annotation["region"]) == ["hole", "lattice"]
    assert ev.annotation["class"].iloc[0] == "unknown"
    assert set(ev.masks) >= {"hole", "edge"} and ev.masks["hole"].shape == SHAPE
    png, js = write_regions(tmp_path, 0, ev, SHAPE)
    data = json.loads(js.read_text())
    assert data["kinds"] == list(REGION_KINDS)
    holes = [g for g in data["regions"] if g["kind"] == "hole"]
    assert len(holes) == 1 and len(holes[0]["polygon"]) >= 4
    assert png.is_file()
    assert step.summary()["region_fractions"]["hole"] > 0
    assert isinstance(ev.columns, pd.DataFrame) and "region" in ev.columns


def test_calibration_report_on_a_simulated_frame():
    from stem2d.predict.calibration import TrainingRanges, frame_calibration

    cols = mx2_columns(WS2, extent_A=(SHAPE[0] * PS, SHAPE[1] * PS), rotation_deg=23.0)
    frame = _frame(cols)
    q = quantify_columns(frame, material=WS2, pixel_size_A=PS)
    r = frame_calibration(frame, pixel_size_A=PS, material=WS2, quant=q, canon=frame, distortion=0.01,
                          lattice_fraction=0.99)
    assert r["probe_fwhm_A"] == pytest.approx(0.9, abs=0.1)
    assert r["z_exponent"] == pytest.approx(1.7, abs=0.1)
    assert r["warnings"] == []
    assert 5e3 < r["dose_e_per_A2"] < 1e5 and r["contrast_to_noise"] > 2
    narrow = TrainingRanges(probe_fwhm_A=(0.3, 0.4), z_exponent=(1.0, 1.2))
    r = frame_calibration(frame, pixel_size_A=PS, material=WS2, quant=q, canon=frame, distortion=0.2,
                          lattice_fraction=0.3, ranges=narrow)
    text = " ".join(r["warnings"])
    for word in ("probe FWHM", "Z exponent", "scan distortion", "clean lattice"):
        assert word in text


def test_median_on_the_labelled_box_equals_the_whole_frame_median():
    from scipy import ndimage

    from stem2d.predict.regions import _median3_where_labelled

    rng = np.random.default_rng(0)
    for shape, box in [((40, 50), (slice(10, 20), slice(5, 30))), ((30, 30), (slice(0, 6), slice(25, 30))),
                       ((16, 24), (slice(0, 16), slice(0, 24)))]:
        labels = np.zeros(shape, np.uint8)
        labels[box] = rng.integers(0, 5, labels[box].shape)
        assert np.array_equal(_median3_where_labelled(labels), ndimage.median_filter(labels, size=3))
    empty = np.zeros((8, 8), np.uint8)
    assert np.array_equal(_median3_where_labelled(empty), empty)
    # labels counted, not ranked: any subset of the kinds, any density, frame edges included
    for _ in range(60):
        h, w = rng.integers(1, 30, 2)
        kinds = rng.choice(np.arange(1, 5), rng.integers(1, 5), replace=False)
        labels = np.where(rng.random((h, w)) < rng.random(), rng.choice(kinds, (h, w)), 0).astype(np.uint8)
        assert np.array_equal(_median3_where_labelled(labels), ndimage.median_filter(labels, size=3))


def test_region_pixel_counts_add_up():
    labels = np.random.default_rng(5).integers(0, len(REGION_KINDS), (37, 41)).astype(np.uint8)
    from stem2d.predict.regions import RegionMap

    r = RegionMap(labels, np.zeros(0, np.uint8), 0.3)
    assert list(r.pixel_counts) == list(np.bincount(labels.ravel(), minlength=len(REGION_KINDS)))
    assert sum(r.fractions().values()) == pytest.approx(1.0)
    assert set(r.masks()) == {k for i, k in enumerate(REGION_KINDS) if i and (labels == i).any()}
