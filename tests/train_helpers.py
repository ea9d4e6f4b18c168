"""Shared helpers of the training tests: tiny simulated data and the CLI's config composition."""

from pathlib import Path

from omegaconf import open_dict

from stem2d.pipeline.utils import compose_job

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
# Tiny simulated data: one base per class and split, a few batches.
TINY = [
    "data.n_bases_per_class=1", "data.n_val_bases_per_class=1", "data.n_test_bases_per_class=1",
    "data.n_train_samples=48", "data.n_val_samples=20", "data.n_test_samples=20",
    "data.batch_size=16", "data.num_workers=0", "data.persistent_workers=false",
]


def compose_train(tmp_path: Path, overrides: list[str]):
    """Compose conf/train.yaml the way the CLI does, with the run folder in tmp_path."""
    cfg = compose_job("train", overrides, run_dir=tmp_path, conf_dir=CONF)
    with open_dict(cfg):
        cfg.paths.log_dir = str(tmp_path)
    return cfg
