"""The ask-and-tell loop of a sweep, independent of how trials are launched.

Every trial is asked from the study, launched (by Hydra's launcher in the plugin, or by any
callable in tests), and told to the study as soon as its batch returns, so a sweep that is
killed keeps every finished trial in the storage. Trials launched together get consecutive
numbers whenever possible and ``job index == trial number``, so job folders of a resumed or
distributed study never collide.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from stem2d.sweeper.search_space import SearchSpace

__all__ = ["SweepFailedError", "SweepSummary", "TrialOutcome", "outcome_from_result", "run_trials"]

log = logging.getLogger(__name__)

#: Failures quoted in the error raised when too many trials fail.
_QUOTED_FAILURES = 5


class SweepFailedError(RuntimeError):
    """Raised when more trials failed than ``max_failure_rate`` allows."""


@dataclass(frozen=True)
class TrialOutcome:
    """How one trial ended: COMPLETE with a finite value, PRUNED, or FAIL with a reason."""

    state: TrialState
    value: float | None = None
    message: str = ""


#: ``launch(overrides_per_trial, first_job_index) -> one outcome per trial, in order``.
LaunchFn = Callable[[Sequence[Sequence[str]], int], Sequence[TrialOutcome]]


@dataclass
class SweepSummary:
    """Trials this run asked and how they ended (``outcomes`` maps trial number to outcome)."""

    outcomes: dict[int, TrialOutcome] = field(default_factory=dict)

    def count(self, state: TrialState) -> int:
        """Number of this run's trials that ended in ``state``."""
        return sum(o.state == state for o in self.outcomes.values())


def outcome_from_result(*, failed: bool, result: Any) -> TrialOutcome:
    """Classify a job's result: its return value, or the exception if ``failed``.

    A raised :class:`optuna.TrialPruned` is PRUNED; any other exception, a return value that
    is not a number, NaN or inf is FAIL; a finite number is COMPLETE.

    >>> outcome_from_result(failed=False, result=0.5).state.name
    'COMPLETE'
    >>> outcome_from_result(failed=False, result=float("nan")).state.name
    'FAIL'
    """
    if failed:
        if isinstance(result, optuna.TrialPruned):
            return TrialOutcome(TrialState.PRUNED, None, str(result))
        return TrialOutcome(TrialState.FAIL, None, f"{type(result).__name__}: {result}")
    try:
        value = float(result)
    except (TypeError, ValueError):
        return TrialOutcome(TrialState.FAIL, None, f"return value {result!r} is not a number")
    if not math.isfinite(value):
        return TrialOutcome(TrialState.FAIL, None, f"return value is {value}")
    return TrialOutcome(TrialState.COMPLETE, value)


def run_trials(
    study: optuna.Study,
    space: SearchSpace,
    *,
    n_trials: int,
    batch_size: int,
    launch: LaunchFn,
    max_failure_rate: float,
    link_overrides: Callable[[int], list[str]] = lambda number: [],
) -> SweepSummary:
    """Ask, launch and tell ``n_trials`` new trials of ``study``, ``batch_size`` at a time.

    Parameters
    ----------
    study : optuna.Study
        Study to extend (its sampler proposes the parameters).
    space : SearchSpace
        Distributions to sample and fixed overrides for every trial.
    n_trials : int, keyword-only
        Trials to add in this run (>= 1).
    batch_size : int, keyword-only
        Trials launched together (>= 1); the launcher may run them in parallel.
    launch : callable, keyword-only
        ``launch(overrides_per_trial, first_job_index)`` returning one
        :class:`TrialOutcome` per trial.
    max_failure_rate : float, keyword-only
        In [0, 1]: the run stops with :class:`SweepFailedError` as soon as more than
        ``max_failure_rate * n_trials`` of its trials have failed (pruned trials never count).
    link_overrides : callable, keyword-only
        ``trial_number -> extra overrides`` (the sweeper passes the study link here).

    Returns
    -------
    SweepSummary

    Raises
    ------
    SweepFailedError
        When the failure budget is exceeded (the failing trials are already told).
    ValueError
        On bad ``n_trials``, ``batch_size`` or ``max_failure_rate``.
    """
    _check_settings(n_trials=n_trials, batch_size=batch_size, max_failure_rate=max_failure_rate)
    summary = SweepSummary()
    remaining = n_trials
    while remaining > 0:
        trials = [study.ask(space.distributions) for _ in range(min(batch_size, remaining))]
        remaining -= len(trials)
        pending = {trial.number: trial for trial in trials}
        try:
            for group in _consecutive_groups(trials):
                overrides = [space.overrides_for(t.params) + link_overrides(t.number) for t in group]
                outcomes = launch(overrides, group[0].number)
                if len(outcomes) != len(group):
                    raise RuntimeError(f"launcher returned {len(outcomes)} results for {len(group)} trials")
                for trial, outcome in zip(group, outcomes):
                    _tell(study, trial, outcome)
                    summary.outcomes[trial.number] = outcome
                    del pending[trial.number]
                _check_failures(summary, n_trials=n_trials, max_failure_rate=max_failure_rate)
        except BaseException:
            for trial in pending.values():  # never leave this run's trials RUNNING forever
                study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            raise
    return summary


def _tell(study: optuna.Study, trial: optuna.Trial, outcome: TrialOutcome) -> None:
    values = outcome.value if outcome.state == TrialState.COMPLETE else None
    study.tell(trial, values, state=outcome.state)
    if outcome.state == TrialState.FAIL:
        log.warning("trial %d failed: %s", trial.number, outcome.message)
    elif outcome.state == TrialState.PRUNED:
        log.info("trial %d pruned: %s", trial.number, outcome.message)
    else:
        log.info("trial %d complete: value=%.6g params=%s", trial.number, outcome.value, trial.params)


def _consecutive_groups(trials: list[optuna.Trial]) -> list[list[optuna.Trial]]:
    """Split into runs of consecutive trial numbers (other workers may have asked in between)."""
    groups: list[list[optuna.Trial]] = []
    for trial in trials:
        if groups and trial.number == groups[-1][-1].number + 1:
            groups[-1].append(trial)
        else:
            groups.append([trial])
    return groups


def _check_failures(summary: SweepSummary, *, n_trials: int, max_failure_rate: float) -> None:
    failed = [(n, o) for n, o in summary.outcomes.items() if o.state == TrialState.FAIL]
    allowed = max_failure_rate * n_trials
    if len(failed) <= allowed:
        return
    quoted = "; ".join(f"trial {n}: {o.message}" for n, o in failed[:_QUOTED_FAILURES])
    raise SweepFailedError(
        f"{len(failed)} of this run's {n_trials} trials failed, more than "
        f"hydra.sweeper.max_failure_rate={max_failure_rate} allows ({allowed:g}). {quoted}. "
        "Tracebacks are in the sweep log; each trial's own log is in its job folder."
    )


def _check_settings(*, n_trials: int, batch_size: int, max_failure_rate: float) -> None:
    if not isinstance(n_trials, int) or n_trials < 1:
        raise ValueError(f"hydra.sweeper.n_trials must be an int >= 1, got {n_trials!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"hydra.sweeper.n_jobs must be an int >= 1, got {batch_size!r}")
    if not 0.0 <= max_failure_rate <= 1.0:
        raise ValueError(f"hydra.sweeper.max_failure_rate must be in [0, 1], got {max_failure_rate!r}")
