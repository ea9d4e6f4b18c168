import numpy as np

from stem2d.predict.overlay import insert_cams, render_overlay


def test_insert_cams_places_peak_at_position():
    cam = np.zeros((64, 64), dtype=np.float32)
    cam[32, 32] = 1.0
    heat = insert_cams((200, 300), np.array([[50.0, 120.0]]), cam[None])
    assert heat.shape == (200, 300) and heat.dtype == np.float32
    assert np.unravel_index(heat.argmax(), heat.shape) == (50, 120)
    assert heat.max() <= 1.0 and heat.min() >= 0.0


def test_insert_cams_overlap_blends_and_clips_at_border():
    cams = np.ones((2, 64, 64), dtype=np.float32)
    heat = insert_cams((100, 100), np.array([[10.0, 10.0], [20.0, 20.0]]), cams)
    # constant CAMs blend to a constant where windows carry full weight
    assert heat[15, 15] == np.float32(1.0) or abs(heat[15, 15] - 1.0) < 1e-6
    assert heat[99, 99] == 0.0
    assert np.all(insert_cams((10, 10), np.zeros((0, 2)), np.zeros((0, 64, 64))) == 0)


def test_render_overlay_shapes_and_markers():
    frame = np.random.default_rng(0).poisson(50, size=(128, 128)).astype(np.float32)
    heat = np.zeros_like(frame)
    out = render_overlay(frame, heat, np.array([[64.0, 64.0]]), [1], ["pristine", "mo_dopant"], title="frame 0")
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    # the marker ring is coloured (not gray) at radius 6 from the point
    ring = out[64, 70]
    assert not (ring[0] == ring[1] == ring[2])
    none = render_overlay(frame, heat, np.array([[64.0, 64.0]]), [0], ["pristine", "mo_dopant"])
    assert none[64, 70, 0] == none[64, 70, 1] == none[64, 70, 2]
