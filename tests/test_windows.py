import numpy as np

from stem2d.predict.windows import (
    extract_windows,
    grid_centres,
    window_origins,
)


def test_extract_windows_centres_the_point():
    frame = np.zeros((100, 120), np.float32)
    frame[40, 70] = 5.0
    win = extract_windows(frame, np.array([[40.2, 69.8]]))
    assert win.shape == (1, 64, 64) and win.dtype == np.float32
    assert np.unravel_index(win[0].argmax(), (64, 64)) == (32, 32)
    np.testing.assert_array_equal(window_origins(np.array([[40.2, 69.8]])), [[8, 38]])


def test_extract_windows_at_edges_matches_interior_content():
    rng = np.random.default_rng(0)
    frame = rng.random((80, 80)).astype(np.float32)
    win = extract_windows(frame, np.array([[0.0, 0.0], [79.0, 79.0], [40.0, 40.0]]))
    assert win.shape == (3, 64, 64)
    np.testing.assert_array_equal(win[2], frame[8:72, 8:72])
    np.testing.assert_array_equal(win[0][32:, 32:], frame[:32, :32])
    assert extract_windows(frame, np.zeros((0, 2))).shape == (0, 64, 64)


def test_grid_centres_cover_frame():
    c = grid_centres((128, 160), stride=32)
    assert c[:, 0].min() == 32 and c[:, 0].max() == 96
    assert c[:, 1].max() == 128
    assert len(c) == 3 * 4
