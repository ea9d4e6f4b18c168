"""Lattice-based pixel size (stem2d.lattice.scale) on simulated and real frames, and resampling."""

import logging
from pathlib import Path

import numpy as np
import pytest

from stem2d.io.readers import read_movie
from stem2d.lattice.scale import (
    measure_lattice_period,
    measure_pixel_size,
    resample,
    resample_factors,
    to_input_coords,
    to_resampled_coords,
)
from stem2d.materials import get_material
from stem2d.sim.imaging import Acquisition, acquire, render_haadf
from stem2d.sim.lattice import mx2_columns

WS2 = get_material("WS2")
MOS2 = get_material("MoS2")
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "mos2_scilink"  # shared/ beside the checkout
#: Lattice-based pixel sizes (angstrom) given in shared/data/real/README.md (beside the checkout).
REAL_PIXEL_SIZE_A = {
    "MoS2_stem_Exp-000-2": 0.171,
    "MoS2_stem_Exp-001-5": 0.123,
    "MoS2_stem_Exp-002-5": 0.128,
    "MoS2_stem_legacy_Vdoped": 0.171,
}


def _frame(pixel_size_A, rotation_deg, *, rng, shape=(512, 512), dose=2e4, material=WS2):
    """A noisy simulated HAADF frame (shot noise, scan-line jitter, contamination background)."""
    rng = np.random.default_rng(rng)
    extent = (shape[0] * pixel_size_A, shape[1] * pixel_size_A)
    cols = mx2_columns(material, extent_A=extent, rotation_deg=rotation_deg,
                       origin_A=tuple(rng.uniform(0, material.a_A, 2)))
    clean = render_haadf(cols, shape=shape, pixel_size_A=pixel_size_A)
    return acquire(clean, pixel_size_A=pixel_size_A, acq=Acquisition(dose_e_per_A2=dose), rng=rng)


def _angle_diff(a, b, period=60.0):
    return abs((a - b + period / 2) % period - period / 2)


def test_pixel_size_within_2_percent_over_range_and_rotations():
    rng = np.random.default_rng(2024)
    for pixel_size_A in np.linspace(0.1, 0.45, 6):
        rotation = rng.uniform(0, 360)
        frame = _frame(pixel_size_A, rotation, rng=rng)
        result = measure_pixel_size(frame, WS2)
        assert result.pixel_size_A == pytest.approx(pixel_size_A, rel=0.02), rotation
        assert result.period_px == pytest.approx(WS2.d100_A / pixel_size_A, rel=0.02)
        # simulator lattice vector a1 at `rotation` from +col towards +row; {100} normals at +-30
        assert _angle_diff(result.angle_deg, rotation + 30) < 1.0
        assert 0 <= result.angle_deg < 60
        assert result.distortion < 0.02
        assert result.metadata_pixel_size_A is None and result.disagreement is None


@pytest.mark.parametrize("pixel_size_A", [0.08, 0.5])
def test_range_ends_noise_free_and_noisy(pixel_size_A):
    """At 0.08 A/px the ring is near the low-frequency cut; at 0.5 A/px higher orders alias. A
    noise-free image has no noise floor, so weak aliased peaks have a huge ring contrast."""
    extent = (512 * pixel_size_A,) * 2
    clean = render_haadf(mx2_columns(WS2, extent_A=extent, rotation_deg=12.0), shape=(512, 512),
                         pixel_size_A=pixel_size_A)
    for frame in (clean, _frame(pixel_size_A, 12.0, rng=5)):
        assert measure_pixel_size(frame, WS2).pixel_size_A == pytest.approx(pixel_size_A, rel=0.02)


def test_non_square_frame_and_period_scales_with_sampling():
    frame = _frame(0.2, 40.0, rng=1, shape=(384, 512))
    period, angle = measure_lattice_period(frame)
    assert period == pytest.approx(WS2.d100_A / 0.2, rel=0.02)
    assert _angle_diff(angle, 70.0) < 1.0


