"""Lightning callback that reports a monitored metric to the trial's study and prunes.

``train.py`` adds it in one line::

    callback = pruning_callback_from_cfg(cfg)   # None outside an Optuna sweep
    callbacks += [callback] if callback is not None else []

Written here instead of using ``optuna-integration``'s ``PyTorchLightningPruningCallback``
because the trial lives in another process (the sweeper's) and must be re-opened from
storage, which that callback does not do. Pruning assumes single-process training (CPU or one
GPU); under DDP every rank would report the same (synced) metric.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl

from stem2d.sweeper.reporting import TrialLink, TrialReporter

__all__ = ["OptunaPruningCallback", "pruning_callback_from_cfg"]


class OptunaPruningCallback(pl.Callback):
    """After each validation epoch: ``trial.report(monitor, epoch)``; stop if pruned.

    Parameters
    ----------
    monitor : str
        Metric name in ``trainer.callback_metrics`` (e.g. ``"val/f1_best"``).
    link : TrialLink, keyword-only
        Study name, storage URL, trial number and pruner config of the running trial.

    Raises
    ------
    optuna.TrialPruned
        From ``on_validation_end`` when the pruner stops the trial; Lightning tears the
        fit down and re-raises it, the sweeper records the trial as PRUNED.
    """

    def __init__(self, monitor: str, *, link: TrialLink) -> None:
        super().__init__()
        self.monitor = monitor
        self.reporter = TrialReporter(link)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise ValueError(
                f"OptunaPruningCallback: metric {self.monitor!r} was not logged; logged metrics: "
                f"{sorted(trainer.callback_metrics)}"
            )
        self.reporter.report(float(value), step=trainer.current_epoch)


def pruning_callback_from_cfg(
    cfg: Mapping[str, Any], *, monitor: str | None = None
) -> OptunaPruningCallback | None:
    """The pruning callback for a sweep job, or None when ``cfg`` has no ``optuna`` node.

    Parameters
    ----------
    cfg : mapping
        The job's composed config (DictConfig).
    monitor : str or None, keyword-only
        Metric to report; default ``cfg.optimized_metric`` (the sweep objective).
    """
    link = TrialLink.from_cfg(cfg)
    if link is None:
        return None
    monitor = monitor if monitor is not None else cfg.get("optimized_metric")
    if not monitor:
        raise ValueError("pruning_callback_from_cfg needs `monitor` or cfg.optimized_metric")
    return OptunaPruningCallback(str(monitor), link=link)
