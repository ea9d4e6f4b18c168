"""Temperature scaling (stem2d.models.temperature)."""

from __future__ import annotations

import numpy as np
import pytest

from stem2d.models.temperature import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    load_temperature,
    reliability,
    save_temperature,
)


def _overconfident(n=4000, c=5, true_t=2.5, rng=0):
    """Probabilities whose logits are ``true_t`` times those of a calibrated model."""
    gen = np.random.default_rng(rng)
    logits = gen.normal(0, 1.5, size=(n, c))
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([gen.choice(c, p=row) for row in p])
    sharp = np.exp(true_t * logits)
    return sharp / sharp.sum(axis=1, keepdims=True), labels


def test_fit_recovers_the_temperature_and_lowers_ece():
    probs, labels = _overconfident()
    t = fit_temperature(probs, labels)
    assert t == pytest.approx(2.5, rel=0.1)
    after = apply_temperature(probs, t)
    assert expected_calibration_error(after, labels) < 0.5 * expected_calibration_error(probs, labels)
    assert (after.argmax(1) == probs.argmax(1)).all()  # the class never changes
    assert np.allclose(after.sum(1), 1)


def test_identity_and_bad_values():
    p = np.array([[0.7, 0.2, 0.1]])
    assert np.allclose(apply_temperature(p, 1.0), p)
    with pytest.raises(ValueError, match="temperature"):
        apply_temperature(p, 0.0)
    with pytest.raises(ValueError, match="labels"):
        fit_temperature(p, np.array([3]))


def test_reliability_bins():
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.55, 0.45]])
    labels = np.array([0, 1, 0, 0])
    r = reliability(probs, labels, n_bins=10)
    assert r["count"].sum() == 4 and r["count"][9] == 2 and r["count"][5] == 2
    assert r["accuracy"][9] == pytest.approx(0.5) and r["accuracy"][5] == pytest.approx(1.0)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.5 * 0.45 + 0.5 * 0.45)


def test_stored_beside_the_checkpoint(tmp_path):
    ckpt = tmp_path / "w.ckpt"
    ckpt.write_bytes(b"")
    assert load_temperature(ckpt) == 1.0
    path = save_temperature(ckpt, 1.7, ece_before=0.1)
    assert path.name == "w.temperature.json"
    assert load_temperature(ckpt) == pytest.approx(1.7)
    assert load_temperature(None) == 1.0
