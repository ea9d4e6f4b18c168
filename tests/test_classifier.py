"""CamClassifier on a tiny stand-in datamodule of Gaussian blobs (no simulator needed)."""

import functools

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from stem2d.models.classifier import CamClassifier, GroupAccuracy
from stem2d.models.nets import CamNet
from stem2d.models.preprocess import standardize_tiles

CLASSES = ("pristine", "bright", "dark")
NOISES = ("low", "high")


class BlobTiles(Dataset):
    """Class 0: noise only; 1: a bright blob; 2: a dark blob, at a random position near the centre."""

    def __init__(self, n: int, seed: int, size: int = 32) -> None:
        rng = np.random.default_rng(seed)
        self.label = np.arange(n) % len(CLASSES)
        self.noise = rng.integers(0, len(NOISES), n)
        self.pos = np.where(self.label[:, None] > 0, rng.uniform(size / 2 - 6, size / 2 + 6, (n, 2)), np.nan)
        yy, xx = np.mgrid[:size, :size]
        img = rng.normal(0, 1, (n, size, size)) * (0.5 + 0.5 * self.noise[:, None, None])
        for i in np.flatnonzero(self.label > 0):
            sign = 1.0 if self.label[i] == 1 else -1.0
            img[i] += 4 * sign * np.exp(-((yy - self.pos[i, 0]) ** 2 + (xx - self.pos[i, 1]) ** 2) / (2 * 1.5**2))
        self.image = standardize_tiles(img)[:, None]

    def __len__(self) -> int:
        return len(self.label)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {
            "image": torch.from_numpy(self.image[i]),
            "label": torch.tensor(self.label[i]),
            "pos": torch.tensor(self.pos[i], dtype=torch.float32),
            "noise": torch.tensor(self.noise[i]),
        }


class BlobDataModule(pl.LightningDataModule):
    class_names, noise_modes = CLASSES, NOISES

    def setup(self, stage=None):
        self.sets = {"train": BlobTiles(384, 0), "val": BlobTiles(96, 1), "test": BlobTiles(192, 2)}

    def train_dataloader(self):
        return DataLoader(self.sets["train"], batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))

    def val_dataloader(self):
        return DataLoader(self.sets["val"], batch_size=96)

    def test_dataloader(self):
        return DataLoader(self.sets["test"], batch_size=64)


def _model(**kw):
    return CamClassifier(
        CamNet(3, channels=(8, 16, 32)),
        optimizer=functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9),
        class_names=CLASSES, noise_modes=NOISES, tile_size_px=32, **kw,
    )


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    pl.seed_everything(0, verbose=False)
    tmp = tmp_path_factory.mktemp("blobs")
    model = _model()
    trainer = pl.Trainer(
        max_epochs=6, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp, enable_checkpointing=False,
    )
    dm = BlobDataModule()
    trainer.fit(model, datamodule=dm)
    fit_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    test_metrics = trainer.test(model, datamodule=dm, verbose=False)[0]
    ckpt = tmp / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    return model, fit_metrics, test_metrics, ckpt


def test_learns_blobs_and_reports_every_metric(fitted):
    _, fit, test, _ = fitted
    for key in ["val/acc", "val/f1", "val/acc_best", "val/f1_best", "train/acc", "val/f1_bright"]:
        assert key in fit
    assert fit["val/f1_best"] >= fit["val/f1"] - 1e-6
    assert test["test/acc"] > 0.9
    for name in CLASSES:
        assert 0.0 <= test[f"test/f1_{name}"] <= 1.0
    for noise in NOISES:
        assert f"test/acc_{noise}" in test


def test_cam_localises_blobs(fitted):
    _, _, test, _ = fitted
    # Blob centres are within +-6 px of the tile centre; the CAM must do much better than that.
    assert test["test/cam_err_px_median"] < 2.0
    assert test["test/cam_err_A_median"] == pytest.approx(0.3 * test["test/cam_err_px_median"], rel=1e-5)
    assert 0 < test["test/cam_n"] <= 128  # defect tiles only (2/3 of 192)
    assert test["test/cam_within_1A"] <= test["test/cam_within_2A"]


def test_checkpoint_is_plain_and_self_describing(fitted):
    model, _, _, ckpt_path = fitted
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)  # no pickled objects
    hp = ckpt["hyper_parameters"]
    assert hp["class_names"] == list(CLASSES)
    assert hp["tile_size_px"] == 32 and hp["pixel_size_A"] == pytest.approx(0.3)
    assert ckpt["stem2d"]["net"] == model.net.spec()
    assert "net" not in hp


def test_class_count_mismatch_is_named():
    with pytest.raises(ValueError, match="3 outputs but class_names has 2"):
        CamClassifier(CamNet(3), class_names=("a", "b"))


def test_inference_only_model_cannot_train():
    model = CamClassifier(CamNet(2), class_names=("a", "b"))
    with pytest.raises(ValueError, match="no optimizer"):
        model.configure_optimizers()


def test_group_accuracy():
    metric = GroupAccuracy(3)
    metric.update(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 0, 2]), torch.tensor([0, 0, 0, 2]))
    acc = metric.compute()
    torch.testing.assert_close(acc[[0, 2]], torch.tensor([2 / 3, 1.0]))
    assert torch.isnan(acc[1])
