"""What the entry scripts share: a clear one-paragraph error instead of a traceback wall."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from stem2d.output.rundir import CLAIM_FILE, RunFolderTaken, claim_run_dir

log = logging.getLogger("stem2d")

T = TypeVar("T")

#: Subfolder of a failed run's folder that receives what it wrote before failing.
PARTIAL_DIR = "incomplete"

#: Errors that mean "bad input or configuration": shown as one message, exit status 2.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, PermissionError, KeyError)


def _in_multirun() -> bool:
    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:  # no Hydra context (called from Python)
        return False


def run_friendly(fn: Callable[[], T], *, raise_in_multirun: bool = True) -> T | None:
    """Run ``fn``; a user error is logged as one clear message and the process exits with 2.

    What the run wrote before failing is moved into ``<run folder>/incomplete/`` (nothing left
    looks finished) and the second line of the message says so. In a multirun (sweep) the error
    is re-raised so the sweeper records the trial as failed; with ``raise_in_multirun=False``
    (several movies at once) it is logged and None returned, so one bad movie does not stop the
    others. ``STEM2D_TRACEBACK=1`` shows the full traceback.
    """
    try:
        return fn()
    except USER_ERRORS as err:
        multirun = _in_multirun()
        if (multirun and raise_in_multirun) or os.environ.get("STEM2D_TRACEBACK"):
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        log.error("%s: %s", type(err).__name__, message)
        log.error("(%s; set STEM2D_TRACEBACK=1 for the traceback)", _set_aside_partial_output())
        if multirun:
            return None
        sys.exit(2)


#: What a run folder holds before the job writes anything (Hydra's config and log, the claim).
_NOT_OUTPUT = {".hydra", CLAIM_FILE, PARTIAL_DIR}


def _set_aside_partial_output() -> str:
    """Move what a failed run wrote into ``<run folder>/incomplete/`` so that nothing left in the
    folder looks like a result; return a sentence saying what happened, for the error message."""
    try:
        folder = Path(HydraConfig.get().runtime.output_dir)
    except ValueError:  # no Hydra context (called from Python): nothing to set aside
        return "the run did not finish"
    written = sorted(p for p in folder.iterdir() if p.name not in _NOT_OUTPUT and p.suffix != ".log") \
        if folder.is_dir() else []
    if not written:
        return f"the run did not finish; nothing but its config and log was written to {folder}"
    partial = folder / PARTIAL_DIR
    try:
        partial.mkdir(exist_ok=True)
        for path in written:
            os.replace(path, partial / path.name)
    except OSError as err:
        return f"the run did not finish; files in {folder} are partial, not results (moving them failed: {err})"
    names = ", ".join(p.name for p in written[:6]) + (", ..." if len(written) > 6 else "")
    return f"the run did not finish; what it wrote ({names}) was moved to {partial}: partial, not results"


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
