"""What a sweep leaves in its folder: ``optimization_results.yaml`` and two PNG plots.

Files are written to a temporary name and renamed, so workers of a distributed study that
share a sweep folder never leave a half-written file.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState

__all__ = ["RESULTS_FILE", "save_plots", "study_results", "write_results"]

log = logging.getLogger(__name__)

RESULTS_FILE = "optimization_results.yaml"
HISTORY_PNG = "optimization_history.png"
IMPORTANCE_PNG = "param_importances.png"


def study_results(study: optuna.Study, *, storage_url: str) -> dict[str, Any]:
    """Summary of the whole study (all runs and workers so far) as plain Python types.

    Returns
    -------
    dict
        ``name``, ``study_name``, ``storage``, ``direction``, ``n_trials`` (count per state),
        ``best_trial``, ``best_value`` and ``best_params`` (None while no trial completed).
    """
    trials = study.get_trials(deepcopy=False)
    counts = {state.name.lower(): sum(t.state == state for t in trials) for state in TrialState}
    results: dict[str, Any] = {
        "name": "stem2d_optuna",
        "study_name": study.study_name,
        "storage": storage_url,
        "direction": study.direction.name.lower(),
        "n_trials": {k: v for k, v in counts.items() if v},
        "best_trial": None,
        "best_value": None,
        "best_params": None,
    }
    if counts["complete"]:
        best = study.best_trial
        results.update(best_trial=best.number, best_value=float(best.value), best_params=dict(best.params))
    return results


def write_results(study: optuna.Study, folder: Path, *, storage_url: str) -> Path:
    """Write :func:`study_results` to ``folder / optimization_results.yaml``; return the path."""
    path = Path(folder) / RESULTS_FILE
    text = yaml.safe_dump(study_results(study, storage_url=storage_url), sort_keys=False)
    _atomic_write(path, lambda tmp: tmp.write_text(text))
    return path


def save_plots(study: optuna.Study, folder: Path) -> list[Path]:
    """Save the optimisation history and parameter importances as PNGs in ``folder``.

    The importance plot needs two completed trials whose parameters vary; otherwise it is
    skipped with a log note. Returns the paths written.
    """
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    plots: list[tuple[str, Callable[[optuna.Study], Any]]] = []
    if completed:
        plots.append((HISTORY_PNG, optuna_plots.plot_optimization_history))
    else:
        log.info("no completed trial yet: %s not written", HISTORY_PNG)
    if len(completed) >= 2 and _params_vary(completed):
        plots.append((IMPORTANCE_PNG, optuna_plots.plot_param_importances))
    else:
        log.info("%s skipped: needs >= 2 completed trials with varying parameters", IMPORTANCE_PNG)
    written = []
    for name, plot in plots:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                figure = plot(study).figure
        except (ValueError, RuntimeError) as err:  # e.g. importance of a degenerate study
            log.warning("%s not written: %s", name, err)
            continue
        path = Path(folder) / name
        try:
            _atomic_write(path, lambda tmp, fig=figure: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))
        finally:
            plt.close(figure)
        written.append(path)
    return written


def _params_vary(trials: list[optuna.trial.FrozenTrial]) -> bool:
    names = {name for t in trials for name in t.params}
    return any(len({repr(t.params.get(name)) for t in trials}) > 1 for name in names)


def _atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
