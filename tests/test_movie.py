"""Synthetic movies (stem2d.sim.movie, .dynamics, .movie_cli): determinism, truth, drift, rates."""

import json
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.feature import peak_local_max
from skimage.filters import window
from skimage.registration import phase_cross_correlation

from stem2d.classes import ClassSet
from stem2d.materials import get_material
from stem2d.sim.dynamics import DefectRates, simulate_defects
from stem2d.sim.lattice import column_weights, lattice_vectors_A, mx2_columns
from stem2d.sim.movie import MovieConfig, simulate_movie
from stem2d.sim.movie_cli import main, write_movie

WS2 = get_material("WS2")
A = WS2.a_A
PS = 0.25
CONF = Path(__file__).resolve().parents[1] / "conf"
DENSE = dict(mo_density_per_nm2=1.0, s_vacancy_density_per_nm2=1.0, w_vacancy_density_per_nm2=0.3,
             w_antisite_density_per_nm2=0.3, mo_switch_prob_ab=0.5, mo_switch_prob_ba=0.5)


def small(**kw) -> MovieConfig:
    base = dict(n_frames=4, frame_shape=(128, 128), pixel_size_A=PS)
    return MovieConfig(**{**base, **kw})


def test_same_seed_same_movie_and_frame_alone_equals_in_sequence():
    cfg = small(**DENSE)
    a, b = simulate_movie(cfg, 5), simulate_movie(cfg, 5)
    pd.testing.assert_frame_equal(a.truth, b.truth)
    np.testing.assert_array_equal(a.drift_px, b.drift_px)
    in_sequence = list(a.frames)
    alone = simulate_movie(cfg, 5).frames[2]  # a fresh movie, only frame 2 rendered
    np.testing.assert_array_equal(alone, in_sequence[2])
    for x, y in zip(in_sequence, b.frames):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.frames[-1], in_sequence[3])
    assert a.shape == (4, 128, 128) and len(a.frames) == 4
    assert in_sequence[0].dtype == np.float32 and in_sequence[0].shape == (128, 128)
    assert not np.array_equal(simulate_movie(cfg, 6).frames[0], in_sequence[0])
    with pytest.raises(IndexError):
        a.frames[4]


def test_truth_table_columns_dtypes_and_classes():
    movie = simulate_movie(small(**DENSE), 1)
    t = movie.truth
    assert list(t.columns[:5]) == ["frame", "row", "col", "class", "track"]
    assert {"kind", "config"} <= set(t.columns)
    assert t["frame"].dtype == np.int64 and t["track"].dtype == np.int64
    assert t["row"].dtype == np.float64 and t["col"].dtype == np.float64
    assert pd.api.types.is_string_dtype(t["class"]) and pd.api.types.is_string_dtype(t["kind"])
    assert t["row"].between(-0.5, 127.5).all() and t["col"].between(-0.5, 127.5).all()
    expected = {"Mo_W": "mo_dopant", "V_S": "s_vacancy", "V_S2": "s_vacancy", "V_W": "w_vacancy",
                "W_S2": "w_dopant", "W_S": "w_dopant"}
    assert (t["class"] == t["kind"].map(expected)).all()
    assert set(t.loc[t["kind"] == "Mo_W", "config"]) == {"A", "B"}
    assert (t.loc[t["kind"] != "Mo_W", "config"] == "").all()
    assert not t.duplicated(["frame", "track"]).any()
    # a class set without V_S leaves single vacancies out of the truth
    six = ClassSet.from_mapping({"mo_w": ["Mo_W"], "v_s2": ["V_S2"], "v_w": ["V_W"]})
    t6 = simulate_movie(small(**DENSE), 1, classes=six).truth
    assert set(t6["kind"]) <= {"Mo_W", "V_S2", "V_W"} and len(t6) < len(t)



def test_generic_site_classes_name_the_truth():
    """conf/classes/sites.yaml names kinds generically (Mlight_M, X_X2, ...): they match the movie's Mo_W, V_S2, ..."""
    import yaml

    sites = ClassSet.from_mapping(yaml.safe_load(open(CONF / "classes" / "sites.yaml")))
    t = simulate_movie(small(**DENSE), 1, classes=sites).truth
    default = simulate_movie(small(**DENSE), 1).truth
    assert len(t) == len(default) > 0  # every simulated WS2 kind has a site class
    assert set(t.loc[t["kind"] == "Mo_W", "class"]) == {"metal_lighter"}
    assert set(t.loc[t["kind"] == "V_W", "class"]) == {"metal_vacancy"}
    assert set(t["class"]) <= set(sites.names)

