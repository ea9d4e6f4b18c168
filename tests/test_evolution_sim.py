"""End to end on a simulated movie (stem2d.sim.movie): drift from the rendered frames, tracks and
switching probabilities from the truth defects turned into noisy detections."""

from __future__ import annotations

import numpy as np
import pytest

import stem2d.sim.movie as movie_mod
from stem2d.evolution import analysis, evolve
from stem2d.evolution.tracking import link_recovery


@pytest.fixture(scope="module")
def movie():
    cfg = movie_mod.MovieConfig(
        n_frames=30, frame_shape=(224, 224), pixel_size_A=0.25, dose_e_per_A2=1e4,
        s_vacancy_hop_prob=0.3, s_vacancy_sticky_factor=1.0, s_vacancy_density_per_nm2=0.3,
        s_vacancy_creation_per_nm2_frame=0.002, mo_density_per_nm2=0.5,
        mo_switch_prob_ab=0.2, mo_switch_prob_ba=0.3, drift_speed_px_per_frame=1.5,
    )
    return movie_mod.simulate_movie(cfg, rng=0)


def test_evolve_on_simulated_movie(movie):
    truth = movie.truth.copy()
    mo = truth["class"] == "mo_dopant"
    truth.loc[mo, "class"] = np.where(truth.loc[mo, "config"] == "B", "mo_b", "mo_a")  # the two configurations
    gen = np.random.default_rng(1)
    det = truth[["frame", "row", "col", "class"]].assign(score=0.9)
    det[["row", "col"]] += gen.normal(0, 0.3, (len(det), 2))
    det = det[gen.random(len(det)) >= 0.03]
    frames = np.stack(list(movie.frames))
    res = evolve(det, pixel_size_A=movie.pixel_size_A, frame_shape=frames.shape[1:], frames=frames, n_boot=50)

    steps_err = np.abs(np.diff(res.drift, axis=0) - np.diff(movie.drift_px, axis=0))
    assert steps_err.max() < 0.5  # px per frame, on sheared, noisy, contaminated frames
    assert link_recovery(res.tracks, truth, max_dist_px=2.0) >= 0.95

    p = res.transitions["probabilities"]
    truth_p = analysis.transitions(truth)["probabilities"]
    for a, b in (("mo_a", "mo_b"), ("mo_b", "mo_a")):
        assert p.loc[a, b] == pytest.approx(truth_p.loc[a, b], abs=0.02)  # the pipeline loses nothing
    assert p.loc["mo_a", "mo_b"] == pytest.approx(0.2, abs=0.05)
    assert p.loc["mo_b", "mo_a"] == pytest.approx(0.3, abs=0.05)

    d = movie.drift_px
    still = truth.assign(row=truth["row"] - d[truth["frame"], 0], col=truth["col"] - d[truth["frame"], 1])
    truth_k = analysis.diffusion(still, pixel_size_A=movie.pixel_size_A, n_boot=2)["hop_rate_per_frame"]
    assert res.diffusion["hop_rate_per_frame"] == pytest.approx(truth_k, rel=0.15)
