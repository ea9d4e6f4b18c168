"""Augmentation (stem2d.sim.augment): exact geometry, defects stay where `pos` says, noise physics."""

import numpy as np
import pytest
from scipy import ndimage

from stem2d.materials import get_material
from stem2d.sim.augment import (
    NOISE_MODES,
    AugmentParams,
    Geometry,
    augment_tile,
    random_geometry,
    transform_points,
    warp_tile,
)
from stem2d.sim.imaging import Acquisition, scan_jitter, smooth_field
from stem2d.sim.imaging import acquire as acquire_tile
from stem2d.sim.tiles import simulate_tile

WS2 = get_material("WS2")
PARAMS = AugmentParams()
BASE = PARAMS.min_base_size_px()


def _coordinate_fields(size: int) -> tuple[np.ndarray, np.ndarray]:
    return np.indices((size, size), dtype=np.float64)


def _extreme_geometry(params: AugmentParams, angle_deg: float = 45.0) -> Geometry:
    """Largest footprint on the base: min zoom, max shear, shift towards a corner."""
    t = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    shear = np.array([[1.0, params.max_shear], [0.0, 1.0]])
    shift = params.max_shift_px * np.array([1.0, 1.0]) / np.sqrt(2.0)
    return Geometry(params.zoom_range[0] * shear @ rot, shift)


@pytest.mark.parametrize("seed", range(6))
def test_points_follow_the_warp_exactly(seed):
    """Warp the base's own (row, col) coordinate fields: at the transformed point of any base
    point, the warped fields read back that base point (linear interpolation is exact here)."""
    rng = np.random.default_rng(seed)
    geometry = random_geometry(rng, params=AugmentParams(flip_probability=0.5, max_shear=0.1))
    rows, cols = _coordinate_fields(BASE)
    warped = [warp_tile(f, geometry, tile_size_px=64) for f in (rows, cols)]
    points = BASE / 2 + rng.uniform(-20, 20, size=(50, 2))
    q = transform_points(points, geometry, base_size_px=BASE, tile_size_px=64)
    inside = np.all((q >= 0) & (q <= 63), axis=1)
    assert inside.sum() > 20
    back = np.stack([ndimage.map_coordinates(w, q[inside].T, order=1) for w in warped], axis=1)
    np.testing.assert_allclose(back, points[inside], atol=1e-6)


def test_flip_and_rotation_directions():
    """A 90 deg rotation and a mirror move a point where the matrix says, about the centres."""
    rot90 = Geometry(np.array([[0.0, -1.0], [1.0, 0.0]]), np.zeros(2))
    q = transform_points(np.array([50.0, 60.0]), rot90, base_size_px=101, tile_size_px=65)
    np.testing.assert_allclose(q, [32.0 - 10.0, 32.0 + 0.0])
    mirror = Geometry(np.diag([1.0, -1.0]), np.array([0.5, 0.0]))
    q = transform_points(np.array([[50.0, 53.0], [np.nan, np.nan]]), mirror, base_size_px=101,
                         tile_size_px=65)
    np.testing.assert_allclose(q[0], [32.5, 29.0])
    assert np.isnan(q[1]).all()


def test_min_base_size_leaves_no_empty_corner():
    """At the worst geometry, every tile pixel samples inside a base of min_base_size_px (no
    clamping to the edge), and a clearly smaller base would not suffice."""
    geometry = _extreme_geometry(PARAMS)
    for size, should_fit in ((BASE, True), (BASE - 8, False)):
        rows, cols = _coordinate_fields(size)
        warped = np.stack([warp_tile(f, geometry, tile_size_px=64) for f in (rows, cols)], axis=-1)
        tile_px = np.stack(np.indices((64, 64)), axis=-1).astype(float)
        inv = np.linalg.inv(geometry.matrix)
        expected = (tile_px - 31.5 - geometry.shift_px) @ inv.T + (size - 1) / 2
        fits = np.allclose(warped, expected, atol=1e-6)
        assert fits == should_fit, size


def _subpixel_extremum(tile: np.ndarray, pos: np.ndarray, *, find_max: bool) -> np.ndarray:
    """Sub-pixel extremum of the cubic-spline interpolated tile within 2 px of ``pos``."""
    grid = np.mgrid[-2:2.001:0.02, -2:2.001:0.02].reshape(2, -1) + pos[:, None]
    vals = ndimage.map_coordinates(tile, grid, order=3)
    k = np.argmax(vals) if find_max else np.argmin(vals)
    return grid[:, k]


