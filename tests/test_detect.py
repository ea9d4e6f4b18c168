"""Tiled prediction with seamless stitching, and blob extraction."""

import numpy as np
import pytest
import torch

from stem2d.models.preprocess import standardize_tiles
from stem2d.models.unet import UNet
from stem2d.predict import pixelmap
from stem2d.predict.pixelmap import (
    auto_tile_px,
    detect_defects,
    extract_defects,
    predict_frame,
    tile_windows,
)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    net = UNet(channels=(4, 8, 16))
    for m in net.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def _whole(net, frame):
    with torch.inference_mode():
        x = torch.from_numpy(standardize_tiles(frame))[None, None]
        return torch.sigmoid(net(x))[0, 0].numpy()


def test_windows_partition_of_unity():
    tile, overlap, margin = 64, 32, 8
    wins = tile_windows(tile, overlap, margin, 3)
    total = np.zeros(tile + 2 * (tile - overlap))
    for i, w in enumerate(wins):
        total[i * (tile - overlap):i * (tile - overlap) + tile] += w
    assert np.allclose(total, 1.0)
    assert wins[1][:margin].max() == 0 and wins[0][0] == 1 and wins[-1][-1] == 1


def test_stitching_matches_whole_frame_output(net):
    rng = np.random.default_rng(0)
    frame = rng.normal(size=(136, 168)).astype(np.float32)  # multiples of 4: whole-frame reference
    stitched = predict_frame(net, frame, tile=96)  # 4 x 5 tiles of 96 px, stride 32
    reference = _whole(net, frame)
    r = net.receptive_radius_px
    assert stitched.shape == frame.shape and stitched.dtype == np.float32
    assert np.abs(stitched - reference)[r:-r, r:-r].max() < 1e-4
    # one tile for the whole frame agrees too
    assert np.abs(predict_frame(net, frame, tile=None) - stitched).max() < 1e-4


def test_large_frames_are_tiled_automatically_and_seamlessly(net, monkeypatch):
    """tile=None tiles a frame larger than MAX_WHOLE_FRAME_PX (bounded memory) with the same
    output as the whole frame at once."""
    assert auto_tile_px((512, 512), margin=24) is None
    for side in (1100, 2048, 4096):  # balanced tiles: no larger, no more of them than AUTO_TILE_PX ones
        tile = auto_tile_px((side, side), margin=24, size_multiple=4, overlap=64)
        assert tile <= pixelmap.AUTO_TILE_PX and tile % 4 == 0
        n, covered = pixelmap._layout(side, tile=tile, stride=tile - 64, margin=24)
        assert covered >= side + 48
        assert n == pixelmap._layout(side, tile=pixelmap.AUTO_TILE_PX, stride=pixelmap.AUTO_TILE_PX - 64, margin=24)[0]
    frame = np.random.default_rng(3).normal(size=(136, 168)).astype(np.float32)
    reference = predict_frame(net, frame, tile=None)
    monkeypatch.setattr(pixelmap, "MAX_WHOLE_FRAME_PX", 128)
    monkeypatch.setattr(pixelmap, "AUTO_TILE_PX", 96)
    calls = []
    forward = net.forward
    monkeypatch.setattr(net, "forward", lambda x: calls.append(tuple(x.shape)) or forward(x))
    tiled = predict_frame(net, frame)
    assert calls and all(shape[-2:] == (96, 96) for shape in calls)
    assert np.abs(tiled - reference).max() < 1e-4


def test_constant_frame_gives_constant_map(net):
    prob = predict_frame(net, np.full((100, 120), 7.0), tile=96)
    assert np.ptp(prob) < 1e-5


def test_small_and_odd_frames_are_padded(net):
    rng = np.random.default_rng(1)
    small = rng.normal(size=(37, 50))
    assert predict_frame(net, small, tile=96).shape == (37, 50)
    assert predict_frame(net, rng.normal(size=(16, 20))).shape == (16, 20)  # one padded tile
    odd = rng.normal(size=(131, 97))
    assert predict_frame(net, odd, tile=96).shape == (131, 97)
    with pytest.raises(ValueError, match="sides >= 16"):
        predict_frame(net, rng.normal(size=(8, 50)))
    with pytest.raises(ValueError, match="multiples of 4"):
        predict_frame(net, small, tile=90)
    with pytest.raises(ValueError, match="NaN"):
        predict_frame(net, np.full((32, 32), np.nan))


def test_extract_defects_recovers_blob_centres():
    rng = np.random.default_rng(2)
    centres = np.array([[20.3, 30.7], [60.5, 80.2], [90.1, 15.9], [45.0, 110.6]])
    rr, cc = np.indices((128, 128))
    prob = np.zeros((128, 128))
    for r, c in centres:
        prob = np.maximum(prob, 0.95 * np.exp(-((rr - r) ** 2 + (cc - c) ** 2) / (2 * 2.0**2)))
    prob += rng.uniform(0, 0.05, prob.shape)
    pos, scores = extract_defects(prob, threshold=0.5)
    order = np.argsort(pos[:, 0])
    assert len(pos) == 4
    assert np.abs(pos[order] - centres[np.argsort(centres[:, 0])]).max() < 0.5
    assert np.all((scores > 0.9) & (scores <= 1.0))
    # area limits and merging
    assert len(extract_defects(prob, threshold=0.5, max_area_px=5)[0]) == 0
    pair = np.zeros((40, 40)); pair[10:13, 10:13] = 0.9; pair[10:13, 14:17] = 0.8
    assert len(extract_defects(pair)[0]) == 2
    merged, s = extract_defects(pair, min_dist_px=5)
    assert len(merged) == 1 and s[0] == pytest.approx(0.9)
    assert extract_defects(np.zeros((10, 10)))[0].shape == (0, 2)


def test_detect_defects_maps_back_to_input_pixels():
    class Spot(torch.nn.Module):
        """Fake fully convolutional net: high logit where the standardised image is bright."""
        size_multiple, receptive_radius_px = 1, 0

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, x):
            return 20 * (x - 3.0) * self.w

    frame = np.zeros((100, 120), np.float32)
    rr, cc = np.indices(frame.shape)
    frame += np.exp(-((rr - 40.0) ** 2 + (cc - 70.0) ** 2) / (2 * 3.0**2))  # a blob at (40, 70)
    pos, _ = detect_defects(Spot(), frame, pixel_size_A=0.15, tile=None)  # canonical is 2x smaller
    assert len(pos) == 1 and np.abs(pos[0] - [40, 70]).max() < 0.5