def test_truth_points_are_the_defects_of_the_clean_render():
    """Defect-minus-pristine render has its extremum at every truth point, of the right size."""
    cfg = small(**DENSE, drift_speed_px_per_frame=2.0, mo_b_offset_A=0.8)
    movie = simulate_movie(cfg, 3)
    seen = set()
    for k in range(cfg.n_frames):
        clean, pristine = movie.clean_frame(k), movie.clean_frame(k, defects=False)
        diff = clean - pristine
        peaks, peaks0 = peak_local_max(clean, min_distance=2, threshold_abs=0.2), \
            peak_local_max(pristine, min_distance=2, threshold_abs=0.5)
        here = movie.truth[movie.truth["frame"] == k]
        tree = cKDTree(here[["row", "col"]].to_numpy())
        for _, d in here.iterrows():
            r, c, kind = d["row"], d["col"], d["kind"]
            if min(r, c) < 6 or max(r, c) > 121:
                continue
            seen.add(kind + d["config"])
            if kind == "Mo_W":  # a local maximum of the image sits on the dopant
                assert np.hypot(*(peaks - (r, c)).T).min() < 1.0, (k, d)
                site_dist = np.hypot(*(peaks0 - (r, c)).T).min()
                expect = 0.8 / PS if d["config"] == "B" else 0.0
                assert abs(site_dist - expect) < 1.0, (k, d, site_dist)
                continue
            occupant = {"V_S": [[16, 0]], "V_S2": [[0, 0]], "V_W": [[0, 0]],
                        "W_S2": [[74, 0]], "W_S": [[16, 74]]}[kind]
            host = [[74, 0]] if kind == "V_W" else [[16, 16]]
            dw = (column_weights(np.array(occupant), z_exponent=1.7, z_reference=74)
                  - column_weights(np.array(host), z_exponent=1.7, z_reference=74))[0]
            value = ndimage.map_coordinates(diff, [[r], [c]], order=1)[0]
            assert value == pytest.approx(dw, rel=0.15, abs=0.01), (k, d)
            if len(tree.query_ball_point([r, c], 14.0)) > 1:
                continue  # a neighbouring defect's tail may win the window
            r0, c0 = int(round(r)), int(round(c))
            win = np.abs(diff[r0 - 3:r0 + 4, c0 - 3:c0 + 4])
            wr, wc = np.unravel_index(win.argmax(), win.shape)
            assert np.hypot(r0 - 3 + wr - r, c0 - 3 + wc - c) < 1.0, (k, d)
    assert {"Mo_WA", "Mo_WB", "V_S", "V_W"} <= seen


@pytest.mark.parametrize("scan_fraction", [0.0, 1.0])
def test_drift_matches_lattice_shift_and_static_truth(scan_fraction):
    cfg = small(n_frames=5, frame_shape=(192, 192), scan_drift_fraction=scan_fraction, **DENSE)
    movie = simulate_movie(cfg, 11)
    # plain (not whitened) cross-correlation of Hann-windowed consecutive clean frames; a
    # lattice repeats, so only small steps are unambiguous: accumulate them
    hann = window("hann", (192, 192))
    clean = [movie.clean_frame(k) * hann for k in range(cfg.n_frames)]
    steps = [phase_cross_correlation(clean[k], clean[k + 1], upsample_factor=20,
                                     normalization=None)[0] for k in range(cfg.n_frames - 1)]
    # skimage returns the shift that registers the later frame onto the earlier: minus the step
    np.testing.assert_allclose(-np.cumsum(steps, axis=0), movie.drift_px[1:], atol=0.15)
    assert movie.drift_px[0].tolist() == [0.0, 0.0]
    assert np.hypot(*np.diff(movie.drift_px, axis=0).T).min() > 0.3
    # immobile defects follow the drift: exactly for rigid frames, to within the shear otherwise
    t = movie.truth[movie.truth["kind"].isin(["V_W", "W_S2", "W_S"])]
    assert t["track"].nunique() >= 2
    for _, track in t.groupby("track"):
        moved = track[["row", "col"]].to_numpy() - track[["row", "col"]].to_numpy()[0]
        drift = movie.drift_px[track["frame"]] - movie.drift_px[track["frame"].iloc[0]]
        np.testing.assert_allclose(moved, drift, atol=1e-9 if scan_fraction == 0 else 1.0)


