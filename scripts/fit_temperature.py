"""Fit the temperature of a classifier on freshly simulated held-out tiles and store it beside it.

    python scripts/fit_temperature.py                                    # the bundled WS2 classifier
    python scripts/fit_temperature.py stem2d/weights/cam_cnn_mos2.ckpt --material MoS2 --classes mos2
    python scripts/fit_temperature.py outputs/train/runs/<stamp>/checkpoints/last.ckpt

writes ``<ckpt stem>.temperature.json`` (temperature, tiles, seed, NLL and ECE before and after);
``infer.py`` reads it and reports ``p_class`` as the temperature-scaled probability. Simulated
tiles only (never real labels); ~1 min for 2,000 tiles on one core.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import yaml

from stem2d.models.loading import bundled_classifier_path, load_classifier
from stem2d.models.temperature import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    save_temperature,
    simulated_probs,
)

log = logging.getLogger("fit_temperature")
CONF = Path(__file__).resolve().parents[1] / "conf" / "classes"


def _nll(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None))))


def _shown(path: str) -> str:
    """The checkpoint path as recorded: relative to the checkout when inside it (no machine paths)."""
    p = Path(path).resolve()
    root = Path(__file__).resolve().parents[1]
    return str(p.relative_to(root)) if p.is_relative_to(root) else p.name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ckpt", nargs="?", default=str(bundled_classifier_path("WS2")))
    ap.add_argument("--material", default="WS2")
    ap.add_argument("--classes", default="default", help="name of a conf/classes/*.yaml")
    ap.add_argument("--tiles", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=31337)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    classes = yaml.safe_load((CONF / f"{args.classes}.yaml").read_text())
    model = load_classifier(args.ckpt)
    probs, labels = simulated_probs(model, material=args.material, classes=classes, n_tiles=args.tiles,
                                    seed=args.seed)
    t = fit_temperature(probs, labels)
    scaled = apply_temperature(probs, t)
    info = {"fitted_on": f"{args.tiles} simulated held-out tiles ({args.material}, classes={args.classes}, "
                         f"seed {args.seed}, all noise modes)",
            "nll_before": _nll(probs, labels), "nll_after": _nll(scaled, labels),
            "ece_before": expected_calibration_error(probs, labels),
            "ece_after": expected_calibration_error(scaled, labels),
            "accuracy": float((probs.argmax(1) == labels).mean()),
            "command": f"python scripts/fit_temperature.py {_shown(args.ckpt)} --material {args.material} "
                       f"--classes {args.classes} --tiles {args.tiles} --seed {args.seed}"}
    path = save_temperature(args.ckpt, t, **info)
    log.info("temperature %.3f: ECE %.4f -> %.4f, NLL %.4f -> %.4f (%s)", t, info["ece_before"],
             info["ece_after"], info["nll_before"], info["nll_after"], path)


if __name__ == "__main__":
    main()
