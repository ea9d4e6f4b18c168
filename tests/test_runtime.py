"""The U-Net's CPU runtimes (stem2d.models.runtime): ONNX Runtime gives torch's map, the export is
cached by content, and the rule picks torch for bf16."""

import numpy as np
import pytest
import torch

from stem2d.models import runtime
from stem2d.models.loading import load_unet
from stem2d.models.runtime import OnnxPixelNet, choose_runtime
from stem2d.models.unet import UNet, fuse_batchnorm
from stem2d.predict.pixelmap import predict_frame

needs_ort = pytest.mark.skipif(not runtime.onnxruntime_available(), reason="onnxruntime/onnx not installed")


def test_rule_picks_torch_for_bf16_and_gpus():
    assert choose_runtime("torch", bf16=False) == "torch"
    assert choose_runtime("auto", bf16=True) == "torch"
    assert choose_runtime("auto", bf16=False, device_type="cuda") == "torch"
    with pytest.raises(ValueError, match="runtime='fast'"):
        choose_runtime("fast", bf16=False)
    with pytest.raises(ValueError, match="fp32 on the CPU only"):
        choose_runtime("onnxruntime", bf16=True)


def test_rule_without_onnxruntime_installed(monkeypatch):
    monkeypatch.setattr(runtime, "onnxruntime_available", lambda: False)
    assert choose_runtime("auto", bf16=False) == "torch"
    with pytest.raises(ValueError, match="pip install onnxruntime onnx"):
        choose_runtime("onnxruntime", bf16=False)


@needs_ort
def test_bundled_unet_map_equals_torch(tmp_path):
    """The whole-frame map and a tiled one: ONNX Runtime's probabilities are torch's (1e-4)."""
    net = load_unet()
    onnx_net = OnnxPixelNet(net, cache=tmp_path)
    frame = np.random.default_rng(0).normal(100.0, 10.0, (200, 232)).astype(np.float32)
    for tile in (None, 96):
        ref = predict_frame(net, frame, tile=tile)
        got = predict_frame(onnx_net, frame, tile=tile)
        assert got.shape == ref.shape and got.dtype == np.float32
        assert np.abs(got - ref).max() < 1e-4


@needs_ort
def test_export_is_cached_by_content(tmp_path, monkeypatch):
    torch.manual_seed(0)
    net = fuse_batchnorm(UNet(channels=(4, 8)).eval())
    first = OnnxPixelNet(net, cache=tmp_path)
    assert first.path.is_file() and first.path.parent == tmp_path
    with torch.no_grad():
        net.head.bias += 1.0
    changed = OnnxPixelNet(net, cache=tmp_path)              # new weights: a new file
    assert changed.path != first.path and sorted(tmp_path.iterdir()) == sorted([first.path, changed.path])
    x = np.random.default_rng(0).normal(size=(1, 1, 32, 32)).astype(np.float32)
    assert np.allclose(changed.run(x), first.run(x) + 1.0, atol=1e-5)
    calls = []
    monkeypatch.setattr(runtime, "_export", lambda *a: calls.append(a))
    again = OnnxPixelNet(net, cache=tmp_path)                # same weights: the file is reused
    assert again.path == changed.path and calls == []


