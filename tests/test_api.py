"""The notebook API (stem2d.find_defects, analyze_movie, simulate_frame, load_classifier)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import stem2d
from stem2d.pipeline.infer import run_movie
from stem2d.pipeline.utils import compose_job

ROOT = Path(__file__).resolve().parents[1]


def test_import_stem2d_stays_light():
    """``import stem2d`` does not import torch; the API appears on first use."""
    code = "import sys, stem2d; assert callable(stem2d.find_defects); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    assert {"find_defects", "analyze_movie", "simulate_frame", "load_classifier"} <= set(dir(stem2d))
    with pytest.raises(AttributeError, match="no_such_name"):
        stem2d.no_such_name  # noqa: B018


def test_api_and_cli_give_identical_detections(tmp_path):
    """The same movie file through ``stem2d.analyze_movie`` and through ``infer.py``'s run_movie."""
    from stem2d.sim.movie import MovieConfig, simulate_movie
    from stem2d.sim.movie_cli import write_movie

    movie = simulate_movie(MovieConfig(n_frames=2, frame_shape=(192, 192), pixel_size_A=0.25), rng=7)
    path = write_movie(movie, tmp_path / "in" / "movie.tif")
    out = tmp_path / "cli"
    cli = run_movie(compose_job("infer", [f"movie={path}", "outputs.video=false", "outputs.tensorboard=false",
                                          "outputs.progress=false", "outputs.evolution=false"],
                                run_dir=out, conf_dir=ROOT / "conf"))
    result = stem2d.analyze_movie(path, evolve=False)
    api = result.detections
    assert len(api) > 0 and list(api.columns[:5]) == ["frame", "row", "col", "class", "score"]
    written = pd.read_csv(out / "detections.csv")
    pd.testing.assert_frame_equal(api.reset_index(drop=True), written, check_dtype=False, atol=1e-3, rtol=0)
    assert result.pixel_size_A == cli["pixel_size_A"]
    assert result.metrics["pipeline"]["detection"] == cli["metrics"]["pipeline"]["detection"]
    # one frame: find_defects gives the rows of frame 0
    one = stem2d.find_defects(np.asarray(movie.frames[0]))
    pd.testing.assert_frame_equal(one.reset_index(drop=True), written[written["frame"] == 0].reset_index(drop=True),
                                  check_dtype=False, atol=1e-3, rtol=0)


def test_simulate_frame_and_movie_result(tmp_path):
    frame, truth = stem2d.simulate_frame(shape=(160, 160), pixel_size_A=0.25, rng=3)
    assert frame.shape == (160, 160) and frame.dtype == np.float32
    assert {"row", "col", "class"} <= set(truth.columns) and len(truth) > 0
    result = stem2d.analyze_movie(np.stack([frame, frame]), pixel_size_A=0.25, detector="lattice",
                                  evolution={"memory": 1, "n_boot": 10})
    assert result.drift_px.shape == (2, 2)
    assert result.tracks is not None and result.evolution.params["memory"] == 1
    rgb = result.overlay(1)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[1] == 160
    folder = result.save(tmp_path / "run")
    for name in ("detections.csv", "counts.png", "summary.json", "evolution/evolution.json"):
        assert (folder / name).is_file(), name


def test_api_errors_name_the_argument():
    with pytest.raises(ValueError, match="2D"):
        stem2d.find_defects(np.zeros((2, 64, 64)))
    with pytest.raises(ValueError, match="detector 'unett'"):
        stem2d.find_defects(np.zeros((64, 64)), pixel_size_A=0.3, detector="unett")
    model = stem2d.load_classifier()
    assert model.class_names[0] == "pristine"