@pytest.mark.parametrize("kind, find_max", [("V_W", False), ("Mo_W", True), ("W_S2", True)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_defect_stays_at_pos_and_keeps_its_signature(kind, find_max, seed):
    """After augmentation the defect's extremum is where `pos` says, and it still looks like the
    same kind (dark vacancy, ~(42/74)^n Mo, bright W): the label stays true."""
    base, truth = simulate_tile(kind, material=WS2, rng=seed, size_px=BASE, max_offset_px=2.0)
    aug = augment_tile(base, np.array([truth.row, truth.col]), params=PARAMS, rng=100 + seed)
    found = _subpixel_extremum(aug.clean, aug.pos, find_max=find_max)
    assert np.hypot(*(found - aug.pos)) < 0.25
    at_site = ndimage.map_coordinates(aug.clean, aug.pos[:, None], order=1)[0]
    w_peak = aug.clean.max()
    ratio = {"V_W": (0.0, 0.2), "Mo_W": (0.25, 0.5), "W_S2": (0.8, 1.2)}[kind]
    assert ratio[0] <= at_site / w_peak <= ratio[1]
    assert np.hypot(*(aug.pos - 31.5)) < 2.0 * 1.05 * 1.06 + PARAMS.max_shift_px


def test_pristine_pos_is_nan():
    base, truth = simulate_tile(None, material=WS2, rng=0, size_px=BASE)
    aug = augment_tile(base, np.array([truth.row, truth.col]), rng=0)
    assert np.isnan(aug.pos).all() and np.isfinite(aug.image).all()


def test_same_rng_same_sample_and_modes():
    base, truth = simulate_tile("V_S", material=WS2, rng=3, size_px=BASE)
    pos = np.array([truth.row, truth.col])
    a = augment_tile(base, pos, rng=[5, 1])
    b = augment_tile(base, pos, rng=[5, 1])
    c = augment_tile(base, pos, rng=[5, 2])
    np.testing.assert_array_equal(a.image, b.image)
    assert a.noise == b.noise
    assert not np.array_equal(a.image, c.image)
    for k, mode in enumerate(NOISE_MODES):
        s = augment_tile(base, pos, rng=k, noise=k)
        assert s.noise == k and s.image.shape == (64, 64) and np.isfinite(s.image).all()
        if mode == "dose":
            assert np.abs(s.image - np.round(s.image)).max() > 0  # detector noise on counts
        else:
            assert s.image.min() >= 0 and s.image.max() <= 1


def test_acquire_tile_counts_follow_the_dose():
    """Without background/jitter/read-out noise, mean counts = clean * peak counts (Poisson)."""
    clean, _ = simulate_tile(None, material=WS2, rng=0)
    for dose in PARAMS.dose_range_e_per_A2:
        acq = Acquisition(dose_e_per_A2=dose, detector_sigma_counts=0.0, jitter_px=0.0,
                          background_fraction=0.0)
        counts = np.stack([acquire_tile(clean, pixel_size_A=0.3, acq=acq, rng=i) for i in range(20)])
        peak = acq.peak_counts(0.3)
        assert 15 <= peak <= 500
        assert counts.mean() == pytest.approx(clean.mean() * peak, rel=0.03)
        assert np.array_equal(counts, np.round(counts))


def test_jitter_and_background():
    img = np.tile(np.arange(32.0), (16, 1))
    np.testing.assert_allclose(scan_jitter(img, jitter_px=0.0, correlation=0.5, rng=0), img)
    shifted = scan_jitter(img, jitter_px=0.5, correlation=0.5, rng=0)
    row_shift = (img - shifted)[:, 5:-5].mean(axis=1)  # a ramp shifted by s reads c - s
    assert np.allclose((img - shifted)[:, 5:-5], row_shift[:, None], atol=1e-9)
    assert 0.1 < row_shift.std() < 1.5
    field = smooth_field((64, 64), length_px=60.0, rng=0)
    assert field.min() == 0 and field.max() == pytest.approx(1.0)
    assert np.abs(np.diff(field, axis=0)).max() < 0.1  # smooth on the pixel scale


@pytest.mark.parametrize("key, value", [
    ("dose_range_e_per_A2", (-1.0, 10.0)), ("pixel_size_A", 0.0), ("noise_modes", ("blur",)),
    ("noise_probabilities", (0.5, 0.6)), ("zoom_range", (1.1, 0.9)), ("max_shear", -0.1),
])
def test_bad_params_name_the_key(key, value):
    with pytest.raises(ValueError, match=key):
        AugmentParams(**{key: value})


def test_augment_params_from_config_coerces_like_a_hand_written_call():
    """DataModules build their AugmentParams from their hparams (YAML/OmegaConf values)."""
    from omegaconf import OmegaConf

    from stem2d.sim.augment import AugmentParams

    config = OmegaConf.create({"tile_size_px": 64, "pixel_size_A": 0.3, "zoom_range": [1, 1.1], "max_shear": 0,
                               "noise_modes": ["dose"], "noise_probabilities": None, "batch_size": 8})
    params = AugmentParams.from_config(config)
    assert params == AugmentParams(zoom_range=(1.0, 1.1), max_shear=0.0, noise_modes=("dose",))
    assert isinstance(params.max_shear, float) and params.zoom_range == (1.0, 1.1)
    with pytest.raises(ValueError, match="noise_modes"):
        AugmentParams.from_config({"noise_modes": ["sharpen"]})
