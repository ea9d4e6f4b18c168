"""Optuna sweeps through Hydra multirun: search spaces, the ask/tell loop, results, pruning.

The Hydra plugin ``hydra_plugins/stem2d_optuna_sweeper`` (``hydra/sweeper: stem2d_optuna``) is
the thin layer that wires these pieces to Hydra's launcher. The Lightning pruning callback
(:mod:`stem2d.sweeper.pruning`) is imported on first access, so the sweeper process never
imports Lightning: ``from stem2d.sweeper import pruning_callback_from_cfg`` works in train code.
"""

from typing import Any

from stem2d.sweeper.loop import (
    SweepFailedError,
    SweepSummary,
    TrialOutcome,
    outcome_from_result,
    run_trials,
)
from stem2d.sweeper.reporting import TrialLink, TrialReporter, reporter_from_cfg
from stem2d.sweeper.results import save_plots, study_results, write_results
from stem2d.sweeper.search_space import (
    SearchSpace,
    format_override_value,
    parse_search_space,
)
from stem2d.sweeper.study import (
    build_pruner,
    build_sampler,
    open_storage,
    open_study,
    resolve_storage_url,
)

__all__ = [
    "OptunaPruningCallback",
    "SearchSpace",
    "SweepFailedError",
    "SweepSummary",
    "TrialLink",
    "TrialOutcome",
    "TrialReporter",
    "build_pruner",
    "build_sampler",
    "format_override_value",
    "open_storage",
    "open_study",
    "outcome_from_result",
    "parse_search_space",
    "pruning_callback_from_cfg",
    "reporter_from_cfg",
    "resolve_storage_url",
    "run_trials",
    "save_plots",
    "study_results",
    "write_results",
]

_LAZY = {"OptunaPruningCallback", "pruning_callback_from_cfg"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from stem2d.sweeper import pruning

        return getattr(pruning, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
