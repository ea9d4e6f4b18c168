"""How a trial job, possibly in another process or on another machine, reaches its Optuna trial.

The sweeper adds these overrides to every trial's command line::

    ++optuna.study_name='cam_optuna' ++optuna.storage='sqlite:////abs/optuna.db'
    ++optuna.trial_number=7 ++optuna.pruner={_target_:'optuna.pruners.MedianPruner',...}

so the job's config holds an ``optuna`` node. :func:`reporter_from_cfg` turns it into a
:class:`TrialReporter` that re-opens the study from storage, reports intermediate values and
raises :class:`optuna.TrialPruned` when the pruner says stop; the sweeper then records the
trial as pruned. Outside a sweep the node is absent and :func:`reporter_from_cfg` returns None.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from omegaconf import OmegaConf

from stem2d.sweeper.search_space import format_override_value
from stem2d.sweeper.study import build_pruner, open_storage

__all__ = ["LINK_KEY", "TrialLink", "TrialReporter", "reporter_from_cfg"]

log = logging.getLogger(__name__)

#: Top-level config key under which a trial job finds its study.
LINK_KEY = "optuna"


@dataclass(frozen=True)
class TrialLink:
    """Where a trial lives: study name, absolute storage URL, trial number, pruner config."""

    study_name: str
    storage: str
    trial_number: int
    pruner: Mapping[str, Any] | None = None

    def overrides(self) -> list[str]:
        """The ``++optuna.*`` overrides that carry this link into the job's config."""
        pruner = dict(self.pruner) if self.pruner is not None else None
        return [
            f"++{LINK_KEY}.study_name={format_override_value(self.study_name)}",
            f"++{LINK_KEY}.storage={format_override_value(self.storage)}",
            f"++{LINK_KEY}.trial_number={int(self.trial_number)}",
            f"++{LINK_KEY}.pruner={format_override_value(pruner)}",
        ]

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any]) -> TrialLink | None:
        """Read the link from a job config; None when the job is not part of a sweep."""
        node = cfg.get(LINK_KEY)
        if node is None:
            return None
        missing = [k for k in ("study_name", "storage", "trial_number") if node.get(k) is None]
        if missing:
            raise ValueError(f"config node '{LINK_KEY}' lacks {missing}; got keys {list(node)}")
        pruner = node.get("pruner")
        if pruner is not None:
            pruner = _to_container(pruner)
        return cls(str(node["study_name"]), str(node["storage"]), int(node["trial_number"]), pruner)


class TrialReporter:
    """Reports one running trial's intermediate values and applies the study's pruner.

    Parameters
    ----------
    link : TrialLink
        The trial to report to; the study is opened lazily, on the first report, in the
        process that reports.
    """

    def __init__(self, link: TrialLink) -> None:
        self.link = link
        self._trial: optuna.Trial | None = None

    @property
    def trial(self) -> optuna.Trial:
        """The live :class:`optuna.Trial` (opened from storage on first use)."""
        if self._trial is None:
            self._trial = _open_trial(self.link)
        return self._trial

    def report(self, value: float, *, step: int) -> None:
        """Record ``value`` at ``step`` (e.g. the epoch) and raise if the trial should stop.

        Raises
        ------
        optuna.TrialPruned
            When the pruner decides this trial is not worth finishing.
        """
        value = float(value)
        self.trial.report(value, step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(
                f"trial {self.link.trial_number} of study {self.link.study_name!r} pruned at "
                f"step {step} (value {value:.6g})"
            )
        if not math.isfinite(value):
            log.warning("trial %d reported %s at step %d", self.link.trial_number, value, step)


def reporter_from_cfg(cfg: Mapping[str, Any]) -> TrialReporter | None:
    """A :class:`TrialReporter` for a sweep job's config, or None outside a sweep."""
    link = TrialLink.from_cfg(cfg)
    return TrialReporter(link) if link is not None else None


def _open_trial(link: TrialLink) -> optuna.Trial:
    storage = open_storage(link.storage)
    try:
        study_id = storage.get_study_id_from_name(link.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, link.trial_number)
    except KeyError as err:
        raise ValueError(
            f"no trial {link.trial_number} in study {link.study_name!r} at {link.storage}"
        ) from err
    study = optuna.load_study(
        study_name=link.study_name, storage=storage, pruner=build_pruner(link.pruner)
    )
    return optuna.trial.Trial(study, trial_id)


def _to_container(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
