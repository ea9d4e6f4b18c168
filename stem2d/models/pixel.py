"""Lightning module for pixel-wise defect prediction (``model=unet``) and its checkpoint loader.

The network maps a standardised tile (B, 1, H, W) to defect logits (B, 1, H, W); the target is a
binary mask (a disk at every defect site). Loss: BCE, focal or soft Dice, or a sum of them
(``"bce+dice"``). Metrics: pixel F1 and IoU (torchmetrics, threshold 0.5) per stage, and
``val/f1_best`` (the run's ``optimized_metric``). Mask pixels equal to ``stem2d.MASK_IGNORE``
(uncertain pseudo-labels, ``experiment=adapt``) carry neither loss nor metric.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torchmetrics import MaxMetric, MetricCollection
from torchmetrics.classification import BinaryF1Score, BinaryJaccardIndex

from stem2d import CANONICAL_PIXEL_SIZE_A, MASK_IGNORE
from stem2d.models.optim import optimizers_from_factories
from stem2d.models.unet import UNet
from stem2d.output.plain import to_plain

log = logging.getLogger(__name__)

__all__ = ["LOSSES", "PixelPredictor", "pretrained_unet"]


def _mean(values: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Mean over the labelled pixels (all pixels when ``valid`` is None)."""
    if valid is None:
        return values.mean()
    return (values * valid).sum() / valid.sum().clamp_min(1.0)


def bce_loss(logits: torch.Tensor, target: torch.Tensor, *, pos_weight: float = 1.0,
             valid: torch.Tensor | None = None, **_: Any) -> torch.Tensor:
    """Binary cross-entropy with logits; ``pos_weight`` up-weights the (rare) defect pixels;
    ``valid`` (0/1, same shape) leaves unlabelled pixels out."""
    bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=logits.new_tensor(pos_weight),
                                             reduction="none")
    return _mean(bce, valid)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, *, focal_gamma: float = 2.0,
               focal_alpha: float = 0.75, valid: torch.Tensor | None = None, **_: Any) -> torch.Tensor:
    """Focal loss (Lin et al. 2017): BCE down-weighted by ``(1 - p_t)^gamma`` on easy pixels,
    ``alpha`` for defect pixels and ``1 - alpha`` for the background."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = torch.exp(-bce)
    alpha = focal_alpha * target + (1 - focal_alpha) * (1 - target)
    return _mean(alpha * (1 - p_t) ** focal_gamma * bce, valid)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, *, valid: torch.Tensor | None = None,
              **_: Any) -> torch.Tensor:
    """Soft Dice loss ``1 - 2|P T| / (|P| + |T|)`` over the whole batch (smoothed by 1 px)."""
    p = torch.sigmoid(logits)
    if valid is not None:
        p, target = p * valid, target * valid
    inter = (p * target).sum()
    return 1 - (2 * inter + 1) / (p.sum() + target.sum() + 1)


#: Loss terms by name; a model's ``loss`` is one name or several joined by ``+``.
LOSSES: dict[str, Callable[..., torch.Tensor]] = {"bce": bce_loss, "focal": focal_loss, "dice": dice_loss}


def _parse_loss(loss: str) -> list[str]:
    terms = [t.strip() for t in str(loss).split("+")]
    bad = [t for t in terms if t not in LOSSES]
    if not terms or bad:
        raise ValueError(f"model.loss={loss!r}: unknown term(s) {bad}; use {sorted(LOSSES)} joined by '+'")
    return terms


def _stage_metrics() -> MetricCollection:
    return MetricCollection({"f1": BinaryF1Score(), "iou": BinaryJaccardIndex()})


class PixelPredictor(LightningModule):
    """Train a pixel network on (tile, defect mask) pairs.

    Parameters
    ----------
    net : nn.Module
        Fully convolutional network returning one logit channel (a :class:`UNet`); not stored
        in the hyper-parameters (its ``spec()`` goes into the checkpoint).
    optimizer : callable, optional
        ``params -> torch.optim.Optimizer`` (a Hydra ``_partial_``); None for inference only.
    scheduler : callable, optional
        ``optimizer -> LRScheduler``, stepped every epoch.
    loss : str, keyword-only, default ``"bce+dice"``
        ``bce``, ``focal``, ``dice`` or a sum such as ``focal+dice``.
    pos_weight : float, keyword-only, default 1
        BCE weight of defect pixels.
    focal_gamma, focal_alpha : float, keyword-only, default 2, 0.75
        Focal-loss focusing exponent and defect-class weight.
    class_names : sequence of str, keyword-only
        Names of the two pixel classes (from the data module).
    tile_size_px : int, keyword-only
        Training tile side.
    pixel_size_A : float, keyword-only, default 0.3
        Sampling the network was trained at (frames are resampled to it before prediction).
    material : str, keyword-only, default ``"WS2"``
    label_method : str, keyword-only, default ``"fourier"``
        How the training masks were made (recorded for provenance).
    channels_last : bool, keyword-only, default True
        Keep weights channels-last (~2x faster convolutions on CPU, measured).
    compile : bool, keyword-only, default False
        ``torch.compile`` the network when fitting.
    n_image_examples : int, keyword-only, default 4
        Validation tiles drawn as ``input | label | prediction`` in TensorBoard each epoch.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        *,
        loss: str = "bce+dice",
        pos_weight: float = 1.0,
        focal_gamma: float = 2.0,
        focal_alpha: float = 0.75,
        class_names: Sequence[str] = ("background", "defect"),
        tile_size_px: int = 256,
        pixel_size_A: float = CANONICAL_PIXEL_SIZE_A,
        material: str = "WS2",
        label_method: str = "fourier",
        channels_last: bool = True,
        compile: bool = False,
        n_image_examples: int = 4,
    ) -> None:
        super().__init__()
        class_names = [str(c) for c in class_names]
        if len(class_names) != 2:
            raise ValueError(f"PixelPredictor: class_names must name 2 pixel classes, got {class_names}")
        self._loss_terms = _parse_loss(loss)
        tile_size_px, pixel_size_A = int(tile_size_px), float(pixel_size_A)
        self.save_hyperparameters(ignore=["net"])
        self.net = net.to(memory_format=torch.channels_last) if channels_last else net
        self.train_metrics = _stage_metrics()
        self.val_metrics = _stage_metrics()
        self.test_metrics = _stage_metrics()
        self.val_f1_best = MaxMetric()
        self._examples: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, 1, H, W) of standardised tiles (B, 1, H, W)."""
        return self.net(x)

    def setup(self, stage: str) -> None:
        if self.hparams.compile and stage == "fit":
            self.net.compile()

    def on_train_start(self) -> None:
        self.val_f1_best.reset()  # the sanity check must not count as a best value

    def loss(self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Sum of the configured loss terms (over the ``valid`` pixels, if given)."""
        h = self.hparams
        kw = {"pos_weight": h.pos_weight, "focal_gamma": h.focal_gamma, "focal_alpha": h.focal_alpha,
              "valid": valid}
        return sum(LOSSES[t](logits, target, **kw) for t in self._loss_terms)

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch["image"], batch["mask"].float()
        ignored = y == MASK_IGNORE
        valid = None
        if ignored.any():
            valid = (~ignored).float()
            y = y * valid
        logits = self(x)
        loss = self.loss(logits, y, valid)
        prob = torch.sigmoid(logits).detach()
        if valid is None:
            getattr(self, f"{stage}_metrics").update(prob, y.long())
        elif not ignored.all():
            getattr(self, f"{stage}_metrics").update(prob[~ignored], y[~ignored].long())
        self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True, prog_bar=True,
                 sync_dist=stage != "train", batch_size=x.shape[0])
        if stage == "val" and len(self._examples) < self.hparams.n_image_examples:
            k = self.hparams.n_image_examples - len(self._examples)
            p = torch.sigmoid(logits[:k]).detach()
            self._examples += list(torch.cat([_unit(x[:k]), y[:k], p], dim=-1).cpu())
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def _log_stage(self, stage: str) -> dict[str, torch.Tensor]:
        metrics = getattr(self, f"{stage}_metrics")
        res = metrics.compute()
        metrics.reset()
        self.log(f"{stage}/f1", res["f1"], prog_bar=stage != "train")
        self.log(f"{stage}/iou", res["iou"])
        return res

    def on_train_epoch_end(self) -> None:
        self._log_stage("train")

    def on_validation_epoch_start(self) -> None:
        self._examples = []

    def on_validation_epoch_end(self) -> None:
        res = self._log_stage("val")
        self.val_f1_best(res["f1"])
        self.log("val/f1_best", self.val_f1_best.compute(), prog_bar=True)
        if self._examples and not self.trainer.sanity_checking and self.trainer.is_global_zero:
            grid = torch.cat(self._examples, dim=-2)  # rows of input | label | prediction
            for logger in self.loggers:
                if isinstance(logger, TensorBoardLogger):
                    logger.experiment.add_image("val/input_label_prediction", grid, self.global_step)

    def on_test_epoch_end(self) -> None:
        self._log_stage("test")

    def configure_optimizers(self) -> dict[str, Any]:
        return optimizers_from_factories(self.hparams.get("optimizer"), self.hparams.get("scheduler"),
                                         lambda: self.trainer.model.parameters(), owner="PixelPredictor")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # plain types only, so checkpoints load with torch.load(weights_only=True)
        checkpoint["stem2d"] = {"net": self.net.spec()}
        for key in ("hyper_parameters", "datamodule_hyper_parameters"):
            if key in checkpoint:
                checkpoint[key] = to_plain(checkpoint[key])


