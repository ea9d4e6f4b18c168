"""Train a tile classifier: ``python train.py [overrides]`` (see conf/train.yaml)."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Fit and test; return ``cfg.optimized_metric`` (for sweeps). Bad config: one clear error."""
    # Imported here, not at the top: --help, --cfg and config errors answer without torch.
    from stem2d.pipeline.cli import run_friendly
    from stem2d.pipeline.train import train

    return run_friendly(lambda: train(cfg))


if __name__ == "__main__":
    main()
