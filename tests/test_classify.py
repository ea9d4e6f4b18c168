"""Tile inference API and ``infer.py tiles=...``."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

from stem2d.models.cam import cam_peak
from stem2d.models.classifier import CamClassifier
from stem2d.models.loading import export_checkpoint, load_classifier
from stem2d.models.nets import CamNet
from stem2d.models.preprocess import standardize_tiles
from stem2d.pipeline.tiles import run_tiles
from stem2d.pipeline.utils import compose_job
from stem2d.predict.classify import classify_tiles

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["pristine", "mo_dopant", "s_vacancy", "w_vacancy", "w_dopant"]


def _save_checkpoint(path: Path, *, class_names=CLASSES, tile_size_px=64) -> CamClassifier:
    """A Lightning-style checkpoint of an untrained model, written through the model's own hook."""
    torch.manual_seed(0)
    model = CamClassifier(CamNet(len(class_names), channels=(8, 16, 32)), class_names=class_names,
                          tile_size_px=tile_size_px)
    ckpt = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(ckpt)
    torch.save(ckpt, path)
    return model.eval()


@pytest.fixture
def ckpt(tmp_path):
    path = tmp_path / "model.ckpt"
    _save_checkpoint(path)
    return path


@pytest.fixture
def tiles():
    rng = np.random.default_rng(0)
    return rng.poisson(20.0, size=(10, 64, 64)).astype(np.float32)


def test_result_shapes_and_consistency(ckpt, tiles):
    model = load_classifier(ckpt, expected_classes=CLASSES)
    res = classify_tiles(model, tiles, batch_size=4)
    assert res.labels.shape == (10,) and res.labels.dtype == np.int64
    assert res.probs.shape == (10, 5) and res.probs.dtype == np.float32
    np.testing.assert_allclose(res.probs.sum(1), 1.0, rtol=1e-5)
    # the batched, standardised path agrees with one plain forward pass of the network
    with torch.no_grad():
        logits = model(torch.from_numpy(standardize_tiles(tiles)[:, None]))
    np.testing.assert_array_equal(res.labels, logits.argmax(1).numpy())
    np.testing.assert_allclose(res.probs, logits.softmax(1).numpy(), rtol=1e-4, atol=1e-6)
    assert res.cams.shape == (10, 64, 64) and res.cam_pos.shape == (10, 2)
    np.testing.assert_allclose(res.cam_pos, cam_peak(res.cams))
    frame = res.to_frame()
    assert list(frame.columns) == ["index", "class", "score", "cam_row", "cam_col"]
    assert set(frame["class"]) <= set(CLASSES)


def test_batch_size_dose_and_background_do_not_matter(ckpt, tiles):
    model = load_classifier(ckpt)
    a = classify_tiles(model, tiles, batch_size=3)
    b = classify_tiles(model, 7.0 * tiles + 100.0, batch_size=256)  # other dose, flat background
    np.testing.assert_allclose(a.probs, b.probs, rtol=1e-4, atol=1e-5)


def test_matches_the_model_that_was_saved(tmp_path, tiles):
    saved = _save_checkpoint(tmp_path / "m.ckpt")
    loaded = load_classifier(tmp_path / "m.ckpt")
    res = classify_tiles(loaded, tiles)
    from stem2d.models.preprocess import standardize_tiles

    with torch.no_grad():
        ref = saved(torch.from_numpy(standardize_tiles(tiles))[:, None]).softmax(1).numpy()
    np.testing.assert_allclose(res.probs, ref, rtol=1e-4, atol=1e-6)


