"""Run folders are claimed atomically: one run per folder, a second one stops at start.

Two runs given the same ``hydra.run.dir`` used to both exit 0 while the last writer won. Now the
first creates ``.stem2d_run.json`` with ``O_CREAT | O_EXCL`` (atomic on local and NFSv3+ file
systems) holding its pid, host, command and start time; any other process that finds the file
stops with a message naming the folder and that run. The claim is never released: a finished
run's folder is its record, and writing a second run into it would mix or overwrite results.

:func:`claim_run_dir` does it; the Hydra callback ``stem2d.pipeline.cli.ClaimRunFolder``
(``conf/hydra/default.yaml``) calls it for every single run before Hydra writes into the folder. Sweep trials are not claimed: their folders are
numbered by the study's trial number, unique by construction.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["CLAIM_FILE", "RunFolderTaken", "claim_run_dir"]

log = logging.getLogger(__name__)

#: The claim inside a run folder.
CLAIM_FILE = ".stem2d_run.json"


class RunFolderTaken(ValueError):
    """Another run claimed this folder, or the folder cannot be made."""


def claim_run_dir(path: str | os.PathLike, *, key: str = "hydra.run.dir") -> Path:
    """Create ``path`` (and parents) and claim it for this process; return it.

    Claiming again from the same process is a no-op (the entry script's callback and the
    pipeline may both call this), and so is a claim by a child of the claiming process (the
    DDP launcher starts ranks > 0 as children running the same command in the same folder).

    Parameters
    ----------
    path : path
        The run folder.
    key : str, keyword-only
        The setting that named the folder, quoted in messages.

    Raises
    ------
    RunFolderTaken
        The folder is claimed by another run (the message names its pid, host, start time and
        whether it still runs), or a parent of it is a file.
    """
    folder = Path(path)
    _make_folder(folder, key=key)
    claim = folder / CLAIM_FILE
    record = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv),
              "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
    try:
        fd = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        other = _read_claim(claim)
        # the same process claims again, or a child of the claiming run (DDP's rank > 0 processes
        # re-run the entry script with the same hydra.run.dir) joins it
        if other.get("host") == record["host"] and other.get("pid") in (record["pid"], os.getppid()):
            return folder
        raise RunFolderTaken(
            f"{key}={str(folder)!r} is already used by another run ({_describe(other)}); two runs in one "
            f"folder would overwrite each other's results. Choose another {key}, or delete the folder "
            "if that run's results are not needed"
        ) from None
    except OSError as err:
        raise RunFolderTaken(f"{key}={str(folder)!r}: cannot create files in it ({err.strerror})") from err
    with os.fdopen(fd, "w") as f:
        json.dump(record, f)
    return folder


def _make_folder(folder: Path, *, key: str) -> None:
    for parent in [folder, *folder.parents]:
        if parent.exists() and not parent.is_dir():
            what = "is a file" if parent == folder else f"lies under {str(parent)!r}, which is a file"
            raise RunFolderTaken(f"{key}={str(folder)!r} {what}, not a folder; choose another {key}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunFolderTaken(f"{key}={str(folder)!r}: cannot create the folder ({err.strerror})") from err


def _read_claim(claim: Path) -> dict[str, Any]:
    for _ in range(20):  # the other run may be between its exclusive create and its write
        try:
            data = json.loads(claim.read_text())
            if isinstance(data, dict):
                return data
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    return {}


def _describe(other: dict[str, Any]) -> str:
    if not other:
        return "its claim file could not be read"
    pid, host = other.get("pid"), other.get("host", "?")
    state = ""
    if host == socket.gethostname() and isinstance(pid, int):
        state = ", still running" if _alive(pid) else ", no longer running"
    return (f"pid {pid} on {host}, started {other.get('started_utc', '?')} UTC{state}: "
            f"{other.get('command', '?')!r}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

