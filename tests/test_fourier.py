"""Fourier labels: the original high-pass method and the lattice-periodic residual."""

import numpy as np
import pandas as pd
import pytest

from stem2d.classes import parse_kind
from stem2d.lattice import (
    LABELERS,
    ideal_lattice,
    lattice_points,
    lattice_residual,
    maksov_mask,
    maksov_points,
    mask_to_points,
    suppress_close,
)
from stem2d.materials import get_material
from stem2d.predict.scoring import score_detections
from stem2d.sim.imaging import Acquisition, acquire, render_haadf
from stem2d.sim.lattice import apply_defect, mx2_columns, nearest_column

WS2 = get_material("WS2")
PX = 0.3


def _frame(kinds_at, *, shape=(192, 192), rotation=17.0, acq=None, rng=0):
    """Clean (or acquired) frame at 0.3 A/px with defects ``[(kind, (row_px, col_px)), ...]``.

    Returns the image and the true sites (row, col) in px.
    """
    cols = mx2_columns(WS2, extent_A=(shape[0] * PX, shape[1] * PX), rotation_deg=rotation)
    sites = []
    for kind, (r, c) in kinds_at:
        k = parse_kind(kind, WS2)
        idx = nearest_column(cols, (r * PX, c * PX), k.site)
        cols = apply_defect(cols, k, idx)
        sites.append(cols.pos_A[idx] / PX)
    img = render_haadf(cols, shape=shape, pixel_size_A=PX)
    if acq is not None:
        img = acquire(img, pixel_size_A=PX, acq=acq, rng=rng)
    return img, np.array(sites).reshape(-1, 2)


def _near(points, site, radius_px):
    return len(points) > 0 and np.min(np.hypot(*(np.asarray(points) - site).T)) <= radius_px


@pytest.mark.parametrize("kind", ["V_W", "Mo_W", "V_S2", "W_S2"])
def test_lattice_flags_planted_defect_only(kind):
    img, sites = _frame([(kind, (96, 96))])
    points = lattice_points(img, material=WS2)
    assert len(points) == 1
    assert _near(points, sites[0], 1.0 / PX)  # within 1 A


def test_lattice_ignores_pristine_noise_free_and_sheared_jittered_lattice():
    pristine, _ = _frame([])
    assert len(lattice_points(pristine, material=WS2)) == 0
    assert np.abs(ideal_lattice(pristine, material=WS2) - (pristine - pristine.mean())).max() < 5e-3  # of a W peak of 1
    # scan-line jitter, drift shear and contamination at a high dose (W peak ~4500 counts)
    cols = mx2_columns(WS2, extent_A=(192 * PX, 192 * PX), rotation_deg=40.0)
    sheared = render_haadf(cols, shape=(192, 192), pixel_size_A=PX, drift_px_per_line=(0.01, 0.02))
    acq = Acquisition(dose_e_per_A2=1e6, jitter_px=0.3, background_fraction=0.2)
    for seed in range(3):  # threshold 5: 4-sigma noise excursions happen in ~1 of 3 such frames
        noisy = acquire(sheared, pixel_size_A=PX, acq=acq, rng=seed)
        assert len(lattice_points(noisy, material=WS2, threshold=5.0)) == 0


@pytest.mark.parametrize("kind", ["V_W", "Mo_W"])
def test_maksov_flags_planted_defect(kind):
    img, sites = _frame([(kind, (96, 96))])
    mask = maksov_mask(img)
    rr, cc = np.indices(img.shape)
    dist = np.hypot(rr - sites[0][0], cc - sites[0][1])
    assert mask[dist <= 1.5 / PX].any()
    # away from the defect and the frame edges (FFT wrap-around), the lattice is not flagged
    interior = (dist > 4.0 / PX) & (rr > 24) & (rr < 168) & (cc > 24) & (cc < 168)
    assert mask[interior].mean() < 0.02
    assert _near(maksov_points(img, material=WS2), sites[0], 1.5 / PX)


def _score(points, sites):
    pred = pd.DataFrame({"frame": 0, "row": points[:, 0], "col": points[:, 1], "class": "d"})
    truth = pd.DataFrame({"frame": 0, "row": sites[:, 0], "col": sites[:, 1], "class": "d"})
    return score_detections(pred, truth, max_dist_px=1.5 / PX)["detection"]


def test_lattice_beats_original_on_noisy_frame():
    rng = np.random.default_rng(3)
    kinds = ["Mo_W", "V_W", "V_S2", "W_S2", "Mo_W", "V_S2"]
    spots = [(kinds[i % len(kinds)], tuple(rng.uniform(20, 236, 2))) for i in range(14)]
    img, sites = _frame(spots, shape=(256, 256), acq=Acquisition(dose_e_per_A2=5e4), rng=4)
    sites = np.unique(np.round(sites, 3), axis=0)
    lattice = _score(lattice_points(img, material=WS2), sites)
    original = _score(maksov_points(img, material=WS2), sites)
    assert lattice["recall"] >= 0.85 and lattice["precision"] >= 0.85, lattice
    assert lattice["f1"] > original["f1"], (lattice, original)


