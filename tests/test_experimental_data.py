"""ExperimentalDataModule: labels, region split without overlap, tiles and augmentation."""

import json

import numpy as np
import pytest
import torch

from stem2d.classes import parse_kind
from stem2d.data.experimental import (
    EpochSampler,
    ExperimentalDataModule,
    augment_pair,
    defect_mask,
    region_split,
    tile_origins,
)
from stem2d.materials import get_material
from stem2d.sim.imaging import Acquisition, acquire, render_haadf
from stem2d.sim.lattice import apply_defect, mx2_columns, nearest_column

WS2 = get_material("WS2")
AUGMENT = {"dihedral": True, "gamma_range": (0.8, 1.25), "blur_probability": 0.5, "max_blur_px": 1.0,
           "dose_probability": 0.5, "peak_counts_range": (20.0, 300.0)}


def _movie_file(tmp_path, *, n_frames=2, shape=(224, 200), pixel_size_A=0.25):
    """A small .npy movie with a sidecar pixel size and a few heavy defects."""
    cols = mx2_columns(WS2, extent_A=(shape[0] * pixel_size_A, shape[1] * pixel_size_A), rotation_deg=11.0)
    for point in ((10, 12), (30, 30), (45, 15)):
        cols = apply_defect(cols, parse_kind("V_W", WS2), nearest_column(cols, point, "M"))
    clean = render_haadf(cols, shape=shape, pixel_size_A=pixel_size_A)
    stack = np.stack([acquire(clean, pixel_size_A=pixel_size_A, acq=Acquisition(dose_e_per_A2=1e5), rng=k)
                      for k in range(n_frames)])
    path = tmp_path / "movie.npy"
    np.save(path, stack)
    (tmp_path / "movie.json").write_text(json.dumps({"pixel_size_A": pixel_size_A}))
    return path


def test_defect_mask_disks():
    mask = defect_mask((20, 20), np.array([[5.0, 5.0], [15.2, 14.8]]), radius_px=2.0)
    assert mask[5, 5] and mask[5, 7] and not mask[5, 8] and not mask[7, 7]
    assert mask.sum() == 2 * 13
    assert defect_mask((5, 5), np.zeros((0, 2)), radius_px=3).sum() == 0


def test_region_split_and_tiles_never_overlap():
    (t0, t1), (v0, v1) = region_split(300, val_fraction=0.25, val_tile=64)
    assert t0 == 0 and t1 == v0 and v1 == 300 and v1 - v0 == 75
    train = tile_origins((t0, t1), 280, tile=96, stride=20)
    val = tile_origins((v0, v1), 280, tile=64, stride=64)
    occupied = np.zeros((300, 280), int)
    for r, c in train:
        assert r + 96 <= t1
        occupied[r:r + 96, c:c + 96] |= 1
    for r, c in val:
        assert r >= v0
        occupied[r:r + 64, c:c + 64] |= 2
    assert not (occupied == 3).any()
    assert occupied[:, -1].any() and occupied[t1 - 1].any()  # tiles reach the far edges
    with pytest.raises(ValueError, match="validation stripe"):
        region_split(60, val_fraction=0.5, val_tile=64)


def test_datamodule_from_file_with_fourier_labels(tmp_path):
    dm = ExperimentalDataModule(str(_movie_file(tmp_path)), label_frames=[0, 1], label_method="lattice",
                                tile_size=96, stride=24, batch_size=4, augment=AUGMENT, seed=1)
    dm.setup("fit")
    train, val = dm.datasets["train"], dm.datasets["val"]
    assert dm.pixel_size_A == 0.3 and dm.tile_size_px == 96
    # frames were resampled from 0.25 to 0.3 A/px: 224 x 200 -> 187 x 167
    frame = train.frames[0]
    assert frame.shape == (187, 167) and frame.image.shape == (187 + 2 * frame.pad, 167 + 2 * frame.pad)
    assert not frame.mask[:frame.pad].any()  # padding is never a defect
    assert all(f.n_points == 3 for f in train.frames)
    for (f, r, c) in train.origins:  # same frame: row ranges disjoint, so are the reflected borders
        for (g, rv, cv) in val.origins:
            if f == g:
                assert r + train.tile <= rv
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 1, 96, 96) and batch["mask"].shape == (4, 1, 96, 96)
    assert batch["image"].dtype == torch.float32 and set(batch["mask"].unique().tolist()) <= {0.0, 1.0}
    vb = next(iter(dm.val_dataloader()))
    assert vb["image"].shape[-1] == val.tile
    with pytest.raises(ValueError, match="truth"):
        ExperimentalDataModule(str(tmp_path / "movie.npy"), label_method="truth", tile_size=64).setup("fit")


def test_datamodule_synthetic_truth_and_errors(tmp_path):
    dm = ExperimentalDataModule(None, label_method="truth", n_movies=2, tile_size=64, stride=32,
                                synthetic={"frame_shape": (160, 192), "pixel_size_A": 0.3})
    dm.setup("fit")
    frames = dm.datasets["train"].frames
    assert len(frames) == 2 and frames[0].shape == (160, 192)
    assert frames[0].n_points > 0 and frames[0].mask.sum() > 0
    with pytest.raises(ValueError, match="label_method"):
        ExperimentalDataModule(None, label_method="magic")
    with pytest.raises(FileNotFoundError, match="nope.tif"):
        ExperimentalDataModule(str(tmp_path / "nope.tif"))
    with pytest.raises(ValueError, match="tile_size"):
        ExperimentalDataModule(None, tile_size=100)


def test_augmentation_moves_mask_with_image():
    image = np.zeros((32, 32))
    image[5:8, 20:23] = 10.0
    mask = image > 0
    for seed in range(12):
        x, m = augment_pair(image, mask, np.random.default_rng(seed), **{**AUGMENT, "dose_probability": 0.0,
                                                                          "blur_probability": 0.0})
        assert m.sum() == 9 and x[m].min() > x[~m].max()


def test_epoch_sampler_changes_augmentation_each_epoch():
    s = EpochSampler(5, samples_per_epoch=12, seed=0)
    first = list(s)
    s.set_epoch(1)
    second = list(s)
    assert len(first) == 12 and sorted({i % 5 for i in first}) == list(range(5))
    assert len(set(first)) == 12 and not set(first) & set(second)
