"""`python infer.py`: the movie pipeline end to end on small synthetic movies with truth."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stem2d.pipeline.infer import run_movie
from stem2d.pipeline.utils import compose_job

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SMALL = ["synthetic.n_frames=3", "synthetic.frame_shape=[256,256]", "synthetic.pixel_size_A=0.25",
         "outputs.progress=false", "outputs.tensorboard=false"]


def compose_infer(tmp_path: Path, overrides: list[str]):
    """Compose conf/infer.yaml the way the CLI does, with the run folder in tmp_path."""
    return compose_job("infer", overrides, run_dir=tmp_path, conf_dir=CONF)


def test_synthetic_movie_end_to_end(tmp_path):
    summary = run_movie(compose_infer(tmp_path, SMALL + ["outputs.video=true"]))
    det = pd.read_csv(tmp_path / "detections.csv")
    assert list(det.columns[:8]) == ["frame", "row", "col", "class", "score", "sublattice", "intensity_rel",
                                     "p_class"]
    assert set(det["frame"]) <= {0, 1, 2}
    assert det["row"].between(-1, 256).all() and det["col"].between(-1, 256).all()
    assert det["score"].between(0, 1).all()
    assert set(det["class"]) <= {"mo_dopant", "s_vacancy", "w_vacancy", "w_dopant", "unknown", "adatom"}
    assert set(det["sublattice"]) <= {"metal", "chalcogen", "hollow", "off-lattice"}
    on = det["sublattice"].isin(["metal", "chalcogen"])
    assert on.mean() > 0.7 and det.loc[on, "intensity_rel"].notna().all()
    truth = pd.read_csv(tmp_path / "truth.csv")
    assert {"frame", "row", "col", "class"} <= set(truth.columns)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["pixel_size_A"] == pytest.approx(0.25, rel=0.02)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert {"pipeline", "baseline"} <= set(metrics)
    # a floor well below the benchmark's numbers: the pipeline must find most defects
    assert metrics["pipeline"]["detection"]["f1"] > 0.8
    for name in ("overlay.mp4", "overlay.gif", "counts.png", "evolution/evolution.json"):
        assert (tmp_path / name).is_file(), name
    assert not (tmp_path / "evolution" / "evolution_counts.png").exists()  # counts.png, once
    heat = np.load(tmp_path / "cam_heat.npy")
    assert heat.dtype == np.uint8 and heat.shape[0] == 3 and heat.max() > 0  # napari's CAM layer
    assert "<h2>Classes</h2>" in (tmp_path / "report.html").read_text()
    assert summary["n_frames"] == 3
    # python -m stem2d.evolution RUN_DIR repeats the pipeline's analysis with the same numbers
    from stem2d.evolution.__main__ import main as evolution_main

    assert evolution_main([str(tmp_path), "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "evolution.json").read_text())
    _assert_close(again, json.loads((tmp_path / "evolution" / "evolution.json").read_text()))


def _assert_close(a, b, key=""):
    """Same structure and values up to the rounding of the files read back (detections.csv to 3
    decimals, summary.json to 6 significant digits): 2 % relative."""
    if isinstance(a, dict):
        assert set(a) == set(b), key
        for k in a:
            _assert_close(a[k], b[k], f"{key}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), key
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_close(x, y, f"{key}[{i}]")
    elif isinstance(a, float) and isinstance(b, (int, float)):
        assert a == pytest.approx(b, rel=0.02, abs=1e-9), key
    else:
        assert a == b, key


def test_movie_file_with_truth_and_grid_mode(tmp_path):
    """A movie written to disk is read back with its pixel size and truth; grid mode runs."""
    from stem2d.sim.movie import MovieConfig, simulate_movie
    from stem2d.sim.movie_cli import write_movie

    movie = simulate_movie(MovieConfig(n_frames=2, frame_shape=(192, 192), pixel_size_A=0.3), rng=5)
    path = write_movie(movie, tmp_path / "in" / "movie.tif")
    out = tmp_path / "run"
    run_movie(compose_infer(out, SMALL + [f"movie={path}", "detector=grid", "outputs.video=false",
                                          "outputs.evolution=false"]))
    assert (out / "truth.csv").is_file()
    det = pd.read_csv(out / "detections.csv")
    assert set(det["frame"]) <= {0, 1}
    assert json.loads((out / "summary.json").read_text())["pixel_size_metadata_A"] == pytest.approx(0.3)


@pytest.mark.slow  # infer.py in a subprocess: ~13 s of CPU (the default suite stays under 4 min on 2 cores)
def test_bad_movie_is_a_clear_error_and_leaves_nothing(tmp_path):
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00garbage")
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "infer.py"), f"movie={bad}", f"hydra.run.dir={out}", "outputs.progress=false"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "broken.tif" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
    assert not (out / "summary.json").exists() and not (out / "detections.csv").exists()


def test_flat_movie_without_lattice_is_rejected(tmp_path):
    flat = tmp_path / "flat.npy"
    np.save(flat, np.random.default_rng(0).poisson(20, size=(2, 128, 128)).astype(np.float32))
    with pytest.raises(ValueError, match="lattice"):
        run_movie(compose_infer(tmp_path / "run", SMALL + [f"movie={flat}", "detector=lattice"]))
    assert not (tmp_path / "run" / "summary.json").exists()


def test_crash_mid_movie_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    """A failure at frame 2 of 3 leaves no detections, no summary and no finished movie."""
    import stem2d.predict.frame as frame_analysis

    real = frame_analysis.analyze_frame
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash at frame 2")
        return real(*args, **kwargs)

    monkeypatch.setattr(frame_analysis, "analyze_frame", failing)
    with pytest.raises(RuntimeError, match="frame 2"):
        run_movie(compose_infer(tmp_path, SMALL + ["outputs.video=true", "score.baseline=null"]))
    left = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".hydra"))
    for name in ("detections.csv", "summary.json", "metrics.json", "overlay.mp4", "overlay.gif"):
        assert name not in left, left
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_each_material_gets_its_bundled_classifier_or_a_warning(caplog):
    """ckpt_path wins; WS2 and materials without weights fall back to the WS2 weights (with a
    warning for the latter); MoS2 gets its own weights when the MoS2 class set is configured."""
    from stem2d.classes import ClassSet
    from stem2d.models.loading import (
        bundled_classifier_path,
        classifier_path_for,
        load_classifier,
    )

    ws2 = ClassSet.from_mapping(None).names
    assert classifier_path_for("MoS2", ws2, "my.ckpt") == "my.ckpt"
    assert classifier_path_for("WS2", ws2, None) is None
    with caplog.at_level("WARNING"):
        assert classifier_path_for("WSe2", ws2, None) is None
    assert "no bundled classifier for WSe2" in caplog.text
    mos2 = bundled_classifier_path("MoS2")
    mos2_names = load_classifier(mos2).class_names
    assert "mo_vacancy" in mos2_names
    assert classifier_path_for("MoS2", mos2_names, None) == str(mos2)
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert classifier_path_for("MoS2", ws2, None) is None      # WS2 classes configured: keep WS2 weights
    assert "classes=mos2" in caplog.text


def test_site_classes_pick_the_materials_own_site_model_else_the_family_model():
    """classes=sites: a host material with bundled site weights gets them (the family model cannot
    tell a MoSe2 Se2 site from a WSe2 W site); an alloy without its own weights gets the family
    model; ckpt_path still wins."""
    from stem2d.classes import SITE_CLASSES
    from stem2d.models.loading import bundled_classifier_path, bundled_site_classifier_path, classifier_path_for

    own = bundled_site_classifier_path("MoSe2")
    assert own.name == "cam_cnn_mose2_sites.ckpt" and own.is_file()
    assert classifier_path_for("MoSe2", SITE_CLASSES, None) == str(own)
    assert not bundled_site_classifier_path("WSSe").exists()
    assert classifier_path_for("WSSe", SITE_CLASSES, None) == str(bundled_classifier_path("mx2"))
    assert classifier_path_for("MoSe2", SITE_CLASSES, "my.ckpt") == "my.ckpt"


@pytest.mark.parametrize(("overrides", "expected"), [
    ([], (True, True)),
    (["classify.evidence=false"], (False, False)),  # one switch for the fast loop (issue #16)
    (["classify.evidence=false", "classify.column_candidates=true"], (False, True)),
])
def test_evidence_switch_sets_column_candidates_unless_given(tmp_path, overrides, expected):
    from stem2d.pipeline.infer import movie_settings

    s = movie_settings(compose_infer(tmp_path, overrides))
    assert (s.evidence, s.column_candidates) == expected