def test_residual_is_robust_z_score_on_noise():
    img, _ = _frame([], shape=(128, 160), acq=Acquisition(dose_e_per_A2=5e4, jitter_px=0.0), rng=5)
    z = lattice_residual(img, material=WS2)
    assert z.shape == img.shape
    assert 0.5 < np.median(np.abs(z)) < 0.9  # 0.674 for unit Gaussian noise


def test_mask_to_points_centroids_and_area_filter():
    mask = np.zeros((40, 40), bool)
    mask[5:8, 5:8] = True                 # area 9, centre (6, 6)
    mask[20, 20] = True                   # area 1: dropped
    mask[30:34, 10:12] = True             # area 8, centre (31.5, 10.5)
    pts = mask_to_points(mask, min_area_px=4, max_area_px=9)
    assert np.allclose(pts, [[6, 6], [31.5, 10.5]])
    assert len(mask_to_points(mask, min_area_px=9, max_area_px=9)) == 1
    assert mask_to_points(np.zeros((5, 5), bool)).shape == (0, 2)
    with pytest.raises(ValueError, match="min_area_px"):
        mask_to_points(mask, min_area_px=0, max_area_px=3)


def test_suppress_close_keeps_best_of_pairs():
    pts = np.array([[0, 0], [0, 3], [0, 10]], float)
    assert suppress_close(pts, np.array([0.5, 0.9, 0.1]), min_dist_px=4).tolist() == [1, 2]


def test_suppress_close_is_the_greedy_rule():
    """The KD-tree version keeps what the plain greedy loop keeps (highest score first, a point
    dropped when a kept one is closer than min_dist_px), with ties in score and in distance."""
    def greedy(points, scores, d):
        kept = []
        for i in np.argsort(-scores, kind="stable"):
            if all(np.hypot(*(points[k] - points[i])) >= d for k in kept):
                kept.append(int(i))
        return sorted(kept)

    rng = np.random.default_rng(3)
    for trial in range(60):
        n = int(rng.integers(0, 80))
        pts = rng.uniform(0, rng.uniform(5, 60), (n, 2))
        if trial % 3 == 0:
            pts = np.round(pts)  # distances exactly at the threshold
        scores = rng.random(n) if trial % 2 else rng.integers(0, 3, n).astype(float)  # equal scores
        d = float(rng.choice([0.0, 1.0, 3.0, 5.0]))
        assert suppress_close(pts, scores, min_dist_px=d).tolist() == greedy(pts, scores, d)


def test_bad_input_names_problem():
    with pytest.raises(ValueError, match="2D"):
        maksov_mask(np.zeros(10))
    with pytest.raises(ValueError, match="low"):
        maksov_mask(np.zeros((32, 32)), low=0.8, high=0.2)
    with pytest.raises(ValueError, match="lattice"):
        lattice_residual(np.random.default_rng(0).normal(size=(64, 64)), material=WS2)
    assert set(LABELERS) == {"fourier", "lattice"}


# ---------------------------------------------------------------- fast paths vs plain references

def _ref_fit_lattice(target, g, jitter_iterations):
    """The lattice fit in plain complex arithmetic (the original implementation)."""
    rows, cols = np.arange(target.shape[0]), np.arange(target.shape[1])
    pc = np.exp(2j * np.pi * np.outer(g[:, 1], cols))
    shift, amp = np.zeros(len(rows)), np.zeros(len(g), dtype=complex)

    def synth(pr, a):
        return 2.0 * ((pr * a[:, None]).T @ pc).real

    for step in range(jitter_iterations + 1):
        pr = np.exp(2j * np.pi * (np.outer(g[:, 0], rows) - np.outer(g[:, 1], shift)))
        for _ in range(3 if step == 0 else 1):
            res = target - synth(pr, amp)
            amp = amp + np.einsum("gw,gw->g", pr.conj() @ res, pc.conj()) / res.size
        if step == jitter_iterations:
            break
        slope = synth(pr, amp * 2j * np.pi * g[:, 1])
        res = target - synth(pr, amp)
        shift -= (res * slope).sum(axis=1) / np.maximum((slope**2).sum(axis=1), 1e-12)
        shift -= shift.mean()
    return synth(pr, amp)


def test_lattice_fit_matches_complex_reference():
    from stem2d.lattice.bragg import _fit_lattice

    img, _ = _frame([("V_W", (40, 50))], shape=(96, 112), acq=Acquisition(dose_e_per_A2=5e4, jitter_px=0.3), rng=1)
    rng = np.random.default_rng(2)
    g = rng.uniform(-0.4, 0.4, size=(12, 2))
    target = img - img.mean()
    fast = _fit_lattice(target, g, jitter_iterations=2)
    assert np.allclose(fast, _ref_fit_lattice(target, g, 2), rtol=0, atol=1e-9 * np.abs(target).max())


