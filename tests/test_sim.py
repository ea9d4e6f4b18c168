"""Physics and invariants of the simulator (stem2d.sim)."""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from stem2d.classes import DEFAULT_CLASS_KINDS, ClassSet, parse_kind
from stem2d.materials import MATERIALS, get_material
from stem2d.sim.imaging import Acquisition, Probe, acquire, render_haadf
from stem2d.sim.lattice import (
    apply_defect,
    hollow_directions,
    mx2_columns,
    nearest_column,
)
from stem2d.sim.tiles import check_tile_size, simulate_tile

WS2 = get_material("WS2")


@pytest.mark.parametrize("rotation", [0.0, 17.0, 71.5])
@pytest.mark.parametrize("name", sorted(MATERIALS))
def test_lattice_geometry(name, rotation):
    mat = get_material(name)
    cols = mx2_columns(mat, extent_A=(30.0, 30.0), rotation_deg=rotation, origin_A=(1.3, 2.1))
    metal = cols.pos_A[cols.site == "M"]
    chalc = cols.pos_A[cols.site == "X"]
    d_mm, _ = cKDTree(metal).query(metal, k=2)
    np.testing.assert_allclose(d_mm[:, 1], mat.a_A, rtol=1e-9)
    d_mx, _ = cKDTree(chalc).query(metal, k=1)
    np.testing.assert_allclose(d_mx, mat.a_A / np.sqrt(3), rtol=1e-9)
    # every metal column has 3 chalcogen neighbours at a/sqrt(3) (honeycomb)
    inner = metal[(metal > 5).all(axis=1) & (metal < 25).all(axis=1)]
    counts = [len(n) for n in cKDTree(chalc).query_ball_point(inner, mat.a_A / np.sqrt(3) * 1.01)]
    assert set(counts) == {3}


def test_z_contrast_ratio():
    """A pristine S2 column peaks at ~15 % of a W column (n = 1.7), Mo on W at ~38 %."""
    cols = mx2_columns(WS2, extent_A=(30.0, 30.0), origin_A=(15.0, 15.0))
    probe = Probe(tail_fraction=0.0)
    img = render_haadf(cols, shape=(100, 100), pixel_size_A=0.3, probe=probe)
    iw = nearest_column(cols, (15.0, 15.0), "M")
    ix = nearest_column(cols, (15.0, 15.0), "X")

    def peak(i):
        r, c = np.round(cols.pos_A[i] / 0.3).astype(int)
        return img[r - 1:r + 2, c - 1:c + 2].max()

    ratio = peak(ix) / peak(iw)
    assert 0.1 < ratio < 0.3
    assert ratio == pytest.approx(2 * 16**1.7 / 74**1.7, rel=0.1)
    doped = apply_defect(cols, parse_kind("Mo_W", WS2), iw)
    img_mo = render_haadf(doped, shape=(100, 100), pixel_size_A=0.3, probe=probe)
    r, c = np.round(cols.pos_A[iw] / 0.3).astype(int)
    assert img_mo[r, c] / img[r, c] == pytest.approx((42 / 74) ** 1.7, rel=0.1)


@pytest.mark.parametrize("kind", ["Mo_W", "V_S", "V_S2", "V_W", "W_S2", "W_S", "S_W"])
def test_defect_changes_image_only_at_its_site(kind):
    parsed = parse_kind(kind, WS2)
    cols = mx2_columns(WS2, extent_A=(19.2, 19.2), rotation_deg=23.0, origin_A=(9.6, 9.6))
    idx = nearest_column(cols, (9.6, 9.6), parsed.site)
    probe = Probe(tail_fraction=0.0)
    clean = render_haadf(cols, shape=(64, 64), pixel_size_A=0.3, probe=probe)
    defect = render_haadf(apply_defect(cols, parsed, idx), shape=(64, 64), pixel_size_A=0.3, probe=probe)
    diff = np.abs(defect - clean)
    assert diff.max() > 0.05
    rr, cc = np.indices(diff.shape)
    site_px = cols.pos_A[idx] / 0.3
    dist = np.hypot(rr - site_px[0], cc - site_px[1])
    # probe sigma = 0.9 A / 2.355 = 1.27 px; 5 sigma away the change must vanish
    assert diff[dist > 7.0].max() < 1e-4 * diff.max()
    r, c = np.unravel_index(diff.argmax(), diff.shape)
    assert np.hypot(r - site_px[0], c - site_px[1]) < 1.0


def test_simulate_tile_truth_and_determinism():
    a, ta = simulate_tile("V_W", material=WS2, rng=7)
    b, tb = simulate_tile("V_W", material=WS2, rng=7)
    c, _ = simulate_tile("V_W", material=WS2, rng=8)
    np.testing.assert_array_equal(a, b)
    assert ta == tb
    assert not np.array_equal(a, c)
    assert a.shape == (64, 64) and a.dtype == np.float64
    assert np.hypot(ta.row - 31.5, ta.col - 31.5) <= 3.0
    # a W vacancy: the image is dark at the labelled site
    assert a[round(ta.row), round(ta.col)] < 0.3 * a.max()
    p, tp = simulate_tile(None, material=WS2, rng=7)
    assert np.isnan(tp.row) and tp.kind is None