def test_metadata_disagreement_warns(caplog):
    frame = _frame(0.25, 5.0, rng=3)
    with caplog.at_level(logging.WARNING, logger="stem2d.lattice.scale"):
        close = measure_pixel_size(frame, WS2, metadata_pixel_size_A=0.25 * 1.02)
    assert not caplog.records
    assert close.disagreement == pytest.approx(0.02, abs=0.01)
    with caplog.at_level(logging.WARNING, logger="stem2d.lattice.scale"):
        far = measure_pixel_size(frame, WS2, metadata_pixel_size_A=0.25 * 0.8)
    assert far.disagreement == pytest.approx(-0.2, abs=0.01)
    assert far.pixel_size_A == pytest.approx(0.25, rel=0.02)  # the lattice wins
    assert any("disagrees" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("kind", ["gaussian", "poisson", "brownian", "constant"])
def test_no_lattice_raises(kind):
    rng = np.random.default_rng(0)
    frame = {
        "gaussian": lambda: rng.normal(size=(256, 256)),
        "poisson": lambda: rng.poisson(2.0, size=(256, 256)).astype(float),
        "brownian": lambda: np.cumsum(rng.normal(size=(256, 256)), axis=0),
        "constant": lambda: np.full((256, 256), 7.0),
    }[kind]()
    with pytest.raises(ValueError, match="no (hexagonal )?lattice"):
        measure_pixel_size(frame, WS2)


def test_bad_arguments():
    frame = _frame(0.3, 0.0, rng=0, shape=(128, 128))
    with pytest.raises(ValueError, match="2D"):
        measure_lattice_period(frame[None])
    with pytest.raises(ValueError, match="NaN"):
        measure_lattice_period(np.where(np.eye(128, dtype=bool), np.nan, frame))
    with pytest.raises(ValueError, match="min_period_px"):
        measure_lattice_period(frame, min_period_px=10.0, max_period_px=5.0)
    with pytest.raises(ValueError, match="pixel_size_range_A"):
        measure_pixel_size(frame, WS2, pixel_size_range_A=(0.5, 0.1))
    with pytest.raises(ValueError, match="from_pixel_size_A"):
        resample(frame, from_pixel_size_A=-0.1)


@pytest.mark.skipif(not REAL.is_dir(), reason="real MoS2 frames not present")
def test_real_mos2_frames_match_readme_lattice_values(caplog):
    for name, expected in REAL_PIXEL_SIZE_A.items():
        movie = read_movie(REAL / f"{name}.npy")
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="stem2d.lattice.scale"):
            result = measure_pixel_size(movie.frames[0], MOS2,
                                        metadata_pixel_size_A=movie.pixel_size_A)
        assert result.pixel_size_A == pytest.approx(expected, rel=0.05), name
        warned = any("disagrees" in r.getMessage() for r in caplog.records)
        assert warned == (abs(result.disagreement) > 0.05), name
    # the json's 9 nm field of view of Exp-002-5 is ~35 % off its lattice
    exp2 = read_movie(REAL / "MoS2_stem_Exp-002-5.npy")
    assert measure_pixel_size(exp2.frames[0], MOS2,
                              metadata_pixel_size_A=exp2.pixel_size_A).disagreement > 0.2


@pytest.mark.parametrize("from_A, to_A", [(0.12, 0.3), (0.45, 0.3), (0.3, 0.3)])
def test_resample_maps_positions_exactly(from_A, to_A):
    """A Gaussian blob at input p lands at to_resampled_coords(p); mapping back is exact."""
    shape = (150, 170)
    centres = np.array([[30.3, 40.8], [110.6, 130.2], [40.0, 140.5]])  # well apart
    sigma_A = 0.6
    rr, cc = np.mgrid[0:shape[0], 0:shape[1]]
    img = sum(np.exp(-((rr - r) ** 2 + (cc - c) ** 2) * from_A**2 / (2 * sigma_A**2))
              for r, c in centres)
    out = resample(img, from_pixel_size_A=from_A, to_pixel_size_A=to_A)
    factors = resample_factors(shape, from_pixel_size_A=from_A, to_pixel_size_A=to_A)
    assert out.dtype == np.float32
    assert out.shape == (round(shape[0] * from_A / to_A), round(shape[1] * from_A / to_A))
    assert out.shape == (round(shape[0] * factors[0]), round(shape[1] * factors[1]))
    mapped = to_resampled_coords(centres, factors)
    orr, occ = np.mgrid[0:out.shape[0], 0:out.shape[1]]
    radius = 3 * sigma_A / to_A
    for (r, c) in mapped:
        near = np.hypot(orr - r, occ - c) < radius
        w = out * near
        centroid = np.array([(w * orr).sum(), (w * occ).sum()]) / w.sum()
        np.testing.assert_allclose(centroid, [r, c], atol=0.05)
    np.testing.assert_allclose(to_input_coords(mapped, factors), centres, atol=1e-12)


def test_resample_to_canonical_then_measure():
    """A 0.15 A/px frame resampled to 0.3 A/px measures 0.3 A/px (realised sampling)."""
    frame = _frame(0.15, 23.0, rng=8)
    out = resample(frame, from_pixel_size_A=0.15)
    assert out.shape == (256, 256)
    assert measure_pixel_size(out, WS2).pixel_size_A == pytest.approx(0.3, rel=0.01)


def test_downsampling_is_anti_aliased():
    """A pattern above the new Nyquist frequency must not survive as a strong alias."""
    cc = np.arange(200)
    stripes = np.tile(np.cos(2 * np.pi * cc * 0.4), (200, 1))  # 0.4 cycles/px
    out = resample(stripes, from_pixel_size_A=0.1, to_pixel_size_A=0.3)
    assert np.abs(out[10:-10, 10:-10]).max() < 0.1


@pytest.mark.parametrize("shape, out, order", [((96, 80), (61, 113), 3), ((64, 64), (40, 40), 1), ((50, 70), (90, 70), 1)])
def test_resize_image_equals_skimage(shape, out, order):
    """The separable fast resize matches skimage.transform.resize (reflect, anti-aliasing) to float32 rounding."""
    from skimage.transform import resize

    from stem2d.lattice.scale import resize_image

    img = np.random.default_rng(3).random(shape) * 100
    aa = out[0] < shape[0] or out[1] < shape[1]
    ref = resize(img, out, order=order, mode="reflect", preserve_range=True, anti_aliasing=aa)
    got = resize_image(img, out, order=order, anti_aliasing=aa)
    assert got.shape == out and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=1e-4)
