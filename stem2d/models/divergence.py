"""Divergence is failure: a training run whose loss is non-finite or explodes stops with an error.

Without this a run with ``model.optimizer.lr=1e3`` trained to a loss of 8.5e10, wrote its
checkpoints and metrics and exited 0; a sweep then recorded such trials as COMPLETE. The guard
raises :class:`TrainingDiverged` instead, so ``train.py`` exits with one message (status 2) and
the sweeper records the trial as FAIL (which can never be the study's best).
"""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch

__all__ = ["DivergenceGuard", "TrainingDiverged"]


class TrainingDiverged(ValueError):
    """The training loss became non-finite or exploded.

    A ``ValueError`` because it is the consequence of a setting to change (learning rate,
    momentum, loss weights), reported like every other bad setting: one message, exit status 2.
    """


class DivergenceGuard(pl.Callback):
    """Stop training when the loss is NaN/inf, or stays far above its first value.

    Parameters
    ----------
    max_factor : float, default 100
        The loss may not exceed ``max_factor`` times the reference (the first training step's
        loss of the run, kept across a resume) for ``patience_steps`` steps in a row. A
        cross-entropy of 5 classes starts at ln 5 = 1.6, so the default limit is a loss of ~160.
    patience_steps : int, default 5
        Consecutive steps above the limit before the run is stopped (a single bad batch is
        tolerated). A non-finite loss stops the run at once.

    Raises
    ------
    TrainingDiverged
        From ``on_train_batch_end``; Lightning tears the fit down and re-raises it.
    """

    def __init__(self, max_factor: float = 100.0, patience_steps: int = 5) -> None:
        super().__init__()
        if not (math.isfinite(max_factor) and max_factor > 1):
            raise ValueError(f"callbacks.divergence.max_factor={max_factor!r}: must be a finite number > 1")
        if int(patience_steps) != patience_steps or patience_steps < 1:
            raise ValueError(f"callbacks.divergence.patience_steps={patience_steps!r}: must be an integer >= 1")
        self.max_factor = float(max_factor)
        self.patience_steps = int(patience_steps)
        self.reference: float | None = None
        self._above = 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        value = float(loss.detach().float().cpu()) if isinstance(loss, torch.Tensor) else float(loss)
        reason = self._reason(value)
        # Under DDP every rank must stop together (else the others wait for it forever).
        stop = trainer.strategy.reduce_boolean_decision(reason is not None, all=False)
        if stop:
            raise TrainingDiverged(
                f"training diverged at epoch {trainer.current_epoch}, step {trainer.global_step}: "
                f"{reason or 'another process saw a diverging loss'}. The run is stopped and reported as "
                f"failed; lower the learning rate ({_learning_rate(trainer)}) or check the loss settings"
            )

    def _reason(self, value: float) -> str | None:
        if not math.isfinite(value):
            return f"the training loss is {value}"
        if self.reference is None:
            self.reference = max(abs(value), 1e-3)
            return None
        limit = self.max_factor * self.reference
        self._above = self._above + 1 if value > limit else 0
        if self._above >= self.patience_steps:
            return (f"the training loss is {value:.3g}, above {self.max_factor:g} x its first value "
                    f"({self.reference:.3g}) for {self._above} steps in a row")
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"reference": self.reference}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.reference = state_dict.get("reference")


def _learning_rate(trainer: pl.Trainer) -> str:
    """``model.optimizer.lr=<initial value>`` of the first parameter group."""
    try:
        group = trainer.optimizers[0].param_groups[0]
    except (IndexError, AttributeError):
        return "model.optimizer.lr"
    return f"model.optimizer.lr={group.get('initial_lr', group['lr']):g}"