@needs_ort
def test_failed_export_leaves_no_file(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("exporter failed")

    monkeypatch.setattr(torch.onnx, "export", broken)
    torch.manual_seed(1)
    with pytest.raises(RuntimeError, match="exporter failed"):
        OnnxPixelNet(fuse_batchnorm(UNet(channels=(4, 8)).eval()), cache=tmp_path)
    assert list(tmp_path.iterdir()) == []


@needs_ort
def test_threads_follow_the_calling_thread(tmp_path):
    torch.manual_seed(2)
    net = OnnxPixelNet(fuse_batchnorm(UNet(channels=(4, 8)).eval()), cache=tmp_path)
    x = np.zeros((1, 1, 32, 32), np.float32)
    before = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            net.run(x)
        assert sorted(net._sessions) == [1, 2]
    finally:
        torch.set_num_threads(before)


@needs_ort
@pytest.mark.parametrize("ckpt", ["cam_cnn_ws2.ckpt", "cam_cnn_ws2_sites.ckpt"])
def test_classifier_on_onnx_features_equals_torch(ckpt, tmp_path, monkeypatch):
    """The movie loop's classifier with its feature body on ONNX Runtime: same classes, probabilities
    and CAMs as torch (the site model through the projection onto the default names too)."""
    from stem2d.classes import ClassSet
    from stem2d.materials import get_material
    from stem2d.models.loading import load_classifier, weights_dir
    from stem2d.models.projected import project_classifier
    from stem2d.predict.movie import _tile_classifier

    monkeypatch.setenv("STEM2D_CACHE", str(tmp_path))
    model = project_classifier(load_classifier(weights_dir() / ckpt), ClassSet.from_mapping(None),
                               get_material("WS2"))
    windows = np.random.default_rng(3).poisson(50.0, (7, 64, 64)).astype(np.float32)
    windows[:, 28:36, 28:36] += 40.0
    ref = _tile_classifier(model, 4, False, "torch")(windows)
    got = _tile_classifier(model, 4, False, "onnxruntime")(windows)
    assert list(tmp_path.rglob("*.onnx"))                    # it did run on ONNX Runtime
    assert (got[0] == ref[0]).all()
    for a, b in zip(got[1:], ref[1:]):
        assert np.allclose(a, b, atol=1e-4, equal_nan=True)


@pytest.mark.parametrize(("native", "runtime_setting", "expected"), [
    (True, "torch", "U-Net map on cpu: torch, bf16"), (False, "torch", "U-Net map on cpu: torch, fp32"),
    (False, "auto", "U-Net map on cpu: onnxruntime, fp32")])
def test_unet_detector_follows_the_precision_rule(native, runtime_setting, expected, monkeypatch, caplog):
    """``detector.bf16: auto``: bf16 where the CPU has it natively, else fp32 (on torch by
    default, on ONNX Runtime with ``runtime: auto``); the maps find the same sites on a synthetic frame."""
    import logging

    from stem2d.models import precision
    from stem2d.predict.detectors import build_detector
    from stem2d.sim.movie import MovieConfig, simulate_movie

    if runtime_setting == "auto" and not runtime.onnxruntime_available():
        pytest.skip("onnxruntime/onnx not installed")
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: native)
    with caplog.at_level(logging.INFO, logger="stem2d.predict.detectors"):
        detector = build_detector("unet", **({} if runtime_setting == "torch" else {"runtime": runtime_setting}))
    assert expected in caplog.text
    frame = simulate_movie(MovieConfig(n_frames=1, frame_shape=(128, 128)), rng=0).frames[0]
    points, _ = detector(frame)
    ref, _ = build_detector("unet", bf16=False, runtime="torch")(frame)
    assert len(points) == len(ref) > 0
    assert np.abs(np.sort(points, axis=0) - np.sort(ref, axis=0)).max() < 0.5


def test_device_setting(monkeypatch):
    from stem2d.models.runtime import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cpu") == "cpu" and resolve_device("auto") == "cpu"
    with pytest.raises(ValueError, match="device=cuda: torch sees no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="device='gpu0'"):
        resolve_device("gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"


@needs_ort
def test_auto_falls_back_to_torch_when_the_export_fails(monkeypatch, caplog):
    """A read-only cache or an exporter error: ``runtime: auto`` runs on torch with a warning,
    ``runtime: onnxruntime`` (asked for explicitly) fails loudly."""
    import logging

    from stem2d.predict.detectors import build_detector

    def broken(*args, **kwargs):
        raise PermissionError("cache folder is read-only")

    monkeypatch.setattr(runtime, "_export", broken)
    monkeypatch.setenv("STEM2D_CACHE", "/nonexistent/stem2d-cache-for-this-test")
    with caplog.at_level(logging.INFO):
        build_detector("unet", bf16=False, runtime="auto")
    assert "ONNX Runtime not usable (PermissionError" in caplog.text and "U-Net map on cpu: torch, fp32" in caplog.text
    with pytest.raises(PermissionError):
        build_detector("unet", bf16=False, runtime="onnxruntime")
