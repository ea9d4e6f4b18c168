"""Probabilities that mean what they say: temperature scaling of a classifier (Guo et al., ICML 2017).

One scalar ``T`` divides the logits before the softmax; it is fitted by minimising the negative
log-likelihood on held-out *simulated* tiles (never on real labels), so the argmax (the class)
is unchanged and only the confidence moves. ``log(probs)`` are logits up to a per-row constant,
so the classifier's probabilities suffice.

The temperature of a checkpoint lives beside it: ``<ckpt stem>.temperature.json`` (written by
``python scripts/fit_temperature.py CKPT``); :func:`load_temperature` returns 1.0 (no scaling)
when there is none.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from scipy import optimize

__all__ = [
    "apply_temperature",
    "expected_calibration_error",
    "fit_temperature",
    "load_temperature",
    "reliability",
    "save_temperature",
    "temperature_path",
]

log = logging.getLogger(__name__)
_EPS = 1e-12


def _log_probs(probs: np.ndarray) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must be (N, C), got shape {p.shape}")
    return np.log(np.clip(p, _EPS, None))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax probabilities with the logits divided by ``temperature``.

    Parameters
    ----------
    probs : ndarray, (N, C)
        Softmax probabilities of the classifier (rows sum to 1).
    temperature : float
        > 0; 1 leaves them unchanged, > 1 softens over-confident ones.

    Returns
    -------
    ndarray, float64, (N, C)

    >>> apply_temperature(np.array([[0.9, 0.1]]), 1.0).round(3)
    array([[0.9, 0.1]])
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z = _log_probs(probs) / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _nll(log_t: float, logp: np.ndarray, labels: np.ndarray) -> float:
    z = logp / np.exp(log_t)
    z -= z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(lse - z[np.arange(len(labels)), labels]))


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood of ``labels`` (bounded scalar search
    over log T in [-3, 3] with ``scipy.optimize.minimize_scalar``).

    Parameters
    ----------
    probs : ndarray, (N, C)
        Classifier probabilities on held-out simulated tiles.
    labels : ndarray, int, (N,)
        True class indices.

    Returns
    -------
    float
    """
    logp = _log_probs(probs)
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) != len(logp) or len(labels) == 0:
        raise ValueError(f"need as many labels as rows of probs (> 0), got {len(labels)} and {len(logp)}")
    if labels.min() < 0 or labels.max() >= logp.shape[1]:
        raise ValueError(f"labels must be in [0, {logp.shape[1]}), got [{labels.min()}, {labels.max()}]")
    res = optimize.minimize_scalar(_nll, bounds=(-3.0, 3.0), args=(logp, labels), method="bounded")
    return float(np.exp(res.x))


def reliability(probs: np.ndarray, labels: np.ndarray, *, n_bins: int = 10) -> dict[str, np.ndarray]:
    """Reliability diagram data: confidence (top probability) in ``n_bins`` equal-width bins.

    Returns
    -------
    dict with ``edges`` (n_bins + 1,), ``confidence`` and ``accuracy`` (mean per bin, NaN where
    empty) and ``count`` (n_bins,).
    """
    p = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    conf, pred = p.max(axis=1), p.argmax(axis=1)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore"):
        confidence = np.bincount(idx, weights=conf, minlength=n_bins) / count
        accuracy = np.bincount(idx, weights=(pred == labels).astype(float), minlength=n_bins) / count
    return {"edges": edges, "confidence": confidence, "accuracy": accuracy, "count": count}


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, *, n_bins: int = 10) -> float:
    """ECE: the count-weighted mean ``|accuracy - confidence|`` over confidence bins.

    >>> expected_calibration_error(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1]))
    0.0
    """
    r = reliability(probs, labels, n_bins=n_bins)
    ok = r["count"] > 0
    gap = np.abs(r["accuracy"][ok] - r["confidence"][ok])
    return float((gap * r["count"][ok]).sum() / r["count"].sum())


def temperature_path(ckpt_path: str | Path) -> Path:
    """``<ckpt without suffix>.temperature.json`` beside the checkpoint."""
    p = Path(ckpt_path)
    return p.with_name(p.stem + ".temperature.json")


def save_temperature(ckpt_path: str | Path, temperature: float, **info) -> Path:
    """Write the temperature (and plain-value ``info``: data, ECE before/after) beside a checkpoint."""
    path = temperature_path(ckpt_path)
    path.write_text(json.dumps({"temperature": float(temperature), **info}, indent=2) + "\n")
    return path


def load_temperature(ckpt_path: str | Path | None) -> float:
    """The temperature stored beside ``ckpt_path``; 1.0 (no scaling) when there is none."""
    if ckpt_path is None:
        return 1.0
    path = temperature_path(ckpt_path)
    if not path.is_file():
        log.info("no temperature beside %s: classifier probabilities are not calibrated "
                 "(python scripts/fit_temperature.py %s)", ckpt_path, ckpt_path)
        return 1.0
    value = float(json.loads(path.read_text())["temperature"])
    if not value > 0:
        raise ValueError(f"{path}: temperature must be > 0, got {value}")
    return value


def simulated_probs(model, *, material: str = "WS2", classes=None, n_tiles: int = 2000,
                    n_bases_per_class: int = 24, seed: int = 31337, batch_size: int = 256):
    """Classifier probabilities and true labels on freshly simulated held-out tiles.

    The tiles are the ``test`` split of a :class:`~stem2d.data.simulated.SimulatedDataModule`
    with the training augmentation (all noise modes) and a seed of their own (default 31337:
    neither the training seed 12345 nor the benchmark's 2024).

    Returns
    -------
    probs : ndarray, float32, (n_tiles, C); labels : ndarray, int64, (n_tiles,)
    """
    from stem2d.data.simulated import SimulatedDataModule
    from stem2d.predict.classify import classify_tiles

    dm = SimulatedDataModule(classes, material=material, seed=seed, n_test_bases_per_class=n_bases_per_class,
                             n_test_samples=n_tiles, num_workers=0, persistent_workers=False)
    dm.setup("test")
    ds = dm.datasets["test"]
    if tuple(dm.class_names) != tuple(model.class_names):
        raise ValueError(f"classes of the simulation {list(dm.class_names)} differ from the "
                         f"classifier's {list(model.class_names)}: pass material= and classes=")
    tiles = np.stack([ds.sample(i).image.astype(np.float32) for i in range(n_tiles)])
    labels = np.array([ds.bases.label[ds.base_index(i)] for i in range(n_tiles)], dtype=np.int64)
    probs = classify_tiles(model, tiles, batch_size=batch_size, bf16=False).probs
    return probs, labels
