"""CUDA paths (skipped without a GPU; CI has none): the U-Net map and the classifier on the GPU
agree with the CPU, in fp32 and under autocast."""

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture(scope="module")
def unet():
    from stem2d.models.loading import load_pixel_predictor, weights_dir
    from stem2d.models.unet import for_inference

    return for_inference(load_pixel_predictor(weights_dir() / "unet_ws2.ckpt").net.eval())


def test_unet_map_on_cuda_matches_cpu(unet):
    from stem2d.predict.pixelmap import predict_frame

    frame = np.random.default_rng(0).poisson(50.0, (300, 260)).astype(np.float32)
    cpu = predict_frame(unet, frame)
    gpu_net = unet.to("cuda")
    try:
        gpu = predict_frame(gpu_net, frame)
        half = predict_frame(gpu_net, frame, bf16=True)
        tiled = predict_frame(gpu_net, frame, tile=128)
    finally:
        unet.to("cpu")
    assert np.abs(gpu - cpu).max() < 1e-3
    assert np.abs(tiled - cpu).max() < 1e-3
    assert np.abs(half - cpu).max() < 0.05


def test_classifier_on_cuda_matches_cpu():
    from stem2d.models.loading import load_classifier
    from stem2d.predict.classify import classify_tiles

    tiles = np.random.default_rng(1).poisson(30.0, (64, 64, 64)).astype(np.float32)
    cpu = classify_tiles(load_classifier(), tiles)
    model = load_classifier(map_location="cuda")
    gpu = classify_tiles(model, tiles)
    assert (gpu.labels == cpu.labels).mean() >= 0.98
    np.testing.assert_allclose(gpu.probs, cpu.probs, atol=1e-3)
    half = classify_tiles(model, tiles, bf16=True)
    assert (half.labels == cpu.labels).mean() >= 0.95


def test_movie_loop_on_cuda_finds_what_the_cpu_finds(tmp_path):
    """``python infer.py device=cuda`` end to end: the networks on the GPU, the rest on the CPU."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    f1 = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / device
        subprocess.run([sys.executable, str(root / "infer.py"), f"device={device}", "synthetic.n_frames=3",
                        "outputs.video=false", "outputs.evolution=false", "outputs.tensorboard=false",
                        f"hydra.run.dir={out}"], check=True, cwd=root, capture_output=True)
        f1[device] = json.loads((out / "summary.json").read_text())["metrics"]["pipeline"]["detection"]["f1"]
    assert abs(f1["cuda"] - f1["cpu"]) < 0.02
