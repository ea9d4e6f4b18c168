"""Train a tile classifier: ``python train.py [overrides]`` (see conf/train.yaml)."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Fit and test; return ``cfg.optimized_metric`` (for sweeps). Bad config: one clear error."""
    # Imported here, not at the top, and the values checked before the training code (torch,
    # Lightning) is imported: --help, --cfg and config errors answer in about a second.
    from stem2d.pipeline.cli import run_friendly

    def fit_and_test() -> float:
        from stem2d.pipeline.schema import TRAIN, validate

        validate(cfg, TRAIN, where="train")
        from stem2d.pipeline.train import train

        return train(cfg)

    return run_friendly(fit_and_test)


if __name__ == "__main__":
    main()
