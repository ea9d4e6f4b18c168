"""Opening Optuna storages and studies from URLs, and building samplers/pruners from configs.

Storage URLs
------------
``sqlite:///path/optuna.db``
    A SQLite file (parent folders are created). Fine for one machine and a few processes.
``journal:///abs/path/optuna.log`` or ``journal://relative/optuna.log``
    Optuna's append-only journal file (``JournalFileBackend``): no database server, safe for
    many processes that share a file system. The path follows ``file://`` URLs (three
    slashes: absolute), unlike SQLite's (three slashes: relative, four: absolute).
``postgresql://user:pass@host/db``, ``mysql://...``
    Any SQLAlchemy URL, passed to ``optuna.storages.RDBStorage``; the choice for many machines.

Relative SQLite and journal paths are made absolute (against the current folder) before
trials are launched, so jobs that change directory still find the storage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
from hydra.utils import instantiate
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.study import StudyDirection
from sqlalchemy.exc import SQLAlchemyError

__all__ = [
    "build_pruner",
    "build_sampler",
    "open_storage",
    "open_study",
    "resolve_storage_url",
]

log = logging.getLogger(__name__)

_SQLITE = "sqlite:///"
_JOURNAL = "journal://"
_DIRECTIONS = ("maximize", "minimize")
#: Seconds a SQLite writer waits for a lock held by another process before giving up.
_SQLITE_LOCK_TIMEOUT_S = 60.0
_OPEN_ATTEMPTS = 5


def resolve_storage_url(url: str) -> str:
    """Return ``url`` with a relative SQLite or journal file path made absolute.

    Raises
    ------
    ValueError
        If ``url`` is empty, not a string, or an in-memory SQLite URL (jobs could not share it).

    Examples
    --------
    >>> resolve_storage_url("postgresql://u@host/db")
    'postgresql://u@host/db'
    >>> resolve_storage_url("sqlite:////tmp/sweep/optuna.db")
    'sqlite:////tmp/sweep/optuna.db'
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError(
            f"hydra.sweeper.storage must be a storage URL such as 'sqlite:///path/optuna.db' "
            f"or 'journal:///abs/path/optuna.log', got {url!r}"
        )
    if url.startswith(_SQLITE):
        path = url[len(_SQLITE):]
        if path in ("", ":memory:"):
            raise ValueError(f"hydra.sweeper.storage={url!r}: in-memory/empty SQLite cannot be shared")
        return _SQLITE + str(Path(path).expanduser().resolve())
    if url.startswith(_JOURNAL):
        path = url[len(_JOURNAL):]
        path = "/" + path.lstrip("/") if path.startswith("/") else path
        if not path:
            raise ValueError(f"hydra.sweeper.storage={url!r} has no file path")
        return _JOURNAL + str(Path(path).expanduser().resolve())
    return url


def open_storage(url: str) -> BaseStorage:
    """Open (creating if needed) the Optuna storage behind ``url`` (see module docstring)."""
    url = resolve_storage_url(url)
    if url.startswith(_JOURNAL):
        path = Path(url[len(_JOURNAL):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    engine_kwargs: dict[str, Any] = {}
    if url.startswith(_SQLITE):
        Path(url[len(_SQLITE):].split("?")[0]).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": _SQLITE_LOCK_TIMEOUT_S}}
    # Several processes creating the schema of a new database at once can collide
    # ("table already exists"); the loser retries once the winner has finished.
    for attempt in range(1, _OPEN_ATTEMPTS + 1):
        try:
            return RDBStorage(url, engine_kwargs=engine_kwargs)
        except SQLAlchemyError as err:
            if attempt == _OPEN_ATTEMPTS:
                raise RuntimeError(f"cannot open Optuna storage {url!r}: {err}") from err
            log.warning("opening storage %s failed (%s); retrying", url, err)
            time.sleep(0.5 * attempt)
    raise AssertionError("unreachable")


def open_study(
    *,
    study_name: str,
    storage_url: str,
    direction: str,
    pruner: optuna.pruners.BasePruner | None = None,
) -> optuna.Study:
    """Create the study, or load it if ``study_name`` already exists in the storage.

    Parameters
    ----------
    study_name : str
        Name of the study inside the storage.
    storage_url : str
        Storage URL (see module docstring).
    direction : {"maximize", "minimize"}
        Optimisation direction; must agree with an existing study's.
    pruner : optuna.pruners.BasePruner or None
        Pruner attached to the returned study object.

    Raises
    ------
    ValueError
        On a bad ``direction`` or one that disagrees with the stored study.
    """
    if direction not in _DIRECTIONS:
        raise ValueError(f"hydra.sweeper.direction must be one of {_DIRECTIONS}, got {direction!r}")
    if not isinstance(study_name, str) or not study_name:
        raise ValueError(f"hydra.sweeper.study_name must be a non-empty string, got {study_name!r}")
    study = optuna.create_study(
        study_name=study_name,
        storage=open_storage(storage_url),
        direction=direction,
        pruner=pruner,
        load_if_exists=True,
    )
    stored = study.directions
    if stored != [StudyDirection[direction.upper()]]:
        raise ValueError(
            f"study {study_name!r} in {storage_url} was created with direction(s) "
            f"{[d.name.lower() for d in stored]} but hydra.sweeper.direction={direction!r}"
        )
    return study


def build_sampler(cfg: Mapping[str, Any] | None, *, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
    """Instantiate a sampler from a ``_target_`` config, adding ``seed_offset`` to its ``seed``.

    The offset (the number of trials already in the study) keeps a resumed sweep, or a second
    worker started later, from replaying the first run's random start-up trials while a
    fresh study stays reproducible. ``None`` gives a seeded ``TPESampler``.
    """
    cfg = dict(cfg) if cfg is not None else {"_target_": "optuna.samplers.TPESampler", "seed": 0}
    if cfg.get("seed") is not None:
        cfg["seed"] = int(cfg["seed"]) + seed_offset
    sampler = _instantiate(cfg, key="hydra.sweeper.sampler")
    if not isinstance(sampler, optuna.samplers.BaseSampler):
        raise ValueError(f"hydra.sweeper.sampler built {type(sampler).__name__}, not an Optuna sampler")
    return sampler


def build_pruner(cfg: Mapping[str, Any] | None) -> optuna.pruners.BasePruner:
    """Instantiate a pruner from a ``_target_`` config; ``None`` gives ``NopPruner``."""
    if cfg is None:
        return optuna.pruners.NopPruner()
    pruner = _instantiate(dict(cfg), key="hydra.sweeper.pruner")
    if not isinstance(pruner, optuna.pruners.BasePruner):
        raise ValueError(f"hydra.sweeper.pruner built {type(pruner).__name__}, not an Optuna pruner")
    return pruner


def _instantiate(cfg: dict[str, Any], *, key: str) -> Any:
    if "_target_" not in cfg:
        raise ValueError(f"{key} needs a _target_ (e.g. optuna.samplers.TPESampler), got {cfg!r}")
    try:
        return instantiate(cfg)
    except Exception as err:
        raise ValueError(f"cannot build {key} from {cfg!r}: {err}") from err
