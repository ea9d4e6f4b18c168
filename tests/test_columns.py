"""Column quantification (stem2d.lattice.columns) on simulated frames whose columns are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import spatial

from stem2d.classes import parse_kind
from stem2d.lattice.columns import SUBLATTICES, quantify_columns
from stem2d.materials import get_material
from stem2d.sim.imaging import Acquisition, Probe, acquire, render_haadf
from stem2d.sim.lattice import Columns, apply_defect, mx2_columns

WS2 = get_material("WS2")
PS = 0.25
SHAPE = (256, 256)
REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "mos2_scilink"


def _frame(columns: Columns, *, material=WS2, dose=5e4, rng=0, shape=SHAPE):
    clean = render_haadf(columns, shape=shape, pixel_size_A=PS, probe=Probe(),
                         z_reference=material.z_metal)
    acq = Acquisition(dose_e_per_A2=dose, jitter_px=0.2, background_fraction=0.1)
    return acquire(clean, pixel_size_A=PS, acq=acq, rng=rng)


def _lattice(material=WS2, rotation=17.0, shape=SHAPE):
    return mx2_columns(material, extent_A=(shape[0] * PS, shape[1] * PS), rotation_deg=rotation,
                       origin_A=(3.1, 5.3))


def _with_defects(cols: Columns, kinds: dict[str, int], rng=0) -> tuple[Columns, dict[str, np.ndarray]]:
    """Put ``n`` defects of each kind on random columns of the right site, 8 A from the edges."""
    gen = np.random.default_rng(rng)
    lo, hi = 8.0, min(SHAPE) * PS - 8.0
    inside = ((cols.pos_A > lo) & (cols.pos_A < hi)).all(axis=1)
    used, where = set(), {}
    for name, n in kinds.items():
        kind = parse_kind(name, WS2)
        pool = [i for i in np.flatnonzero(inside & (cols.site == kind.site)) if i not in used]
        idx = gen.choice(pool, size=n, replace=False)
        for i in idx:
            cols = apply_defect(cols, kind, int(i))
        used |= set(idx.tolist())
        where[name] = cols.pos_A[idx] / PS
    return cols, where


def _match(table, points):
    d, idx = spatial.cKDTree(table[["row", "col"]].to_numpy()).query(points)
    return d, table.iloc[idx]


def test_sites_and_sublattices_match_the_truth():
    cols = _lattice()
    q = quantify_columns(_frame(cols), material=WS2, pixel_size_A=PS)
    t = q.table
    assert set(t["sublattice"]) == set(SUBLATTICES)
    true_px = cols.pos_A / PS
    d, idx = spatial.cKDTree(true_px).query(t[["row", "col"]].to_numpy())
    for name, site in (("metal", "M"), ("chalcogen", "X")):
        sel = (t["sublattice"] == name).to_numpy()
        assert (cols.site[idx[sel]] == site).all()
        assert np.median(d[sel]) * PS < 0.15 and d[sel].max() * PS < 0.4
    hollow = (t["sublattice"] == "hollow").to_numpy()
    assert np.allclose(np.median(d[hollow]) * PS, WS2.mx_distance_A, atol=0.15)
    # each sublattice tiles the frame once: about one site per cell area
    cell_px = WS2.a_A**2 * np.sqrt(3) / 2 / PS**2
    for name in SUBLATTICES:
        n = (t["sublattice"] == name).sum()
        assert 0.8 < n * cell_px / (SHAPE[0] * SHAPE[1]) <= 1.0
    assert q.ratio_metal_chalcogen == pytest.approx(74**1.7 / (2 * 16**1.7), rel=0.08)


def test_vacancies_and_dopants_have_the_expected_intensity():
    cols, where = _with_defects(_lattice(), {"V_S": 6, "V_S2": 3, "Mo_W": 4, "V_W": 3, "W_S2": 2})
    t = quantify_columns(_frame(cols, dose=1e5), material=WS2, pixel_size_A=PS).table
    expected = {"V_S": 0.5, "V_S2": 0.0, "Mo_W": (42 / 74) ** 1.7, "V_W": 0.0,
                "W_S2": 74**1.7 / (2 * 16**1.7)}
    for name, points in where.items():
        d, rows = _match(t, points)
        assert (d * PS < 0.5).all(), name
        rel = rows["intensity_rel"].to_numpy()
        assert np.abs(rel - expected[name]).max() < 0.25 * max(1.0, expected[name]), (name, rel)
    # pristine columns sit at 1 with a small spread
    for name in ("metal", "chalcogen"):
        rel = t.loc[t["sublattice"] == name, "intensity_rel"]
        assert abs(rel.median() - 1) < 0.02
        assert (np.abs(rel - 1) < 0.3).mean() > 0.97


def test_adatom_on_a_hollow_stands_out():
    cols = _lattice()
    t0 = quantify_columns(_frame(cols), material=WS2, pixel_size_A=PS).table
    hollow = t0[(t0["sublattice"] == "hollow") & t0["row"].between(80, 170) & t0["col"].between(80, 170)].iloc[0]
    ad = Columns(np.vstack([cols.pos_A, [[hollow["row"] * PS, hollow["col"] * PS]]]),
                 np.append(cols.site, "X"), np.vstack([cols.atoms, [[42, 0]]]))
    t = quantify_columns(_frame(ad), material=WS2, pixel_size_A=PS).table
    _d, rows = _match(t[t["sublattice"] == "hollow"], [[hollow["row"], hollow["col"]]])
    assert rows["z"].iloc[0] > 8
    assert t.loc[t["sublattice"] == "hollow", "z"].drop(rows.index).max() < 6


def test_scan_distorted_frame_still_fits():
    """Scan speed varying along the line (0-12 % stretch) and a bend (up to 9 % shear)."""
    cols = _lattice(rotation=7.0)
    p = cols.pos_A / (SHAPE[0] * PS)  # fractions of the frame
    warped = cols.pos_A + np.stack([0.03 * np.sin(np.pi * p[:, 1]), 0.06 * p[:, 1] ** 2], axis=1) * SHAPE[0] * PS
    bent = Columns(warped, cols.site, cols.atoms)
    q = quantify_columns(_frame(bent), material=WS2, pixel_size_A=PS)
    t = q.table
    d, idx = spatial.cKDTree(warped / PS).query(t[["row", "col"]].to_numpy())
    for name, site in (("metal", "M"), ("chalcogen", "X")):
        sel = (t["sublattice"] == name).to_numpy()
        assert (cols.site[idx[sel]] == site).all()
        assert np.percentile(d[sel], 99) * PS < 0.35
    assert q.lattice.strain > 0.05
    rel = t.loc[t["sublattice"] == "metal", "intensity_rel"]
    assert (np.abs(rel - 1) < 0.3).mean() > 0.97


def test_hole_has_low_fit_quality():
    cols = _lattice()
    centre = np.array(SHAPE) * PS / 2
    hole = np.hypot(*(cols.pos_A - centre).T) < 7.0
    holed = Columns(cols.pos_A[~hole], cols.site[~hole], cols.atoms[~hole])
    t = quantify_columns(_frame(holed), material=WS2, pixel_size_A=PS).table
    r = np.hypot(t["row"] * PS - centre[0], t["col"] * PS - centre[1])
    inside = t[(r < 4.0) & (t["sublattice"] != "hollow")]
    outside = t[r > 14.0]
    assert len(inside) >= 6
    assert (inside["intensity_rel"] < 0.3).all()
    assert inside["fit_quality"].max() < outside["fit_quality"].quantile(0.01)


def test_same_frame_same_table():
    # speed is measured by the benchmark (speed section), not asserted here
    frame = _frame(_lattice(shape=(512, 512)), shape=(512, 512))
    a = quantify_columns(frame, material=WS2, pixel_size_A=PS).table
    b = quantify_columns(frame, material=WS2, pixel_size_A=PS).table
    assert a.equals(b)


def test_bad_input_is_reported():
    with pytest.raises(ValueError, match="pixel_size_A"):
        quantify_columns(np.random.default_rng(0).random((64, 64)), material=WS2, pixel_size_A=0)
    with pytest.raises(ValueError, match="no hexagonal lattice"):
        quantify_columns(np.random.default_rng(0).random((128, 128)), material=WS2, pixel_size_A=PS)


@pytest.mark.skipif(not REAL.is_dir(), reason="real frames in ../shared/data/real are absent")
def test_real_mos2_frame_ratio_is_physical():
    from stem2d.lattice.scale import measure_pixel_size

    mos2 = get_material("MoS2")
    frame = np.load(REAL / "MoS2_stem_Exp-000-2.npy").astype(np.float64)
    ps = measure_pixel_size(frame, mos2).pixel_size_A
    q = quantify_columns(frame, material=mos2, pixel_size_A=ps)
    # incoherent Z^1.7 contrast: Mo / S2 = 2.6
    assert 2.0 < q.ratio_metal_chalcogen < 3.2
    assert len(q.sites("metal")) > 500


def _drifted_pair():
    """Two frames of one lattice a few px apart (drift), with their own noise."""
    cols = _lattice()
    moved = Columns(cols.pos_A + [0.9, -1.4], cols.site, cols.atoms)
    return _frame(cols, rng=1), _frame(moved, rng=2)


def test_basis_hint_skips_the_bragg_search_and_keeps_the_fit(monkeypatch):
    from stem2d.lattice import columns as C

    first, second = _drifted_pair()
    hint = C.fit_lattice(first, material=WS2, pixel_size_A=PS).basis
    full = quantify_columns(second, material=WS2, pixel_size_A=PS)

    def no_search(*args, **kwargs):
        raise AssertionError("the Bragg search ran although the hint fits")

    monkeypatch.setattr(C, "_reciprocal_lattice", no_search)
    hinted = quantify_columns(second, material=WS2, pixel_size_A=PS, basis_hint=hint)
    # the same basis to a small fraction of a DFT bin, and the same table
    assert np.abs(hinted.lattice.basis - full.lattice.basis).max() * SHAPE[0] < 1e-3
    a, b = full.table, hinted.table
    assert (a["sublattice"] == b["sublattice"]).all() and (a[["i", "j"]] == b[["i", "j"]]).all().all()
    assert np.abs(a[["row", "col"]].to_numpy() - b[["row", "col"]].to_numpy()).max() < 1e-3
    assert np.abs(a["intensity_rel"] - b["intensity_rel"]).max() < 1e-4


def test_a_hint_that_does_not_fit_falls_back_to_the_search():
    _, second = _drifted_pair()
    full = quantify_columns(second, material=WS2, pixel_size_A=PS)
    basis = full.lattice.basis
    turn = np.radians(4.0)
    rot = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    second_ring = np.stack([basis[0] + basis[1], 2 * basis[1] - basis[0]])  # 30 degrees off, sqrt(3) longer
    for wrong in (basis @ rot.T, basis * 1.03, second_ring):  # 1.6, 0.7 bins off; another ring
        again = quantify_columns(second, material=WS2, pixel_size_A=PS, basis_hint=wrong)
        assert again.table.equals(full.table)
    # a hint does not make a lattice out of noise: the search still refuses it
    with pytest.raises(ValueError, match="no hexagonal lattice"):
        quantify_columns(np.random.default_rng(0).random((128, 128)), material=WS2, pixel_size_A=PS,
                         basis_hint=basis)
