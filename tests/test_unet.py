"""U-Net shapes, PixelPredictor losses/metrics/checkpoints, the train.py smoke run and the bundled net."""

import json
from pathlib import Path
from unittest import mock

import pandas as pd
import pytest
import torch

from stem2d.models.loading import load_pixel_predictor, save_slim_checkpoint
from stem2d.models.pixel import LOSSES, PixelPredictor
from stem2d.models.unet import UNet, build_unet
from tests.train_helpers import compose_train

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "stem2d" / "weights" / "unet_ws2.ckpt"
FAST = ROOT / "stem2d" / "weights" / "unet_ws2_fast.ckpt"  # the speed preset: half the full-resolution channels


@pytest.mark.parametrize("channels,shape", [((8, 16, 32), (2, 1, 64, 96)), ((4, 8), (1, 1, 32, 32)),
                                            ((4, 8, 16, 32), (1, 1, 48, 80))])
def test_unet_shapes_and_spec(channels, shape):
    net = UNet(channels=channels).eval()
    out = net(torch.randn(*shape))
    assert out.shape == (shape[0], 1, *shape[2:]) and out.dtype == torch.float32
    assert net.size_multiple == 2 ** (len(channels) - 1)
    again = build_unet(net.spec())
    again.load_state_dict(net.state_dict())
    assert torch.equal(again.eval()(torch.ones(*shape)), net(torch.ones(*shape)))
    assert UNet(5, channels=channels)(torch.randn(*shape)).shape[1] == 5


def test_unet_receptive_radius_is_exact():
    torch.manual_seed(0)  # a random net can have dead ReLUs that hide part of the field
    net = UNet(channels=(4, 8, 16)).eval()
    reach = []
    for p in range(48, 52):  # every position relative to the pooling grid
        x = torch.randn(1, 1, 96, 96, requires_grad=True)
        net(x)[0, 0, p, p].backward()
        rows = torch.nonzero(x.grad[0, 0].abs().sum(dim=1) > 0).flatten()
        reach.append(max(p - rows.min().item(), rows.max().item() - p))
    assert max(reach) == net.receptive_radius_px


def test_unet_bad_input():
    with pytest.raises(ValueError, match="multiples of 4"):
        UNet()(torch.zeros(1, 1, 30, 32))
    with pytest.raises(ValueError, match="levels"):
        UNet(channels=(8,))
    with pytest.raises(ValueError, match="not 'UNet'"):
        build_unet({"name": "CamNet"})


@pytest.mark.parametrize("loss", ["bce", "focal", "dice", "bce+dice", "focal+dice"])
def test_losses_prefer_the_right_answer(loss):
    model = PixelPredictor(UNet(channels=(4, 8)), loss=loss)
    target = torch.zeros(2, 1, 16, 16)
    target[:, :, 4:8, 4:8] = 1
    good = model.loss(20 * (2 * target - 1), target)
    bad = model.loss(-20 * (2 * target - 1), target)
    assert torch.isfinite(good) and good < bad
    with pytest.raises(ValueError, match="unknown term"):
        PixelPredictor(UNet(channels=(4, 8)), loss="bce+l2")
    assert set(LOSSES) == {"bce", "focal", "dice"}


def test_slim_checkpoint_roundtrip(tmp_path):
    net = UNet(channels=(4, 8, 16))
    model = PixelPredictor(net, pixel_size_A=0.3, material="WS2", label_method="truth")
    ckpt = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams), "optimizer_states": [1]}
    model.on_save_checkpoint(ckpt)
    torch.save(ckpt, tmp_path / "full.ckpt")
    slim = save_slim_checkpoint(tmp_path / "full.ckpt", tmp_path / "slim.ckpt", extra={"command": "x"})
    loaded = load_pixel_predictor(slim)
    assert loaded.hparams.pixel_size_A == 0.3 and loaded.hparams.material == "WS2"
    assert "optimizer_states" not in torch.load(slim, weights_only=True)
    x = torch.randn(1, 1, 32, 32)
    assert torch.allclose(loaded(x), model.eval()(x))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pixel_predictor(tmp_path / "missing.ckpt")


def test_train_fast_dev_run(tmp_path):
    """experiment=exp_unet composed the way the CLI does; a small synthetic movie, one batch per stage."""
    from stem2d.pipeline.train import train

    overrides = [
        "experiment=exp_unet", "+trainer.fast_dev_run=true", "data.label_method=lattice",
        "data.tile_size=64", "data.batch_size=2",
        "+data.synthetic.frame_shape=[160,160]",
    ]
    cfg = compose_train(tmp_path, overrides)
    assert cfg.model._target_ == "stem2d.models.pixel.PixelPredictor"
    value = train(cfg)
    assert 0.0 <= value <= 1.0
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["optimized_metric"] == "val/f1_best" and "test/f1" in summary["metrics"]