def _ref_local_linear(values, weights, sigma):
    """Weighted local plane fit with 9 full 2D Gaussian filters and a batched linear solve."""
    from scipy import ndimage

    rows, cols = values.shape
    y = ((np.arange(rows) - rows / 2) / sigma)[:, None] * np.ones((1, cols))
    x = ((np.arange(cols) - cols / 2) / sigma)[None, :] * np.ones((rows, 1))

    def g(a):
        return ndimage.gaussian_filter(a, sigma, mode="constant")

    w, wv = weights, weights * values
    s1, sx, sy, sxx, sxy, syy = g(w), g(w * x), g(w * y), g(w * x * x), g(w * x * y), g(w * y * y)
    f, fx, fy = g(wv), g(wv * x), g(wv * y)
    cx, cy = sx - x * s1, sy - y * s1
    cxx, cyy = sxx - 2 * x * sx + x * x * s1, syy - 2 * y * sy + y * y * s1
    cxy = sxy - x * sy - y * sx + x * y * s1
    ridge = 1e-6 * s1.max()
    m = np.stack([np.stack([s1 + ridge, cx, cy], -1), np.stack([cx, cxx + ridge, cxy], -1),
                  np.stack([cy, cxy, cyy + ridge], -1)], -2)
    return np.linalg.solve(m, np.stack([f, fx - x * f, fy - y * f], -1)[..., None])[..., 0, 0]


def test_background_helpers_match_plain_references():
    from scipy import ndimage

    from stem2d.lattice import background as bg

    rng = np.random.default_rng(0)
    values = rng.normal(size=(37, 45)) + np.linspace(0, 3, 45)
    weights = (rng.uniform(size=values.shape) > 0.2).astype(float)
    assert np.allclose(bg._local_linear(values, weights, 3.5), _ref_local_linear(values, weights, 3.5), atol=1e-10)
    # bilinear interpolation == map_coordinates(order=1, mode="nearest"), also beyond the grid
    r, c = np.linspace(-1.3, 38.2, 50), np.linspace(-0.4, 46.7, 61)
    rr, cc = np.meshgrid(r, c, indexing="ij")
    ref = ndimage.map_coordinates(values, [rr, cc], order=1, mode="nearest")
    assert np.allclose(bg._interp_linear(values, r, c), ref, atol=1e-12)
    # block sums, and the all-ones shortcut, == zero-pad + reshape
    big = rng.normal(size=(50, 47))
    padded = np.pad(big, ((0, 1), (0, 1)))
    assert np.allclose(bg._block_sum(big, 3), padded.reshape(17, 3, 16, 3).sum(axis=(1, 3)))
    assert np.array_equal(bg._coarse_local_linear(big, None, 13.0),
                          bg._coarse_local_linear(big, np.ones_like(big), 13.0))


def test_noise_model_matches_masked_bins_reference():
    from stem2d.lattice.background import _NOISE_BINS, noise_model

    rng = np.random.default_rng(1)
    intensity = np.round(rng.gamma(2.0, 50.0, size=(64, 80)), 0)  # ties at the bin edges
    residual = rng.normal(size=intensity.shape) * np.sqrt(1 + 0.5 * intensity)
    edges = np.quantile(intensity, np.linspace(0, 1, _NOISE_BINS + 1))
    which = np.clip(np.searchsorted(edges, intensity, side="right") - 1, 0, _NOISE_BINS - 1)
    centres, variances = [], []
    for b in range(_NOISE_BINS):
        r = residual[which == b]
        if r.size >= 50:
            centres.append(intensity[which == b].mean())
            variances.append((1.4826 * np.median(np.abs(r - np.median(r)))) ** 2)
    slope, offset = np.polyfit(centres, variances, 1)
    ref = np.sqrt(np.maximum(max(offset, 0.0) + max(slope, 0.0) * intensity, 0.5**2))
    assert np.allclose(noise_model(residual, intensity, floor=0.5), ref, rtol=1e-12)


def test_components_and_maxima_match_ndimage():
    from scipy import ndimage

    from stem2d.lattice.points import components, label_maxima

    rng = np.random.default_rng(4)
    z = ndimage.gaussian_filter(rng.normal(size=(60, 70)), 1.5)
    z = np.abs(z / z.std())
    mask = z > 1.5
    labels, keep, points = components(mask, min_area_px=3, max_area_px=40, weights=z)
    ref_labels, n = ndimage.label(mask)
    area = ndimage.sum_labels(mask, ref_labels, np.arange(1, n + 1))
    ref_keep = np.arange(1, n + 1)[(area >= 3) & (area <= 40)]
    assert 0 < len(keep) < n and np.array_equal(labels, ref_labels) and np.array_equal(keep, ref_keep)
    ref_points = np.array(ndimage.center_of_mass(np.where(mask, z, 0.0), ref_labels, ref_keep))
    assert np.array_equal(points, ref_points)
    assert np.array_equal(label_maxima(z, labels, keep), ndimage.maximum(z, labels, keep))


def test_single_thread_blas_restores_thread_count():
    from threadpoolctl import threadpool_info, threadpool_limits

    from stem2d.lattice._blas import single_thread_blas

    def blas_threads():
        return [d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"]

    if not blas_threads():
        pytest.skip("no BLAS library loaded")
    with threadpool_limits(limits=2, user_api="blas"):
        with single_thread_blas():
            assert set(blas_threads()) == {1}
        assert set(blas_threads()) == {2}
