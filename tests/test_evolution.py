"""Tests of stem2d.evolution: drift, linking, dynamics (diffusion, switching, lifetimes), evolve, command."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from skimage.registration import phase_cross_correlation

from stem2d.evolution import analysis, evolve
from stem2d.evolution.__main__ import main
from stem2d.evolution.drift import correct_positions, estimate_drift
from stem2d.evolution.tracking import (
    check_detections,
    link_recovery,
    link_recovery_counts,
    link_tracks,
)

PIXEL_SIZE_A = 0.3
A_A = 3.18  # WS2 lattice constant = S-S hop length
HOP_PX = A_A / PIXEL_SIZE_A


def honeycomb(shape, *, shift_px=(0.0, 0.0), rotation_deg=7.0, sigma_A=0.45):
    """WS2-like honeycomb of Gaussian columns (W 1.0, S2 0.3), translated by ``shift_px`` (row, col)."""
    h, w = shape
    th = np.deg2rad(rotation_deg)
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    a1, a2 = rot @ [0.0, HOP_PX], rot @ [HOP_PX * np.sqrt(3) / 2, HOP_PX / 2]
    n = int(max(h, w) / HOP_PX * 2) + 3
    i, j = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij")
    metal = i.ravel()[:, None] * a1 + j.ravel()[:, None] * a2
    pos = np.concatenate([metal, metal + (a1 + a2) / 3]) + np.asarray(shift_px)
    amp = np.repeat([1.0, 0.3], len(metal))
    keep = np.all((pos > -6) & (pos < np.array([h, w]) + 6), axis=1)
    pos, amp = pos[keep], amp[keep]
    s = sigma_A / PIXEL_SIZE_A
    gr = np.exp(-((np.arange(h)[None, :] - pos[:, :1]) ** 2) / (2 * s * s))
    gc = np.exp(-((np.arange(w)[None, :] - pos[:, 1:]) ** 2) / (2 * s * s))
    return (gr * amp[:, None]).T @ gc


def drifting_movie(true_drift, shape=(128, 128), peak_counts=10.0, rng=0):
    """Poisson-noisy honeycomb frames whose content moves by ``true_drift[t]`` px."""
    gen = np.random.default_rng(rng)
    frames = [gen.poisson(peak_counts * (honeycomb(shape, shift_px=d) + 0.05)) for d in true_drift]
    return np.stack(frames).astype(np.float32)


def simulate_defects(*, n_walkers=20, n_switchers=10, n_frames=50, hop_prob=0.3, p_ab=0.2, p_ba=0.3,
                     frame_shape=(256, 256), loc_sigma_px=0.3, miss_prob=0.03, rng=0):
    """Truth tracks and noisy detections: S vacancies hopping on the triangular S lattice (hop
    length a, probability ``hop_prob`` per frame, one of 6 neighbours) and immobile dopants
    switching ``mo_a -> mo_b`` with ``p_ab`` and back with ``p_ba`` per frame."""
    gen = np.random.default_rng(rng)
    h, w = frame_shape
    ang = np.deg2rad(np.arange(6) * 60 + 15)
    neighbours = HOP_PX * np.stack([np.sin(ang), np.cos(ang)], 1)
    n = n_walkers + n_switchers
    starts: list[np.ndarray] = []
    for _ in range(100_000):
        if len(starts) == n:
            break
        p = gen.uniform([20, 20], [h - 20, w - 20])
        if all(np.hypot(*(p - q)) >= 30 for q in starts):
            starts.append(p)
    assert len(starts) == n, f"cannot place {n} defects 30 px apart in {frame_shape}"
    pos = np.array(starts)
    state = gen.random(n) < p_ab / (p_ab + p_ba)
    rows = []
    for t in range(n_frames):
        if t > 0:
            hop = (gen.random(n) < hop_prob) & (np.arange(n) < n_walkers)
            pos[hop] += neighbours[gen.integers(0, 6, hop.sum())]
            u = gen.random(n)
            state = np.where(state, u >= p_ba, u < p_ab)
        for i in range(n):
            cls = "s_vacancy" if i < n_walkers else ("mo_b" if state[i] else "mo_a")
            rows.append((i, t, pos[i, 0], pos[i, 1], cls))
    truth = pd.DataFrame(rows, columns=["track", "frame", "row", "col", "class"])
    truth = truth[truth["row"].between(0, h - 1) & truth["col"].between(0, w - 1)].reset_index(drop=True)
    det = truth.drop(columns="track")
    det[["row", "col"]] += gen.normal(0, loc_sigma_px, (len(det), 2))
    det["score"] = 0.9
    return truth, det[gen.random(len(det)) >= miss_prob].reset_index(drop=True)


# --- drift -----------------------------------------------------------------------------------


def test_drift_recovers_subpixel_steps_on_noisy_lattice():
    gen = np.random.default_rng(3)
    steps = gen.uniform(-2.5, 2.5, (10, 2))
    steps[0] = 0
    true = np.cumsum(steps, axis=0)
    drift = estimate_drift(drifting_movie(true))
    assert drift.shape == (10, 2) and drift.dtype == np.float64
    assert np.all(drift[0] == 0)
    assert np.abs(np.diff(drift, axis=0) - steps[1:]).max() < 0.5  # per-frame target
    assert np.abs(drift - true).max() < 0.5


def test_drift_not_aliased_by_a_lattice_vector():
    """A 4 px step (below half the 10.6 px period) must not be reported as 4 px minus a lattice vector."""
    true = np.array([[0.0, 0.0], [3.6, -2.1], [3.6 - 1.5, 0.4]])
    movie = np.stack([honeycomb((96, 96), shift_px=d) for d in true])
    assert np.abs(estimate_drift(movie) - true).max() < 0.1


def test_drift_matches_skimage_on_aperiodic_image():
    gen = np.random.default_rng(0)
    base = gen.random((80, 80))
    movie = np.stack([base[8:72, 8:72], base[6:70, 11:75]])  # content moves by (+2, -3)
    drift = estimate_drift(movie, highpass_sigma_px=0)
    ref = -phase_cross_correlation(movie[0], movie[1], upsample_factor=20)[0]
    np.testing.assert_allclose(drift[1], [2.0, -3.0], atol=0.06)
    np.testing.assert_allclose(drift[1], ref, atol=0.1)


def test_drift_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="frames"):
        estimate_drift(np.zeros((16, 16)))
    with pytest.raises(ValueError, match="non-finite"):
        estimate_drift(np.full((2, 16, 16), np.nan))
    assert estimate_drift(np.ones((1, 16, 16))).tolist() == [[0.0, 0.0]]


def test_correct_positions_removes_drift():
    drift = np.array([[0.0, 0.0], [1.5, -2.0], [3.0, -1.0]])
    df = pd.DataFrame({"frame": [0, 1, 2], "row": [10.0, 11.5, 13.0], "col": [20.0, 18.0, 19.0], "extra": [1, 2, 3]})
    out = correct_positions(df, drift)
    np.testing.assert_allclose(out[["row", "col"]], [[10, 20]] * 3)
    assert out["extra"].tolist() == [1, 2, 3] and df["row"].iloc[1] == 11.5  # copy, extra kept
    with pytest.raises(ValueError, match="frame"):
        correct_positions(df.assign(frame=[0, 1, 5]), drift)


# --- linking ---------------------------------------------------------------------------------


def test_link_recovery_on_synthetic_walks():
    truth, det = simulate_defects(rng=1)
    tracks = link_tracks(det, search_range_px=1.5 * HOP_PX, memory=2)
    assert list(tracks.columns[:6]) == ["track", "frame", "row", "col", "class", "score"]
    counts = link_recovery_counts(tracks, truth, max_dist_px=3.0)
    assert counts["n_linkable"] > 0.9 * counts["n_true_links"]  # ~3 % misses, each costing <= 2 links
    assert link_recovery(tracks, truth, max_dist_px=3.0) >= 0.95


def test_link_recovery_counts_broken_links():
    frames = np.arange(10)
    truth = pd.DataFrame({"track": np.repeat([0, 1], 10), "frame": np.tile(frames, 2),
                          "row": np.repeat([10.0, 50.0], 10), "col": np.tile(frames * 2.0, 2)})
    assert link_recovery(truth, truth, max_dist_px=1.0) == 1.0
    swapped = truth.copy()
    late = swapped["frame"] >= 5
    swapped.loc[late, "track"] = 1 - swapped.loc[late, "track"]  # identity swap between frames 4 and 5
    assert link_recovery(swapped, truth, max_dist_px=1.0) == pytest.approx(16 / 18)
    missed = truth[~((truth["track"] == 0) & (truth["frame"] == 3))]
    c = link_recovery_counts(missed, truth, max_dist_px=1.0)
    assert (c["n_true_links"], c["n_linkable"], c["n_recovered"]) == (18, 16, 16)


def test_link_tracks_follows_class_changes_and_closes_gaps():
    det = pd.DataFrame({
        "frame": [0, 1, 2, 4, 0, 1, 2, 6],
        "row": [10.0, 11.0, 12.0, 13.0, 60.0, 60.5, 61.0, 61.0],
        "col": [10.0, 10.5, 11.0, 11.0, 60.0, 60.0, 60.5, 61.0],
        "class": ["mo_a", "mo_b", "mo_a", "mo_b", "s_vacancy"] * 1 + ["s_vacancy"] * 3,
        "score": 0.8,
    })
    tracks = link_tracks(det, search_range_px=5.0, memory=2)
    first = tracks[tracks["row"] < 30]
    assert first["track"].nunique() == 1 and len(first) == 4  # class changes and a 1-frame gap
    second = tracks[tracks["row"] > 30]
    assert second["track"].nunique() == 2  # a 3-frame gap exceeds memory=2
    assert tracks["track"].dtype == np.int64


def test_class_change_cost_keeps_a_vacancy_hopping_round_a_dopant():
    """An S vacancy hops between two S2 columns next to one Mo (1.84 A = 6.1 px from it, 10.6 px
    apart). By position alone swapping identities is cheaper (2 x 6.1^2 < 10.6^2)."""
    r = A_A / np.sqrt(3) / PIXEL_SIZE_A
    s1, s2 = r * np.array([0.0, 1.0]), r * np.array([np.sin(np.deg2rad(120)), np.cos(np.deg2rad(120))])
    det = pd.DataFrame({"frame": [0, 0, 1, 1], "row": [50.0, 50 + s1[0], 50.0, 50 + s2[0]],
                        "col": [50.0, 50 + s1[1], 50.0, 50 + s2[1]],
                        "class": ["mo_dopant", "s_vacancy", "mo_dopant", "s_vacancy"], "score": 1.0})
    plain = link_tracks(det, search_range_px=1.5 * HOP_PX, memory=0)
    assert plain.groupby("track")["class"].nunique().max() == 2  # swapped: both tracks change class
    kept = link_tracks(det, search_range_px=1.5 * HOP_PX, memory=0, class_change_cost_px=0.5 * 1.5 * HOP_PX)
    assert kept.groupby("track")["class"].nunique().max() == 1
    with pytest.raises(ValueError, match="class_change_cost_px"):
        link_tracks(det, search_range_px=5.0, class_change_cost_px=6.0)


def test_check_detections_names_bad_columns():
    good = pd.DataFrame({"frame": [0], "row": [1.0], "col": [2.0], "class": ["s_vacancy"], "score": [0.5]})
    with pytest.raises(ValueError, match="'score'"):
        check_detections(good.drop(columns="score"))
    with pytest.raises(ValueError, match="'row'"):
        check_detections(good.assign(row=np.nan))
    with pytest.raises(ValueError, match="'frame'"):
        check_detections(good.assign(frame=-1))


# --- dynamics --------------------------------------------------------------------------------


def test_hop_rate_and_switching_recovered_from_tracked_detections():
    truth, det = simulate_defects(n_walkers=20, n_switchers=20, n_frames=80, hop_prob=0.3,
                                  p_ab=0.2, p_ba=0.3, frame_shape=(320, 320), rng=2)
    tracks = link_tracks(det, search_range_px=1.5 * HOP_PX, memory=2)
    diff = analysis.diffusion(tracks, pixel_size_A=PIXEL_SIZE_A, hop_length_A=A_A, n_boot=100, rng=0)
    assert diff["hop_rate_per_frame"] == pytest.approx(0.3, rel=0.2)
    lo, hi = diff["hop_rate_ci_per_frame"]
    assert lo < diff["hop_rate_per_frame"] < hi and hi - lo < 0.2
    assert diff["D_A2_per_frame"] == pytest.approx(diff["hop_rate_per_frame"] * A_A**2 / 4)
    p = analysis.transitions(tracks, classes=["mo_a", "mo_b", "s_vacancy"])["probabilities"]
    assert p.loc["mo_a", "mo_b"] == pytest.approx(0.2, abs=0.05)
    assert p.loc["mo_b", "mo_a"] == pytest.approx(0.3, abs=0.05)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    life = analysis.lifetimes(tracks, n_frames=80)["summary"].set_index("class")
    assert life.loc["mo_a", "mean_lifetime_frames"] == pytest.approx(1 / 0.2, rel=0.25)
    assert life.loc["mo_b", "mean_lifetime_frames"] == pytest.approx(1 / 0.3, rel=0.25)


def test_immobile_vacancies_give_no_diffusion_and_the_noise_intercept():
    truth, det = simulate_defects(n_walkers=15, n_switchers=0, hop_prob=0.0, loc_sigma_px=0.5, miss_prob=0.0, rng=4)
    tracks = link_tracks(det, search_range_px=5.0, memory=0)
    diff = analysis.diffusion(tracks, pixel_size_A=PIXEL_SIZE_A, n_boot=50, rng=0)
    assert abs(diff["hop_rate_per_frame"]) < 0.01
    assert diff["intercept_A2"] == pytest.approx(4 * (0.5 * PIXEL_SIZE_A) ** 2, rel=0.2)  # 2D, 2 noisy ends


def test_diffusion_per_second_and_frame_consistent():
    truth, det = simulate_defects(n_walkers=8, n_switchers=0, n_frames=20, rng=5)
    tracks = link_tracks(det, search_range_px=1.5 * HOP_PX)
    d = analysis.diffusion(tracks, pixel_size_A=PIXEL_SIZE_A, frame_time_s=0.25, n_boot=20, rng=1)
    assert d["D_A2_per_s"] == pytest.approx(d["D_A2_per_frame"] / 0.25)
    assert d["hop_rate_ci_per_s"] == pytest.approx([v / 0.25 for v in d["hop_rate_ci_per_frame"]])
    again = analysis.diffusion(tracks, pixel_size_A=PIXEL_SIZE_A, frame_time_s=0.25, n_boot=20, rng=1)
    assert again["D_ci_A2_per_frame"] == d["D_ci_A2_per_frame"]  # same rng, same interval


def test_counts_fill_zeros_and_use_area_and_dose():
    tracks = pd.DataFrame({"track": [0, 0, 1], "frame": [0, 2, 2], "row": 5.0, "col": 5.0,
                           "class": ["s_vacancy", "s_vacancy", "mo_dopant"], "score": 1.0})
    area = analysis.frame_area_nm2((100, 200), 0.5)
    assert area == pytest.approx(100 * 200 * 0.25 / 100)
    c = analysis.counts_per_frame(tracks, n_frames=4, frame_area_nm2=area, classes=["s_vacancy", "w_vacancy"],
                                  dose_per_frame=[1.0, 2.0, 3.0, 4.0])
    assert len(c) == 4 * 3 and list(c["class"].unique()) == ["s_vacancy", "w_vacancy", "mo_dopant"]
    sv = c[c["class"] == "s_vacancy"]
    assert sv["count"].tolist() == [1, 0, 1, 0]
    np.testing.assert_allclose(sv["density_per_nm2"], sv["count"] / area)
    assert sv["dose_e_per_A2"].tolist() == [1.0, 3.0, 6.0, 10.0]
    with pytest.raises(ValueError, match="dose_per_frame"):
        analysis.counts_per_frame(tracks, n_frames=4, frame_area_nm2=area, dose_per_frame=[1.0, -1.0, 0, 0])


def test_creation_counts_new_interior_tracks_only():
    tracks = pd.DataFrame({
        "track": [0, 0, 1, 2, 3, 4], "frame": [0, 1, 3, 5, 2, 4],
        "row": [50.0, 50, 50, 2, 60, 70], "col": [50.0, 50, 80, 50, 60, 40],
        "class": ["s_vacancy", "s_vacancy", "s_vacancy", "s_vacancy", "mo_dopant", "s_vacancy"], "score": 1.0,
    })  # 0: present at frame 0; 2: starts at the edge; 3: another class -> created: tracks 1 and 4
    cr = analysis.creation(tracks, n_frames=11, frame_shape=(100, 100), pixel_size_A=0.3, edge_margin_px=5.0,
                           dose_per_frame=2.0)
    assert cr["n_created"] == 2
    assert cr["rate_per_frame"] == pytest.approx(2 / 10)
    assert cr["rate_per_e_per_A2"] == pytest.approx(2 / 20)
    assert cr["per_frame"].set_index("frame")["n_created"].to_dict() == {f: int(f in (3, 4)) for f in range(1, 11)}


# --- evolve, outputs, command ---------------------------------------------------------------


def test_evolve_with_frames_removes_drift_before_diffusion():
    n_frames, shape = 30, (256, 256)
    truth, det = simulate_defects(n_walkers=20, n_switchers=0, n_frames=n_frames, frame_shape=shape, rng=6)
    gen = np.random.default_rng(7)
    steps = np.array([2.0, -1.0]) + gen.normal(0, 0.3, (n_frames, 2))  # steady drift + jitter, px/frame
    steps[0] = 0
    true_drift = np.cumsum(steps, axis=0)
    frames = drifting_movie(true_drift, shape=shape, peak_counts=20.0, rng=8)
    moved = det.assign(row=det["row"] + true_drift[det["frame"], 0], col=det["col"] + true_drift[det["frame"], 1])
    res = evolve(moved, pixel_size_A=PIXEL_SIZE_A, frame_shape=shape, frames=frames, n_boot=50)
    assert np.abs(np.diff(res.drift, axis=0) - steps[1:]).max() < 0.5
    assert res.diffusion["hop_rate_per_frame"] == pytest.approx(0.3, rel=0.2)
    np.testing.assert_allclose(res.tracks[["row", "col"]].sort_values(["row", "col"]).to_numpy(),
                               moved[["row", "col"]].sort_values(["row", "col"]).to_numpy())  # input px kept
    still = evolve(det, pixel_size_A=PIXEL_SIZE_A, frame_shape=shape, n_boot=10)  # the same, never drifted
    assert res.diffusion["hop_rate_per_frame"] == pytest.approx(still.diffusion["hop_rate_per_frame"], abs=0.01)
    raw = evolve(moved, pixel_size_A=PIXEL_SIZE_A, frame_shape=shape, n_boot=10)
    assert raw.diffusion["hop_rate_per_frame"] > 1.4 * res.diffusion["hop_rate_per_frame"]  # drift inflates MSD


@pytest.mark.parametrize("n_rows", [0, 1, 2])
def test_evolve_too_little_data_gives_notes_and_clean_json(tmp_path, n_rows):
    det = pd.DataFrame({"frame": [0, 0][:n_rows], "row": [5.0, 30.0][:n_rows], "col": [5.0, 30.0][:n_rows],
                        "class": ["mo_dopant", "w_vacancy"][:n_rows], "score": [0.9, 0.8][:n_rows]})
    res = evolve(det, pixel_size_A=0.3, frame_shape=(64, 64), n_frames=3)
    summary = res.to_summary()
    json.dumps(summary, allow_nan=False)
    assert summary["diffusion"]["D_A2_per_frame"] is None
    assert any("diffusion" in n for n in summary["notes"]) and any("transitions" in n for n in summary["notes"])
    if n_rows == 0:
        paths = res.write(tmp_path)
        assert json.loads(paths["summary"].read_text())["n_tracks"] == 0
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp files left


def test_write_outputs_and_command(tmp_path):
    truth, det = simulate_defects(n_walkers=6, n_switchers=4, n_frames=12, frame_shape=(192, 192), rng=9)
    run = tmp_path / "run"
    run.mkdir()
    det.to_csv(run / "detections.csv", index=False)
    (run / "summary.json").write_text(json.dumps({"pixel_size_A": PIXEL_SIZE_A, "frame_shape": [192, 192]}))
    assert main([str(run), "--n-boot", "20", "--dose-per-frame", "1000"]) == 0
    out = run / "evolution"  # not the run folder's root
    names = {p.name for p in out.iterdir()}
    assert {"tracks.csv", "transitions.csv", "counts.csv", "msd.csv", "evolution.json", "evolution_msd.png"} <= names
    summary = json.loads((out / "evolution.json").read_text())
    assert summary["n_frames"] == 12 and summary["pixel_size_A"] == PIXEL_SIZE_A
    tracks = pd.read_csv(out / "tracks.csv")
    assert list(tracks.columns[:6]) == ["track", "frame", "row", "col", "class", "score"]
    trans = pd.read_csv(out / "transitions.csv")
    assert trans.groupby("from")["count"].sum().to_dict() == summary["transitions"]["n_transitions"]
    with pytest.raises(SystemExit):
        main([str(run / "detections.csv")])  # a bare CSV needs --pixel-size-A
    with pytest.raises(SystemExit):
        main([str(tmp_path / "missing")])


def test_evolve_uses_given_drift():
    """A static defect seen through a known drift is one immobile track once drift_px is given."""
    import pandas as pd

    from stem2d.evolution import evolve

    drift = np.array([[0.0, 0.0], [1.0, 2.0], [2.0, 4.0], [3.0, 6.0]])
    det = pd.DataFrame({"frame": np.arange(4), "row": 50 + drift[:, 0], "col": 60 + drift[:, 1],
                        "class": "w_vacancy", "score": 0.9})
    res = evolve(det, pixel_size_A=0.3, frame_shape=(128, 128), drift_px=drift, n_boot=10)
    np.testing.assert_allclose(res.tracks["row_corrected"], 50.0)
    np.testing.assert_allclose(res.tracks["col_corrected"], 60.0)
    assert res.tracks["track"].nunique() == 1


def test_streamed_drift_recovers_known_shifts():
    """DriftTracker, fed one frame at a time (as infer streams a movie), finds the shifts."""
    from stem2d.evolution.drift import DriftTracker

    rng = np.random.default_rng(3)
    base = rng.random((80, 80))
    offsets = [(0, 0), (1, 2), (3, 1), (2, -2)]
    movie = np.stack([base[10 + r:60 + r, 10 + c:60 + c] for r, c in offsets])
    tracker = DriftTracker(max_step_px=4.0)
    for frame in movie:
        tracker.add(frame)
    np.testing.assert_allclose(tracker.drift, -np.array(offsets, float), atol=0.1)


def test_streamed_drift_of_large_frames_uses_their_centre():
    """Frames over max_side_px are cut to their centre (bounded memory); the drift is the same."""
    from stem2d.evolution.drift import DriftTracker

    base = np.random.default_rng(4).random((140, 150))
    offsets = [(0, 0), (2, -1), (3, 2)]
    movie = [base[10 + r:130 + r, 10 + c:140 + c] for r, c in offsets]
    full, cropped = DriftTracker(max_side_px=None), DriftTracker(max_side_px=64)
    for frame in movie:
        full.add(frame)
        cropped.add(frame)
    assert cropped._window.shape == (64, 64)
    np.testing.assert_allclose(cropped.drift, -np.array(offsets, float), atol=0.1)
    np.testing.assert_allclose(cropped.drift, full.drift, atol=0.1)
    with pytest.raises(ValueError, match="max_side_px"):
        DriftTracker(max_side_px=4)


# --- class vocabulary: no hard-coded WS2 names ---------------------------------------------------


def _class_set_yaml(name: str):
    import yaml

    from stem2d.classes import ClassSet

    with open(f"conf/classes/{name}.yaml") as f:
        return ClassSet.from_mapping(yaml.safe_load(f))


@pytest.mark.parametrize(("set_name", "material", "expected"), [
    ("default", "WS2", "s_vacancy"), ("mos2", "MoS2", "s_vacancy"), ("seed_six", "WS2", "v_s2"),
    ("sites", "WS2", "chalcogen_single_vacancy"), ("sites", "MoSe2", "chalcogen_single_vacancy"),
    ("sites", "WSSe_janus", "chalcogen_single_vacancy")])
def test_the_hopping_class_comes_from_the_vocabulary(set_name, material, expected):
    from stem2d.classes import hopping_class
    from stem2d.materials import get_material

    assert hopping_class(_class_set_yaml(set_name), get_material(material)) == expected


def test_evolve_in_site_names_measures_the_same_hops_as_in_ws2_names():
    _, det = simulate_defects(n_walkers=10, n_switchers=4, n_frames=20, rng=11)
    ws2 = evolve(det, pixel_size_A=PIXEL_SIZE_A, frame_shape=(256, 256), n_boot=10)
    to_sites = {"s_vacancy": "chalcogen_single_vacancy", "mo_a": "metal_lighter", "mo_b": "antisite"}
    sites = det.assign(**{"class": det["class"].map(to_sites)})
    by_names = evolve(sites, pixel_size_A=PIXEL_SIZE_A, frame_shape=(256, 256), n_boot=10)
    by_kinds = evolve(sites, pixel_size_A=PIXEL_SIZE_A, frame_shape=(256, 256), n_boot=10,
                      classes=_class_set_yaml("sites"))
    assert ws2.diffusion["class"] == "s_vacancy" and ws2.diffusion["n_tracks"] >= 10
    for res in (by_names, by_kinds):
        assert res.diffusion["class"] == res.creation["class"] == "chalcogen_single_vacancy"
        assert res.diffusion["hop_rate_per_frame"] == pytest.approx(ws2.diffusion["hop_rate_per_frame"])
        assert res.diffusion["n_tracks"] == ws2.diffusion["n_tracks"]
    assert "pristine" not in list(by_kinds.counts.columns)  # the ClassSet's pristine class is no defect column


def test_evolve_without_a_vacancy_class_says_so_instead_of_guessing():
    _, det = simulate_defects(n_walkers=0, n_switchers=4, n_frames=6, rng=12)  # only mo_a / mo_b
    res = evolve(det, pixel_size_A=PIXEL_SIZE_A, frame_shape=(256, 256), n_boot=5)
    assert res.diffusion["class"] is None and res.diffusion["hop_rate_per_frame"] is None
    assert "chalcogen vacancies" in res.diffusion["note"] and "chalcogen vacancies" in res.creation["note"]


def test_evolution_command_reads_the_run_classes_with_their_kinds():
    from stem2d.classes import SITE_CLASS_KINDS, ClassSet
    from stem2d.evolution.__main__ import _class_set

    meta = {"class_names": list(SITE_CLASS_KINDS), "settings": {"classes": {k: list(v) for k, v in SITE_CLASS_KINDS.items()}}}
    assert _class_set(meta) == ClassSet.from_mapping(SITE_CLASS_KINDS)
    assert _class_set({"class_names": ["pristine", "s_vacancy"]}) == ["s_vacancy"]