def _sparse_rates(**kw) -> DefectRates:
    zero = {f.name: 0.0 for f in fields(DefectRates)}
    return DefectRates(**{**zero, **kw})


def test_vacancy_hops_match_hop_probability_and_stickiness():
    p_hop, sticky = 0.3, 0.4
    cols = mx2_columns(WS2, extent_A=(60.0, 60.0))
    rates = _sparse_rates(s_vacancy_density_per_nm2=1.0, s_vacancy_hop_prob=p_hop,
                          s_vacancy_sticky_factor=sticky)
    moved, n_nb, hop_len = [], [], []
    for seed in range(5):
        h = simulate_defects(cols, material=WS2, rates=rates, n_frames=80, area_nm2=36.0, rng=seed)
        for k, now in h[h["frame"] < h["frame"].max()].groupby("frame"):
            xy = now[["row_A", "col_A"]].to_numpy()  # all are V_S or V_S2 here
            n = cKDTree(xy).query_ball_point(xy, 1.05 * A, return_length=True) - 1
            is_vs = (now["kind"] == "V_S").to_numpy()
            nxt = h[h["frame"] == k + 1][["track", "row_A", "col_A"]]
            pair = now[is_vs].merge(nxt, on="track", how="left", suffixes=("", "_next"))
            step = np.hypot(pair["row_A_next"] - pair["row_A"], pair["col_A_next"] - pair["col_A"])
            gone = step.isna().to_numpy()  # the track ended: merged into another vacancy
            moved.append(gone | (step.to_numpy() > 0))
            n_nb.append(n[is_vs])
            hop_len.append(step[step > 0].to_numpy())
    moved, n_nb, hop_len = np.concatenate(moved), np.concatenate(n_nb), np.concatenate(hop_len)
    np.testing.assert_allclose(hop_len, A, rtol=1e-9)  # hops go to a neighbouring S2 column
    for n in (0, 1):
        sel = moved[n_nb == n]
        p = p_hop * sticky**n
        assert len(sel) > 300
        assert abs(sel.mean() - p) < 4 * np.sqrt(p * (1 - p) / len(sel)), (n, sel.mean(), p)


def test_dopant_switching_matches_probabilities():
    p_ab, p_ba = 0.15, 0.35
    cols = mx2_columns(WS2, extent_A=(40.0, 40.0))
    rates = _sparse_rates(mo_density_per_nm2=3.0, mo_switch_prob_ab=p_ab, mo_switch_prob_ba=p_ba)
    h = simulate_defects(cols, material=WS2, rates=rates, n_frames=400, area_nm2=16.0, rng=2)
    h = h.sort_values(["track", "frame"])
    same = h["track"].to_numpy()[1:] == h["track"].to_numpy()[:-1]
    before, after = h["config"].to_numpy()[:-1][same], h["config"].to_numpy()[1:][same]
    assert (h["kind"] == "Mo_W").all() and h.groupby("frame").size().nunique() == 1
    for src, dst, p in (("A", "B", p_ab), ("B", "A", p_ba)):
        n = (before == src).sum()
        freq = ((before == src) & (after == dst)).sum() / n
        assert abs(freq - p) < 4 * np.sqrt(p * (1 - p) / n), (src, freq, p)
    assert (h["config"] == "B").mean() == pytest.approx(p_ab / (p_ab + p_ba), abs=0.05)


def test_dopant_b_is_displaced_towards_a_hollow_site():
    movie = simulate_movie(small(**DENSE, mo_b_offset_A=0.4), 4)
    h = movie.history[movie.history["kind"] == "Mo_W"]
    shift = h[["row_A", "col_A"]].to_numpy() - h[["site_row_A", "site_col_A"]].to_numpy()
    is_b = (h["config"] == "B").to_numpy()
    assert is_b.any() and (~is_b).any()
    np.testing.assert_allclose(np.hypot(*shift[~is_b].T), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.hypot(*shift[is_b].T), 0.4, rtol=1e-9)
    vecs = lattice_vectors_A(A, movie.params["rotation_deg"])
    to_x = (vecs[0] + vecs[1]) / 3.0 - np.array([[0.0, 0.0], vecs[0], vecs[1]])  # M -> X2
    hollow = -to_x / np.linalg.norm(to_x, axis=1, keepdims=True)
    cos = shift[is_b] @ hollow.T / 0.4
    np.testing.assert_allclose(cos.max(axis=1), 1.0, atol=1e-9)


