"""Lightning module for CAM tile classification: training, metrics, CAM localisation at test."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.figure import Figure
from torch import nn
from torchmetrics import MaxMetric, Metric, MetricCollection
from torchmetrics.aggregation import CatMetric
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)

from stem2d import CANONICAL_PIXEL_SIZE_A, TILE_SIZE_PX
from stem2d.models.cam import cam_peak
from stem2d.models.optim import optimizers_from_factories
from stem2d.output.plain import to_plain

log = logging.getLogger(__name__)

__all__ = ["CamClassifier", "GroupAccuracy"]

_STAGES = ("train", "val", "test")


class GroupAccuracy(Metric):
    """Accuracy within each group (e.g. noise mode); NaN for a group never seen."""

    full_state_update = False

    def __init__(self, num_groups: int) -> None:
        super().__init__()
        self.num_groups = num_groups
        self.add_state("correct", default=torch.zeros(num_groups), dist_reduce_fx="sum")
        self.add_state("total", default=torch.zeros(num_groups), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor, groups: torch.Tensor) -> None:
        groups = groups.long()
        self.correct.index_add_(0, groups, (preds == target).float())
        self.total.index_add_(0, groups, torch.ones_like(groups, dtype=torch.float))

    def compute(self) -> torch.Tensor:
        return torch.where(self.total > 0, self.correct / self.total.clamp_min(1), torch.nan)


def _stage_metrics(num_classes: int) -> MetricCollection:
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "f1": MulticlassF1Score(num_classes, average="macro"),
            "f1_class": MulticlassF1Score(num_classes, average="none"),
            "confmat": MulticlassConfusionMatrix(num_classes),
        },
        compute_groups=False,
    )


class CamClassifier(LightningModule):
    """Classify standardised tiles into ``class_names``; CAM-localise defects at test time.

    Parameters
    ----------
    net : nn.Module
        A GAP-linear network with ``forward`` and ``forward_with_cam`` (see
        :mod:`stem2d.models.nets`); not stored in the hyper-parameters (its ``spec()`` is
        stored in the checkpoint instead).
    optimizer : callable, optional
        ``params -> torch.optim.Optimizer`` (a Hydra ``_partial_``); None for inference only.
    scheduler : callable, optional
        ``optimizer -> LRScheduler``, stepped every epoch.
    class_names : sequence of str, keyword-only
        Class of each output, in order.
    noise_modes : sequence of str, keyword-only
        Names of the batch ``noise`` indices (test accuracy is reported per mode).
    tile_size_px : int, keyword-only
        Tile side the network was trained on (checked when loading a checkpoint).
    pixel_size_A : float, keyword-only
        Tile sampling in angstrom per pixel (converts CAM errors to angstrom).
    compile : bool, keyword-only
        ``torch.compile`` the network when fitting.
    channels_last : bool, keyword-only
        Keep the network weights in channels-last memory format (measured ~1.5x faster
        training and inference of ``CamNet`` on CPU).
    cam_examples_per_class : int, keyword-only
        Test tiles per class drawn with their CAM overlay in TensorBoard.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        *,
        class_names: Sequence[str],
        noise_modes: Sequence[str] = (),
        tile_size_px: int = TILE_SIZE_PX,
        pixel_size_A: float = CANONICAL_PIXEL_SIZE_A,
        compile: bool = False,
        channels_last: bool = True,
        cam_examples_per_class: int = 4,
    ) -> None:
        super().__init__()
        class_names = [str(c) for c in class_names]
        noise_modes = [str(m) for m in noise_modes]
        tile_size_px, pixel_size_A = int(tile_size_px), float(pixel_size_A)
        num_classes = getattr(net, "head", None) and net.head.out_features
        if num_classes != len(class_names):
            raise ValueError(
                f"CamClassifier: the network has {num_classes} outputs but class_names has "
                f"{len(class_names)} entries {class_names}"
            )
        self.save_hyperparameters(ignore=["net"])
        self.net = net.to(memory_format=torch.channels_last) if channels_last else net
        self.train_metrics = _stage_metrics(len(class_names))
        self.val_metrics = _stage_metrics(len(class_names))
        self.test_metrics = _stage_metrics(len(class_names))
        self.val_acc_best = MaxMetric()
        self.val_f1_best = MaxMetric()
        self.test_noise_acc = GroupAccuracy(max(len(noise_modes), 1))
        self.test_cam_err_px = CatMetric(nan_strategy="ignore")
        self._examples: dict[int, list[dict[str, np.ndarray]]] = {}

    @property
    def class_names(self) -> list[str]:
        return list(self.hparams.class_names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, C) of standardised tiles (B, 1, H, W)."""
        return self.net(x)

    def forward_with_cam(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, C) and the predicted class's CAM (B, H, W) in one pass."""
        return self.net.forward_with_cam(x)

    def setup(self, stage: str) -> None:
        if self.hparams.compile and stage == "fit":
            self.net.compile()

    def on_train_start(self) -> None:
        # The sanity check's validation must not count as a best value.
        self.val_acc_best.reset()
        self.val_f1_best.reset()

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch["image"], batch["label"]
        if stage == "test":
            logits, cam = self.forward_with_cam(x)
        else:
            logits, cam = self(x), None
        loss = F.cross_entropy(logits, y)
        preds = logits.argmax(dim=1)
        getattr(self, f"{stage}_metrics").update(preds, y)
        self.log(
            f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True, prog_bar=True,
            sync_dist=stage != "train", batch_size=y.shape[0],
        )
        if cam is not None:
            self._test_extras(batch, preds, cam)
        return loss, preds

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")[0]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def _test_extras(self, batch: dict[str, torch.Tensor], preds: torch.Tensor, cam: torch.Tensor) -> None:
        y, pos = batch["label"], batch["pos"].float()
        if "noise" in batch and self.hparams.noise_modes:
            self.test_noise_acc.update(preds, y, batch["noise"])
        peaks = torch.from_numpy(cam_peak(cam)).to(pos)
        use = (preds == y) & torch.isfinite(pos).all(dim=1)
        # Update even when empty, so every process takes part in the synchronised compute.
        self.test_cam_err_px.update(torch.linalg.vector_norm(peaks[use] - pos[use], dim=1))
        self._keep_examples(batch["image"], y, preds, cam, pos, peaks)

    def _keep_examples(self, x, y, preds, cam, pos, peaks) -> None:
        k = self.hparams.cam_examples_per_class
        if all(len(self._examples.get(c, [])) >= k for c in range(len(self.class_names))):
            return
        for i in range(len(y)):
            kept = self._examples.setdefault(int(y[i]), [])
            if len(kept) < k:
                kept.append(
                    {"image": x[i, 0].float().cpu().numpy(), "cam": cam[i].cpu().numpy(),
                     "pos": pos[i].cpu().numpy(), "peak": peaks[i].cpu().numpy(), "pred": int(preds[i])}
                )

    def _log_stage(self, stage: str) -> dict[str, torch.Tensor]:
        metrics = getattr(self, f"{stage}_metrics")
        res = metrics.compute()
        metrics.reset()
        self._log_epoch(f"{stage}/acc", res["acc"], prog_bar=True)
        self._log_epoch(f"{stage}/f1", res["f1"], prog_bar=stage != "train")
        for name, f1 in zip(self.class_names, res["f1_class"]):
            self._log_epoch(f"{stage}/f1_{name}", f1)
        if stage != "train" and not self.trainer.sanity_checking:
            self._add_figure(f"{stage}/confusion_matrix", confusion_figure, res["confmat"].cpu().numpy(), self.class_names)
        return res

    def _log_epoch(self, name: str, value: torch.Tensor | float, *, prog_bar: bool = False) -> None:
        # Values come from metrics already synchronised across processes: the all-reduce
        # (mean of equal numbers) only keeps Lightning's distributed bookkeeping consistent.
        self.log(name, value, prog_bar=prog_bar, sync_dist=True)

    def on_train_epoch_end(self) -> None:
        self._log_stage("train")

    def on_validation_epoch_end(self) -> None:
        res = self._log_stage("val")
        self.val_acc_best(res["acc"])
        self.val_f1_best(res["f1"])
        self._log_epoch("val/acc_best", self.val_acc_best.compute(), prog_bar=True)
        self._log_epoch("val/f1_best", self.val_f1_best.compute(), prog_bar=True)

    def on_test_epoch_start(self) -> None:
        self._examples = {}

    def on_test_epoch_end(self) -> None:
        self._log_stage("test")
        for name, acc in zip(self.hparams.noise_modes, torch.atleast_1d(self.test_noise_acc.compute())):
            if torch.isfinite(acc):
                self._log_epoch(f"test/acc_{name}", acc)
        self.test_noise_acc.reset()
        errs = self.test_cam_err_px.compute()  # an empty list when nothing was gathered
        self.test_cam_err_px.reset()
        errs = torch.atleast_1d(errs).float() if isinstance(errs, torch.Tensor) else torch.empty(0)
        if errs.numel():
            errs_A = errs * self.hparams.pixel_size_A
            self._log_epoch("test/cam_err_px_median", errs.median())
            self._log_epoch("test/cam_err_A_median", errs_A.median())
            self._log_epoch("test/cam_within_1A", (errs_A <= 1.0).float().mean())
            self._log_epoch("test/cam_within_2A", (errs_A <= 2.0).float().mean())
            self._log_epoch("test/cam_n", float(errs.numel()))
        if self._examples:
            rows = [self._examples.get(c, []) for c in range(len(self.class_names))]
            self._add_figure("test/cam_examples", cam_grid_figure, rows, self.class_names)

    def _add_figure(self, tag: str, make_figure: Callable[..., Figure], *args: Any) -> None:
        """Draw ``make_figure(*args)`` into every TensorBoard logger (rank 0 only, only if any)."""
        loggers = [lg for lg in self.loggers if isinstance(lg, TensorBoardLogger)]
        if loggers and self.trainer.is_global_zero:
            fig = make_figure(*args)
            for logger in loggers:
                logger.experiment.add_figure(tag, fig, global_step=self.global_step)

    def configure_optimizers(self) -> dict[str, Any]:
        return optimizers_from_factories(self.hparams.get("optimizer"), self.hparams.get("scheduler"),
                                         lambda: self.trainer.model.parameters(), owner="CamClassifier",
                                         monitor="val/loss")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Plain types only, so checkpoints load with torch.load(weights_only=True).
        checkpoint["stem2d"] = {"net": self.net.spec()}
        for key in ("hyper_parameters", "datamodule_hyper_parameters"):
            if key in checkpoint:
                checkpoint[key] = to_plain(checkpoint[key])


