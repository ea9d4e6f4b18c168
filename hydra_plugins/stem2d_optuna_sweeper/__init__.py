"""Hydra sweeper plugin ``stem2d_optuna`` (see :mod:`stem2d.sweeper`)."""