def test_bad_tiles_are_named(ckpt, tiles):
    model = load_classifier(ckpt)
    with pytest.raises(ValueError, match=r"\(N, 64, 64\).*tiles\[None\]"):
        classify_tiles(model, tiles[0])
    with pytest.raises(ValueError, match=r"got \(10, 32, 32\)"):
        classify_tiles(model, tiles[:, :32, :32])
    bad = tiles.copy()
    bad[7, 3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN.*index 7"):
        classify_tiles(model, bad)


def test_bad_checkpoints_are_named(tmp_path, ckpt):
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        load_classifier(tmp_path / "nope.ckpt")
    with pytest.raises(ValueError, match=r"classes \['pristine'.*expected \['a', 'b'\]"):
        load_classifier(ckpt, expected_classes=["a", "b"])
    _save_checkpoint(tmp_path / "t32.ckpt", tile_size_px=32)
    with pytest.raises(ValueError, match="32 px tiles, expected 64"):
        load_classifier(tmp_path / "t32.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="not a stem2d classifier checkpoint"):
        load_classifier(tmp_path / "other.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.ckpt"):
        load_classifier(tmp_path / "junk.ckpt")


def test_export_is_slim_and_equivalent(tmp_path, ckpt, tiles):
    out = export_checkpoint(ckpt, tmp_path / "slim.ckpt", metadata={"note": "test"})
    slim = torch.load(out, weights_only=True)
    assert set(slim["hyper_parameters"]) <= {"class_names", "noise_modes", "tile_size_px", "pixel_size_A", "channels_last"}
    assert slim["stem2d"]["metadata"] == {"note": "test"}
    a = classify_tiles(load_classifier(ckpt), tiles)
    b = classify_tiles(load_classifier(out), tiles)
    np.testing.assert_allclose(a.probs, b.probs, rtol=1e-5, atol=1e-6)


def _compose_infer(tmp_path, overrides):
    return compose_job("infer", overrides, run_dir=tmp_path / "run", conf_dir=ROOT / "conf")


def test_infer_tiles_writes_predictions(tmp_path, ckpt, tiles):
    np.save(tmp_path / "tiles.npy", tiles)
    cfg = _compose_infer(tmp_path, [f"tiles={tmp_path / 'tiles.npy'}", f"ckpt_path={ckpt}"])
    out = run_tiles(cfg)
    table = pd.read_csv(out)
    assert out == tmp_path / "run" / "predictions.csv"
    assert list(table.columns) == ["index", "class", "score", "cam_row", "cam_col"] and len(table) == 10
    assert sorted(p.name for p in out.parent.iterdir()) == ["predictions.csv"]  # no temp file left


def test_infer_errors_name_the_problem(tmp_path, ckpt, tiles):
    with pytest.raises(ValueError, match="tiles=PATH.npy"):
        run_tiles(_compose_infer(tmp_path, [f"ckpt_path={ckpt}"]))
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        run_tiles(_compose_infer(tmp_path, [f"tiles={tmp_path / 'missing.npy'}", f"ckpt_path={ckpt}"]))
    np.save(tmp_path / "tiles.npy", tiles)
    with pytest.raises(ValueError, match=r"expected \['mo_w'"):
        run_tiles(_compose_infer(tmp_path, [f"tiles={tmp_path / 'tiles.npy'}", f"ckpt_path={ckpt}", "classes=seed_six"]))


def test_bundled_weights_on_fresh_held_out_simulations():
    """The shipped checkpoint on 250 tiles from base simulations with seeds never used in training."""
    from stem2d.classes import ClassSet
    from stem2d.data.simulated import Neighbours, make_split
    from stem2d.materials import get_material

    model = load_classifier()  # the bundled stem2d/weights/cam_cnn_ws2.ckpt
    assert model.class_names == CLASSES
    # movie-window surroundings as in conf/data/simulated.yaml (other defects, displaced dopants)
    data = make_split(ClassSet.from_mapping(None), split="test", seed=20_250_611, n_bases_per_class=10,
                      n_samples=250, material=get_material("WS2"), neighbours=Neighbours(0.25, 4.0, 0.6))
    samples = [data.sample(i) for i in range(len(data))]
    labels = np.array([data.bases.label[data.base_index(i)] for i in range(len(data))])
    res = classify_tiles(model, np.stack([s.image for s in samples]))
    assert (res.labels == labels).mean() >= 0.97   # 0.992 on 5,120 test tiles; 250 tiles scatter ~1 %
    pos = np.stack([s.pos for s in samples])
    hit = (res.labels == labels) & np.isfinite(pos).all(1)
    err_A = 0.3 * np.hypot(*(res.cam_pos[hit] - pos[hit]).T)
    assert np.median(err_A) <= 1.0 and (err_A <= 2.0).mean() >= 0.85


def test_bf16_autocast_keeps_the_classes_of_the_bundled_model():
    """bf16 autocast (infer.py bf16=auto on CPUs with native bf16) must not change decisions."""
    from stem2d.classes import ClassSet
    from stem2d.data.simulated import Neighbours, make_split
    from stem2d.materials import get_material

    model = load_classifier()
    data = make_split(ClassSet.from_mapping(None), split="test", seed=31, n_bases_per_class=4,
                      n_samples=100, material=get_material("WS2"), neighbours=Neighbours(0.25, 4.0, 0.6))
    tiles = np.stack([data.sample(i).image for i in range(len(data))])
    full, half = classify_tiles(model, tiles), classify_tiles(model, tiles, bf16=True)
    assert (full.labels == half.labels).mean() >= 0.98
    np.testing.assert_allclose(half.probs, full.probs, atol=0.1)


def test_bundled_mos2_weights_on_fresh_held_out_simulations():
    """The MoS2 checkpoint on 240 MoS2 tiles (with surroundings) from never-trained seeds."""
    from stem2d.classes import ClassSet
    from stem2d.data.simulated import Neighbours, make_split
    from stem2d.materials import get_material
    from stem2d.models.loading import bundled_classifier_path

    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
        classes = ClassSet.from_mapping(dict(compose("train", overrides=["classes=mos2"]).classes))
    model = load_classifier(bundled_classifier_path("MoS2"), expected_classes=classes.names)
    data = make_split(classes, split="test", seed=20_251_125, n_bases_per_class=8, n_samples=240,
                      material=get_material("MoS2"), neighbours=Neighbours(0.25, 4.0, 0.6))
    tiles = np.stack([data.sample(i).image for i in range(len(data))])
    labels = np.array([data.bases.label[data.base_index(i)] for i in range(len(data))])
    assert (classify_tiles(model, tiles).labels == labels).mean() >= 0.97   # 0.994 on its test split