def confusion_figure(confmat: np.ndarray, class_names: Sequence[str]) -> Figure:
    """Confusion matrix (rows: true class, columns: predicted) with counts and row fractions."""
    n = len(class_names)
    frac = confmat / np.maximum(confmat.sum(axis=1, keepdims=True), 1)
    fig = Figure(figsize=(1.2 * n + 2, 1.2 * n + 1.5), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(frac, vmin=0, vmax=1, cmap="Blues")
    for (i, j), count in np.ndenumerate(confmat):
        ax.text(j, i, f"{int(count)}\n{frac[i, j]:.2f}", ha="center", va="center", fontsize=8,
                color="white" if frac[i, j] > 0.5 else "black")
    ax.set(xticks=range(n), yticks=range(n), xlabel="predicted", ylabel="true")
    ax.set_xticklabels(class_names, rotation=45, ha="right")
    ax.set_yticklabels(class_names)
    return fig


def cam_grid_figure(rows: Sequence[Sequence[dict[str, Any]]], class_names: Sequence[str]) -> Figure:
    """One row per true class: tiles with the predicted class's CAM overlaid.

    Each example is a dict with ``image`` (H, W), ``cam`` (H, W), ``pos`` and ``peak`` (2,)
    and ``pred`` (int). The true position is a green cross, the CAM peak a red circle.
    """
    ncols = max(1, max(len(r) for r in rows))
    fig = Figure(figsize=(2.0 * ncols, 2.1 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for r, examples in enumerate(rows):
        axes[r, 0].set_title(class_names[r], loc="left", fontsize=9)
        for c, ex in enumerate(examples):
            ax = axes[r, c]
            ax.imshow(ex["image"], cmap="gray")
            ax.imshow(ex["cam"], cmap="jet", alpha=0.35)
            if np.isfinite(ex["pos"]).all():
                ax.plot(ex["pos"][1], ex["pos"][0], "g+", ms=10, mew=2)
            if np.isfinite(ex["peak"]).all():
                ax.plot(ex["peak"][1], ex["peak"][0], "o", mfc="none", mec="r", ms=8)
            ax.text(1, ex["image"].shape[0] - 2, f"pred {class_names[ex['pred']]}", color="yellow", fontsize=7)
    return fig