@pytest.mark.parametrize("path", [BUNDLED, FAST], ids=["unet_ws2", "unet_ws2_fast"])
def test_bundled_unet_meets_floor_on_fresh_movie(path):
    """The shipped U-Nets on a held-out synthetic movie (seeds never used in training)."""
    assert path.is_file(), f"the bundled U-Net {path} is missing"
    from stem2d.predict.pixelmap import detect_defects
    from stem2d.predict.scoring import score_detections
    from stem2d.sim.movie import MovieConfig, simulate_movie

    model = load_pixel_predictor(path)
    assert model.hparams.pixel_size_A == 0.3
    rows = []
    truth = []
    for seed, ps in ((90001, 0.2), (90002, 0.3), (90003, 0.25), (90004, 0.35)):
        movie = simulate_movie(MovieConfig(n_frames=1, frame_shape=(384, 384), pixel_size_A=ps), seed)
        pos, _ = detect_defects(model.net, movie.frames[0], pixel_size_A=ps)
        rows.append(pd.DataFrame({"frame": seed, "row": pos[:, 0] * ps, "col": pos[:, 1] * ps, "class": "d"}))
        t = movie.truth[movie.truth["frame"] == 0]
        truth.append(pd.DataFrame({"frame": seed, "row": t["row"] * ps, "col": t["col"] * ps, "class": "d"}))
    res = score_detections(pd.concat(rows), pd.concat(truth), max_dist_px=1.5)["detection"]  # in angstrom
    assert res["n_true"] >= 50
    assert res["recall"] >= 0.9 and res["precision"] >= 0.9, res


def test_fuse_batchnorm_keeps_outputs():
    """Folding the BatchNorms into the convolutions changes the logits only by float rounding."""
    from stem2d.models.unet import fuse_batchnorm

    torch.manual_seed(0)
    net = UNet(channels=(4, 8)).train()
    net(torch.randn(4, 1, 32, 32))  # move the running statistics away from (0, 1)
    net.eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        ref, fused = net(x), fuse_batchnorm(net)(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fuse_batchnorm(net).modules())
    torch.testing.assert_close(fused, ref, atol=1e-4, rtol=1e-4)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())  # the original is untouched


@pytest.mark.parametrize("channels_last", [False, True])
def test_for_inference_splits_skips_and_keeps_outputs(channels_last):
    """The prediction copy (BatchNorms folded, every decoder's first convolution split into one
    on the upsampled features and one on the skip) gives the training network's logits to float
    rounding, in either memory format, and never concatenates."""
    from stem2d.models.unet import SkipConv, for_inference

    torch.manual_seed(1)
    net = UNet(channels=(4, 8, 16)).train()
    net(torch.randn(4, 1, 32, 32))
    net.eval()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    fast = for_inference(net)
    assert sum(isinstance(m, SkipConv) for m in fast.modules()) == len(net.decoders) == 2
    x = torch.randn(2, 1, 48, 40)
    with torch.no_grad(), mock.patch("torch.cat", side_effect=AssertionError("concatenated")):
        out = fast(x)
    with torch.no_grad():
        torch.testing.assert_close(out, net(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("shape", [(2, 8, 16, 12), (1, 1, 8, 8), (3, 16, 2, 6)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_maxpool2x2_equals_maxpool2d(shape, channels_last):
    from stem2d.models.unet import MaxPool2x2

    x = torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    assert torch.equal(MaxPool2x2()(x), torch.nn.MaxPool2d(2)(x))
    with pytest.raises(ValueError, match="even"):
        MaxPool2x2()(x[..., :-1])


def test_fused_convolutions_match_the_plain_modules_and_step_aside():
    """The prediction copy's fused oneDNN convolutions (ReLU and skip addition as post-ops) give
    the plain modules' logits; with gradients on, under autocast or where the fused op is
    missing, the plain modules run (gradients reach the input)."""
    from stem2d.models import fused
    from stem2d.models.unet import for_inference

    torch.manual_seed(2)
    fast = for_inference(UNet(channels=(4, 8)).eval().to(memory_format=torch.channels_last))
    # the encoders' 4 convolutions and the decoder's second; its first (the split one) takes its ReLU
    assert sum(isinstance(m, fused.ConvReLU) for m in fast.modules()) == 5 and fast.decoders[0][0].relu
    assert not any(isinstance(m, torch.nn.ReLU) for m in fast.modules())
    x = torch.randn(1, 1, 40, 32)
    with torch.no_grad():
        assert fused.fusable(x) == torch.backends.mkldnn.is_available()  # the fused calls run where oneDNN is
        got = fast(x)
        with mock.patch.object(fused, "_available", return_value=False):
            plain = fast(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not fused.fusable(x) and fast(x).dtype == torch.bfloat16
    torch.testing.assert_close(got, plain, atol=1e-5, rtol=1e-5)
    x.requires_grad_(True)
    fast(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_split_skip_convolution_keeps_one_rounding_under_autocast():
    """Under bf16 autocast the prediction copy convolves the concatenation, as the training
    network does (two bf16 convolutions added would round twice): the same logits exactly."""
    from stem2d.models.unet import for_inference, fuse_batchnorm

    torch.manual_seed(4)
    net = UNet(channels=(4, 8)).eval()
    x = torch.randn(1, 1, 32, 24)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        torch.testing.assert_close(for_inference(net)(x), fuse_batchnorm(net)(x), atol=0, rtol=0)
