"""CAM computation and sub-pixel peak localisation."""

import numpy as np
import pytest
import torch

from stem2d.models.cam import cam_peak, class_activation_map, localisation_errors


def _bump(centre, sigma, shape=(64, 64), amplitude=1.0):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return amplitude * np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * sigma**2))


@pytest.mark.parametrize("sigma", [1.5, 2.5, 4.0, 6.0])
def test_gaussian_bump_centre_to_a_tenth_of_a_pixel(sigma):
    rng = np.random.default_rng(1)
    centres = rng.uniform(16, 48, size=(20, 2))
    cams = np.stack([_bump(c, sigma) + 0.3 for c in centres])
    peaks = cam_peak(cams)
    assert peaks.shape == (20, 2)
    assert np.abs(peaks - centres).max() < 0.1


def test_stack_equals_single_maps_and_accepts_torch():
    rng = np.random.default_rng(2)
    cams = np.stack([_bump(rng.uniform(10, 54, 2), 3.0) for _ in range(5)]).astype(np.float32)
    single = np.stack([cam_peak(c) for c in cams])
    np.testing.assert_allclose(cam_peak(cams), single)
    np.testing.assert_allclose(cam_peak(torch.from_numpy(cams)), single)



def test_float32_maps_peak_where_float64_maps_do():
    rng = np.random.default_rng(3)
    cams = np.stack([_bump(rng.uniform(10, 54, 2), 3.0) + 0.2 * rng.random((64, 64)) for _ in range(8)])
    np.testing.assert_allclose(cam_peak(cams.astype(np.float32)), cam_peak(cams), atol=1e-4)
    np.testing.assert_allclose(cam_peak(cams.astype(np.float16)), cam_peak(cams.astype(np.float16).astype(np.float64)))

def test_invariant_to_offset_and_positive_scale():
    cam = _bump((20.4, 33.7), 3.0) + 0.1 * _bump((40, 10), 5.0)
    np.testing.assert_allclose(cam_peak(cam), cam_peak(5.0 * cam - 2.0), atol=1e-9)


def test_second_weaker_bump_does_not_pull_the_peak():
    main, other = (20.25, 20.5), (44.0, 44.0)
    cam = _bump(main, 3.0) + _bump(other, 3.0, amplitude=0.8)
    assert np.abs(cam_peak(cam) - main).max() < 0.1


def test_flat_or_nonfinite_maps_give_nan():
    cams = np.stack([np.ones((8, 8)), _bump((4, 4), 1.5, shape=(8, 8)), np.full((8, 8), np.nan)])
    peaks = cam_peak(cams)
    assert np.isnan(peaks[0]).all() and np.isnan(peaks[2]).all()
    assert np.isfinite(peaks[1]).all()


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="fraction"):
        cam_peak(np.ones((4, 4)), fraction=1.0)
    with pytest.raises(ValueError, match="shape"):
        cam_peak(np.ones((2, 2, 2, 2)))
    with pytest.raises(ValueError, match="localisation_errors"):
        localisation_errors(np.zeros((3, 2)), np.zeros((2, 2)))


def test_localisation_errors_in_pixels_and_angstrom():
    peaks = np.array([[0.0, 0.0], [3.0, 4.0], [np.nan, 1.0]])
    truth = np.zeros((3, 2))
    d = localisation_errors(peaks, truth)
    np.testing.assert_allclose(d[:2], [0.0, 5.0])
    assert np.isnan(d[2])
    np.testing.assert_allclose(localisation_errors(peaks, truth, pixel_size_A=0.3)[1], 1.5)


def test_class_activation_map_weights_and_resize():
    g = torch.Generator().manual_seed(0)
    feats, weight = torch.randn(3, 4, 5, 5, generator=g), torch.randn(2, 4, generator=g)
    cam = class_activation_map(feats, weight, torch.tensor([0, 1, 1]))
    torch.testing.assert_close(cam[1], (weight[1, :, None, None] * feats[1]).sum(0))
    assert class_activation_map(feats, weight, 0, size=(20, 20)).shape == (3, 20, 20)
    with pytest.raises(ValueError, match="weight"):
        class_activation_map(feats, torch.randn(2, 3), 0)


def test_upsampled_cell_is_centred_on_the_pixels_it_pools():
    # A single hot feature cell (i, j) of a 4x-downsampled map covers pixels 4i..4i+3, whose
    # centre is 4i + 1.5: the resized CAM must peak there (no half-pixel shift).
    feats = torch.zeros(1, 1, 16, 16)
    feats[0, 0, 5, 9] = 1.0
    cam = class_activation_map(feats, torch.ones(1, 1), 0, size=(64, 64))
    np.testing.assert_allclose(cam_peak(cam[0]), [4 * 5 + 1.5, 4 * 9 + 1.5], atol=1e-6)
