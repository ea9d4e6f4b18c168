"""Optimizer and scheduler from the Hydra ``_partial_`` factories a LightningModule was given."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def optimizers_from_factories(
    make_optimizer: Callable | None,
    make_scheduler: Callable | None,
    params: Callable[[], Iterable],
    *,
    owner: str,
    monitor: str | None = None,
) -> dict[str, Any]:
    """``configure_optimizers`` output: the optimizer, plus a per-epoch scheduler if one is given.

    ``params`` returns the parameters to optimise (called only when there is an optimizer: a
    module built for inference may have no trainer); ``owner`` names the module in the error
    raised then; ``monitor`` is the metric a plateau scheduler watches.
    """
    if make_optimizer is None:
        raise ValueError(f"{owner}: no optimizer given (this model was built for inference only)")
    optimizer = make_optimizer(params=params())
    if make_scheduler is None:
        return {"optimizer": optimizer}
    scheduler = {"scheduler": make_scheduler(optimizer=optimizer), "interval": "epoch"}
    if monitor is not None:
        scheduler["monitor"] = monitor
    return {"optimizer": optimizer, "lr_scheduler": scheduler}
