"""The frame loop's speed settings change no result: the prefetch thread, one-frame movies."""

import numpy as np
import pytest

from stem2d.models.loading import load_classifier
from stem2d.predict.detectors import build_detector
from stem2d.predict.movie import MovieSettings, MovieSource, analyze_movie


@pytest.fixture(scope="module")
def movie():
    from stem2d.sim.movie import MovieConfig, simulate_movie

    sim = simulate_movie(MovieConfig(n_frames=3, frame_shape=(128, 128), pixel_size_A=0.3), rng=7)
    return MovieSource(np.stack([np.asarray(f, np.float32) for f in sim.frames]), "test", 0.3)


@pytest.fixture(scope="module")
def models():
    return build_detector("unet", material="WS2"), load_classifier()


def _run(movie, models, **settings):
    detector, classifier = models
    fixed = {"pixel_size_A": 0.3, "bf16": False, "evolve": True}
    return analyze_movie(movie, detector=detector, classifier=classifier,
                         settings=MovieSettings(**{**fixed, **settings}))


def test_prefetch_thread_gives_the_same_detections(movie, models):
    serial, ahead = _run(movie, models, prefetch=0, evolve=False), _run(movie, models, prefetch=2, evolve=False)
    assert len(serial.detections) > 0
    assert serial.detections.equals(ahead.detections)
    np.testing.assert_array_equal(serial.drift_px, ahead.drift_px)
    assert "prefetch_wait" in ahead.summary["timings_s"] and "prefetch_wait" not in serial.summary["timings_s"]
    for summary in (serial.summary, ahead.summary):
        assert {"read", "resample", "analyse"} <= set(summary["timings_s"])
        assert summary["analyse_steps_s"]["detect"] > 0


def test_one_frame_skips_the_evolution_and_says_why(movie, models):
    one = MovieSource(movie.frames[:1], "one frame", 0.3)
    result = _run(one, models)
    assert result.evolution is None and "evolution" not in result.summary
    assert "two or more frames" in result.summary["evolution_skipped"]


def test_marginal_rate_leaves_out_the_start():
    from stem2d.predict.movie import _Stream

    stream = _Stream(done_at=[0.0, 1.0, 1.5, 1.6, 1.7, 1.8])  # a slow start, then 10 frames/s
    assert stream.marginal_rate() == pytest.approx(10.0)
    assert _Stream(done_at=[0.0, 1.0, 1.1, 1.2]).marginal_rate() is None
