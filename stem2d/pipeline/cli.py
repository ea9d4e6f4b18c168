"""What the entry scripts share: a clear one-paragraph error instead of a traceback wall."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from stem2d.output.rundir import RunFolderTaken, claim_run_dir

log = logging.getLogger("stem2d")

T = TypeVar("T")

#: Errors that mean "bad input or configuration": shown as one message, exit status 2.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, PermissionError, KeyError)


def _in_multirun() -> bool:
    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:  # no Hydra context (called from Python)
        return False


def run_friendly(fn: Callable[[], T]) -> T:
    """Run ``fn``; a user error is logged as one clear message and the process exits with 2.

    In a multirun (sweep) the error is re-raised so the sweeper records the trial as failed.
    ``STEM2D_TRACEBACK=1`` shows the full traceback.
    """
    try:
        return fn()
    except USER_ERRORS as err:
        if _in_multirun() or os.environ.get("STEM2D_TRACEBACK"):
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        log.error("%s: %s", type(err).__name__, message)
        log.error("(nothing complete-looking was written; set STEM2D_TRACEBACK=1 for the traceback)")
        sys.exit(2)


class ClaimRunFolder(Callback):
    """Hydra callback (conf/hydra/default.yaml): claim ``hydra.run.dir`` before Hydra writes into it.

    A second run into a claimed folder (or a run folder under a file) stops here with one message
    and exit status 2; Hydra's logging is not configured yet, so the message goes to stderr.
    Sweep trials are not claimed (their folders are numbered by trial, unique by construction).
    """

    def on_run_start(self, config: DictConfig, **kwargs: object) -> None:
        try:
            claim_run_dir(str(config.hydra.run.dir))
        except RunFolderTaken as err:
            log.error("RunFolderTaken: %s", err)
            sys.exit(2)
