"""Pipeline layer: the only package that reads Hydra configs (training, inference)."""