def test_acquire_dose_scaling_and_rng():
    clean, _ = simulate_tile(None, material=WS2, rng=0)
    acq = Acquisition(dose_e_per_A2=1e5, detector_sigma_counts=0.0, jitter_px=0.0, background_fraction=0.0)
    a = acquire(clean, pixel_size_A=0.3, acq=acq, rng=1)
    b = acquire(clean, pixel_size_A=0.3, acq=acq, rng=1)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32
    expected = clean * acq.peak_counts(0.3)
    assert a.mean() == pytest.approx(expected.mean(), rel=0.02)
    # Poisson: variance equals the mean
    resid = (a - expected) / np.sqrt(np.clip(expected, 1, None))
    assert resid.std() == pytest.approx(1.0, rel=0.1)


@pytest.mark.parametrize("bad", [
    dict(dose_e_per_A2=-1.0), dict(dose_e_per_A2=0.0), dict(jitter_px=-0.1), dict(jitter_correlation=1.0),
])
def test_bad_acquisition_names_key(bad):
    key = next(iter(bad))
    with pytest.raises(ValueError, match=key):
        Acquisition(**bad)


def test_bad_inputs_name_the_value():
    with pytest.raises(ValueError, match="'XS2'"):
        get_material("XS2")
    with pytest.raises(ValueError, match="pixel_size_A"):
        check_tile_size(64, 0.0, WS2)
    with pytest.raises(ValueError, match="too small"):
        check_tile_size(16, 0.3, WS2)
    with pytest.raises(ValueError, match="Mo_W"):
        ClassSet.from_mapping({"pristine": [], "mo": ["Mo_W"]}).validate(get_material("MoS2"))
    with pytest.raises(ValueError, match="'Xx'"):
        parse_kind("Xx_W", WS2)
    with pytest.raises(ValueError, match="'nope'"):
        ClassSet.from_mapping(None).index("nope")


def test_default_classes_contract():
    cs = ClassSet.from_mapping(None)
    assert cs.names == ("pristine", "mo_dopant", "s_vacancy", "w_vacancy", "w_dopant")
    cs.validate(WS2)
    assert cs.to_dict() == {k: list(v) for k, v in DEFAULT_CLASS_KINDS.items()}


def test_hollow_directions_point_at_empty_hollows():
    cols = mx2_columns(WS2, extent_A=(20.0, 20.0), rotation_deg=17.0, origin_A=(10.0, 10.0))
    m = nearest_column(cols, (10.0, 10.0), "M")
    dirs = hollow_directions(17.0)
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=1), 1.0)
    for d in dirs:
        to_hollow = np.hypot(*(cols.pos_A - (cols.pos_A[m] + WS2.mx_distance_A * d)).T).min()
        to_x2 = np.hypot(*(cols.pos_A - (cols.pos_A[m] - WS2.mx_distance_A * d)).T).min()
        assert to_hollow > 1.5 and to_x2 < 1e-9   # the opposite way lies an X2 column


def test_neighbours_stay_away_from_the_centre_defect():
    kw = {"material": WS2, "rng": 3, "probe": Probe(tail_fraction=0.0)}
    alone, truth = simulate_tile("V_S", **kw)
    crowded, truth2 = simulate_tile("V_S", neighbours=("Mo_W", "V_W", "V_S2", "W_S2"),
                                    min_neighbour_distance_A=6.0, **kw)
    assert truth == truth2
    diff = np.abs(crowded - alone)
    rr, cc = np.indices(diff.shape)
    dist_px = np.hypot(rr - truth.row, cc - truth.col)
    assert diff.max() > 0.3                                   # the neighbours are in the tile
    # probe sigma 1.27 px: 6 A = 20 px away, nothing changes within 20 - 7 px of the centre site
    assert diff[dist_px < 13.0].max() < 1e-4 * diff.max()


def test_displaced_dopant_moves_its_column_towards_a_hollow():
    kw = {"material": WS2, "rng": 5, "probe": Probe(tail_fraction=0.0), "max_offset_px": 0.0}
    on_site, truth = simulate_tile("Mo_W", **kw)
    moved, truth_b = simulate_tile("Mo_W", dopant_offset_A=0.5, **kw)
    assert truth == truth_b                                   # the label stays the metal site
    diff = moved - on_site
    peak = np.unravel_index(diff.argmax(), diff.shape)
    shift_px = np.hypot(peak[0] - truth.row, peak[1] - truth.col)
    assert 0.5 < shift_px < 4.0 and np.abs(diff).max() > 0.02
    np.testing.assert_array_equal(simulate_tile("Mo_W", dopant_offset_A=0.5, **kw)[0], moved)
