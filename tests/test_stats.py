"""Exact medians of large arrays (stem2d.stats) against np.median."""

from __future__ import annotations

import numpy as np
import pytest

from stem2d.stats import BracketedMedian, frame_median


def test_bracketed_median_is_np_median():
    def median(values, sample, bands=1):
        m = BracketedMedian(sample=sample)
        for part in np.array_split(values, bands):
            m.add(part)
        return m.of(values)

    rng = np.random.default_rng(6)
    for n in (10_001, 10_000):  # one middle value, two
        values = rng.gamma(3.0, size=n)
        assert median(values, values[::7]) == median(values, values[::7], bands=9) == np.median(values)
        assert median(values, values[::7] + 5.0) == np.median(values)  # no bracket: np.median
    values = np.repeat([1.0, 2.0, 3.0], [400, 301, 400])  # ties at the median
    assert median(values, values[::5], bands=4) == np.median(values)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint16])
@pytest.mark.parametrize("shape", [(97, 130), (128, 128), (3, 5)])
def test_frame_median_is_np_median(dtype, shape):
    rng = np.random.default_rng(sum(shape))
    frame = (rng.gamma(2.0, 40.0, size=shape) + np.linspace(0, 30, shape[1])).astype(dtype)
    assert frame_median(frame) == float(np.median(frame))
    assert frame_median(frame, rows_per_band=7) == float(np.median(frame))


def test_a_whole_frame_is_standardised_with_np_median():
    from stem2d.models.preprocess import standardize_tiles

    frame = np.random.default_rng(2).poisson(40.0, size=(300, 257)).astype(np.float32)  # many ties
    x = frame.astype(np.float32)
    want = ((x - np.median(x, keepdims=True)) / (x.std(keepdims=True) + 1e-6)).astype(np.float32)
    np.testing.assert_array_equal(standardize_tiles(frame), want)
