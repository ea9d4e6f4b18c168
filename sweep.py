"""Hyper-parameter sweep: ``python sweep.py -m [overrides]`` (see conf/sweep.yaml).

The same task as ``train.py``; conf/sweep.yaml adds the Optuna search (hparams_search) and the
``stem2d_optuna`` sweeper, which launches one training job per trial and maximises its return.
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="sweep")
def main(cfg: DictConfig) -> float:
    """Train one trial; return ``cfg.optimized_metric`` (the sweep objective)."""
    from stem2d.pipeline.train import train  # here: --help and --cfg answer without torch

    return train(cfg)


if __name__ == "__main__":
    main()