@pytest.mark.parametrize("field, value", [
    ("n_frames", 0), ("n_frames", 2.5), ("frame_shape", (16, 16)), ("frame_shape", (64,)),
    ("pixel_size_A", -0.1), ("pixel_size_A", 3.0), ("pixel_size_range_A", (0.3, 0.2)),
    ("dose_e_per_A2", 0.0), ("probe_fwhm_A", -1.0), ("jitter_correlation", 1.0),
    ("scan_drift_fraction", 1.5), ("max_drift_px", -1.0), ("s_vacancy_hop_prob", 1.5),
    ("mo_switch_prob_ab", -0.1), ("s_vacancy_sticky_factor", 2.0),
    ("s_vacancy_density_per_nm2", "many"), ("mo_b_offset_A", 2.0), ("material", "XY2"),
    ("dopant", "W"), ("rotation_deg", float("nan")),
])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        MovieConfig(**{field: value})


def test_params_hold_the_true_rates():
    cfg = small(s_vacancy_hop_prob=0.2, mo_switch_prob_ab=0.05, mo_switch_prob_ba=0.15)
    movie = simulate_movie(cfg, 0)
    p = movie.params
    assert p["s_vacancy_hop_prob"] == 0.2 and p["mo_switch_prob_ab"] == 0.05
    assert p["mo_b_fraction"] == pytest.approx(0.25)
    assert movie.hop_length_A == p["hop_length_A"] == A
    assert p["s_vacancy_diffusion_A2_per_frame"] == pytest.approx(0.2 * A**2 / 4)
    assert p["pixel_size_A"] == movie.pixel_size_A == PS
    json.dumps(p)
    rnd = simulate_movie(small(pixel_size_A=None), 0)
    assert 0.15 <= rnd.pixel_size_A <= 0.35


def test_cli_writes_tif_truth_and_json(tmp_path, capsys):
    out = tmp_path / "sub" / "movie.tif"
    assert main(["--out", str(out), "--frames", "3", "--seed", "2", "--size", "64",
                 "--pixel-size-A", "0.3", "--dose", "4e4", "--no-progress"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(out)
    _check_written(out, n=3, size=64, pixel_size_A=0.3)
    movie = simulate_movie(small(n_frames=3, frame_shape=(64, 64), pixel_size_A=0.3,
                                 dose_e_per_A2=4e4), 2)
    np.testing.assert_array_equal(tifffile.imread(out)[1], movie.frames[1])


def _check_written(out, *, n, size, pixel_size_A):
    with tifffile.TiffFile(out) as tif:
        data = tif.asarray()
        assert tif.is_imagej and tif.imagej_metadata["unit"] == "nm"
        num, den = tif.pages[0].tags["XResolution"].value
    assert data.shape == (n, size, size) and data.dtype == np.float32
    assert den / num * 10 == pytest.approx(pixel_size_A, rel=1e-6)
    truth = pd.read_csv(out.with_name(out.stem + "_truth.csv"))
    assert list(truth.columns[:5]) == ["frame", "row", "col", "class", "track"]
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["pixel_size_A"] == pytest.approx(pixel_size_A)
    assert len(meta["drift_px"]) == n and "s_vacancy_hop_prob" in meta["params"]
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(
        [out.name, out.stem + "_truth.csv", out.stem + ".json"])


def test_write_movie_leaves_nothing_complete_looking_after_a_crash(tmp_path, monkeypatch):
    movie = simulate_movie(small(n_frames=3, frame_shape=(64, 64)), 0)
    render = movie._renderer.frame

    def crash(k):
        if k == 2:
            raise RuntimeError("boom")
        return render(k)

    monkeypatch.setattr(movie._renderer, "frame", crash)
    with pytest.raises(RuntimeError, match="boom"):
        write_movie(movie, tmp_path / "m.tif")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="m.png"):
        write_movie(movie, tmp_path / "m.png")


@pytest.mark.slow
def test_cli_subprocess(tmp_path):
    out = tmp_path / "movie.tif"
    res = subprocess.run([sys.executable, "-m", "stem2d.sim.movie_cli", "--out", str(out), "--frames",
                          "2", "--seed", "0", "--size", "64", "--pixel-size-A", "0.25"],
                         capture_output=True, text=True, check=True, timeout=120)
    assert res.stdout.strip() == str(out)
    _check_written(out, n=2, size=64, pixel_size_A=0.25)
    bad = subprocess.run([sys.executable, "-m", "stem2d.sim.movie_cli", "--out", str(out),
                          "--dose", "-1"], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "dose_e_per_A2" in bad.stderr