def _unit(x: torch.Tensor) -> torch.Tensor:
    """Min-max scale each image of (B, 1, H, W) to [0, 1] for display."""
    lo = x.amin(dim=(-2, -1), keepdim=True)
    hi = x.amax(dim=(-2, -1), keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(1e-6)


def pretrained_unet(path: str | Path | None = None, *, channels: Sequence[int] | None = None,
                    convs_per_block: int | None = None, num_classes: int | None = None) -> UNet:
    """The network of a PixelPredictor checkpoint, in training mode, to fine-tune (``experiment=adapt``).

    Parameters
    ----------
    path : path, optional
        Checkpoint (full or slim); None: the bundled ``stem2d/weights/unet_ws2.ckpt``.
    channels, convs_per_block, num_classes : optional
        The architecture keys of ``conf/model/unet.yaml`` (``num_classes`` filled in from the
        data by ``build_model``); when given they must agree with the
        checkpoint (a mismatch is an error naming both), so a config cannot silently describe
        another network than the one trained.
    """
    if path is None:
        from stem2d.models.loading import weights_dir

        path = weights_dir() / "unet_ws2.ckpt"
    from stem2d.models.loading import load_pixel_predictor

    net = load_pixel_predictor(path).net
    spec = net.spec()
    for key, given in (("channels", channels), ("convs_per_block", convs_per_block), ("num_classes", num_classes)):
        have = spec.get(key)
        if given is not None and have is not None and list(np.atleast_1d(given)) != list(np.atleast_1d(have)):
            raise ValueError(f"model.net.{key}={list(np.atleast_1d(given))} but {path} holds a U-Net with "
                             f"{key}={have}")
    return net.train()
