"""Tiny Hydra app for the sweeper tests: a quadratic "training" that reports every epoch.

    python tests/sweep_app/app.py -m hydra.sweep.dir=/tmp/sweep hydra.sweeper.n_trials=3

The score is ``-((x - 1)^2 + (y + 2)^2)`` (maximum 0 at x=1, y=-2); epoch ``e`` of
``epochs`` reports ``score - 1 / (e + 1)`` through the trial reporter, the way the Lightning
pruning callback does after each validation epoch. Trials listed in ``fail_trials`` raise and
those in ``nan_trials`` return NaN, to exercise the sweeper's failure handling.
"""

import hydra
from omegaconf import DictConfig

from stem2d.sweeper import reporter_from_cfg


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    reporter = reporter_from_cfg(cfg)
    number = reporter.link.trial_number if reporter is not None else None
    if number in cfg.fail_trials:
        raise RuntimeError(f"simulated crash of trial {number}")
    score = -((cfg.x - 1.0) ** 2 + (cfg.y + 2.0) ** 2)
    for epoch in range(cfg.epochs):
        if reporter is not None:
            reporter.report(score - 1.0 / (epoch + 1), step=epoch)
    return float("nan") if number in cfg.nan_trials else score


if __name__ == "__main__":
    main()
