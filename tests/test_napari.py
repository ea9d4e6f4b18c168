"""napari plugin: the reader's layer data is plain numpy (tested without napari); with napari
installed (`pip install "stem2d[napari]"`) a slow test opens a run in a headless viewer."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from stem2d.napari.reader import get_reader, run_layers
from stem2d.viz.style import class_style
from tests.viz_run import make_run


def test_manifest_names_real_functions():
    import importlib

    manifest = yaml.safe_load((Path(__file__).resolve().parents[1] / "stem2d" / "napari" / "napari.yaml").read_text())
    for cmd in manifest["contributions"]["commands"]:
        module, name = cmd["python_name"].split(":")
        assert callable(getattr(importlib.import_module(module), name)), cmd["python_name"]


def test_reader_accepts_run_folders_and_summaries_only(tmp_path):
    run = make_run(tmp_path)
    assert get_reader(str(run)) is not None and get_reader(str(run / "summary.json")) is not None
    assert get_reader(str(tmp_path)) is None and get_reader(str(run / "detections.csv")) is None


def test_run_layers_movie_points_tracks_heat_in_nm(tmp_path):
    run = make_run(tmp_path)
    layers = {kw["name"]: (data, kw, kind) for data, kw, kind in run_layers(run)}
    movie, kw, kind = layers["movie.npy"]
    assert kind == "image" and movie.shape == (3, 64, 64) and kw["scale"] == (1.0, 0.025, 0.025)
    assert kw["units"] == ("", "nm", "nm")
    heat, kw, _ = layers["CAM heat"]
    assert heat.shape == (3, 32, 32) and kw["visible"] is False and kw["scale"][1] == pytest.approx(0.05)
    pts, kw, kind = layers["s_vacancy (3)"]
    assert kind == "points" and pts.shape == (3, 3) and list(pts[:, 0]) == [0, 1, 2]
    st = class_style("s_vacancy")
    assert kw["border_color"] == st.hex and kw["symbol"] == st.napari_symbol
    assert set(kw["features"]) == {"class", "score", "sublattice", "intensity_rel"}  # evidence shown on hover
    assert kw["size"] == pytest.approx(4.8 / 0.25)  # the overlay's marker size, in px of the layer
    tracks, kw, kind = layers["tracks"]
    assert kind == "tracks" and tracks.shape == (6, 4) and set(tracks[:, 0]) == {0.0, 1.0}


def test_run_layers_without_optional_files(tmp_path):
    run = make_run(tmp_path, evidence=False)
    (run / "cam_heat.npy").unlink()
    (run / "evolution" / "tracks.csv").unlink()
    names = [kw["name"] for _, kw, _ in run_layers(run, movie=False)]
    assert names == ["mo_dopant (3)", "s_vacancy (3)"]


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="napari's canvas needs OpenGL: run under xvfb-run "
                    "(Qt's offscreen platform gives vispy no GL context)")
def test_napari_opens_a_run_headless(tmp_path):
    """Needs napari with a Qt binding (pip install "stem2d[napari]") and an X display
    (``xvfb-run -a pytest -m slow tests/test_napari.py``)."""
    napari = pytest.importorskip("napari")
    from npe2 import PluginManager, PluginManifest

    manifest = Path(__file__).resolve().parents[1] / "stem2d" / "napari" / "napari.yaml"
    pm = PluginManager.instance()
    if "stem2d" not in pm._manifests:
        pm.register(PluginManifest.from_file(manifest))
    run = make_run(tmp_path)
    viewer = napari.Viewer(show=False)
    try:
        viewer.open(str(run), plugin="stem2d")
        names = [layer.name for layer in viewer.layers]
        assert names[:2] == ["movie.npy", "CAM heat"] and "s_vacancy (3)" in names and "tracks" in names
        pts = viewer.layers["s_vacancy (3)"]
        assert list(pts.features.columns) == ["class", "score", "sublattice", "intensity_rel"]
        assert np.allclose(pts.scale, (1.0, 0.025, 0.025))
        assert not viewer.layers["CAM heat"].visible
        shot = viewer.screenshot(canvas_only=True)
        assert shot.ndim == 3 and shot.std() > 1
        _, widget = viewer.window.add_plugin_dock_widget("stem2d", "Find defects")
        assert widget.material.value == "WS2" and widget.threshold.value == 0.5
        assert widget.image.value is viewer.layers["movie.npy"]  # the image layer is offered
    finally:
        viewer.close()


@pytest.mark.slow
def test_widget_core_finds_defects_in_frames():
    """What the Find-defects widget runs, without napari: bundled weights on simulated frames."""
    from stem2d.napari.widget import find_defects_layers
    from stem2d.sim.movie import MovieConfig, simulate_movie

    movie = simulate_movie(MovieConfig(n_frames=2, frame_shape=(192, 192), pixel_size_A=0.25), rng=0)
    one = find_defects_layers([movie.frames[0]], material="WS2", threshold=0.5)
    assert one and all(kind == "points" and data.shape[1] == 2 for data, _, kind in one)
    assert one[0][1]["scale"] == pytest.approx((0.025, 0.025), rel=0.02)  # nm, measured from the lattice
    both = find_defects_layers(list(movie.frames), material="WS2", threshold=0.5, frame_indices=[5, 6])
    frames = np.concatenate([data[:, 0] for data, _, _ in both])
    assert set(frames) <= {5.0, 6.0} and len(frames) >= len(movie.truth) // 2
    for _, kw, _ in both:
        assert kw["border_color"] == class_style(kw["metadata"]["class"]).hex
