"""Did adapting the U-Net to the user's movie help? Before / after on the held-out stripe.

:class:`AdaptReport` (a Lightning callback of ``experiment=adapt``) runs the network on every
labelled frame of an :class:`~stem2d.data.adapt.AdaptDataModule` before fitting and after it,
and compares the detections inside the held-out stripe (never trained on) with

- the stripe's confident pseudo-labels (uncertain sites are "don't care"): agreement P / R / F1;
- the classifier: the fraction of detections it calls a defect (self-consistency);
- the truth, where the movie is synthetic: true P / R / F1.

There is no truth on a user's movie, so the first two are agreement, not accuracy: they show
that the network now finds what the independent detectors and the classifier agree on, in a
region it did not see. ``adapt.json`` in the run folder holds both sets of numbers and
``helped`` (the agreement F1 rose); when it did not, a warning says to keep the previous weights.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch import Callback

from stem2d import CANONICAL_PIXEL_SIZE_A
from stem2d.output.files import write_json
from stem2d.predict.scoring import match_with_dont_care, prf

log = logging.getLogger(__name__)

__all__ = ["AdaptReport", "evaluate_heldout"]


def _in_rows(points: np.ndarray, rows: tuple[int, int]) -> np.ndarray:
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    return points[(points[:, 0] >= rows[0]) & (points[:, 0] < rows[1])]


def evaluate_heldout(net, datamodule, *, threshold: float = 0.5, match_dist_A: float = 1.5,
                     ignore_dist_A: float = 1.5) -> dict[str, Any]:
    """Detections of ``net`` in the held-out stripes of ``datamodule.heldout``, scored (pooled).

    Returns a dict with ``pseudo`` and (if every frame has truth) ``truth`` prf dicts,
    ``classifier_agreement`` and the number of detections.
    """
    from stem2d.predict.pixelmap import extract_defects, predict_frame

    was_training = net.training
    match_px, ignore_px = match_dist_A / CANONICAL_PIXEL_SIZE_A, ignore_dist_A / CANONICAL_PIXEL_SIZE_A
    counts = {"pseudo": [0, 0, 0], "truth": [0, 0, 0]}
    agree = n_det = 0
    has_truth = bool(datamodule.heldout) and all(h.truth is not None for h in datamodule.heldout)
    try:
        for held in datamodule.heldout:
            pts, _ = extract_defects(predict_frame(net, held.image), threshold=threshold, min_dist_px=match_px)
            det = _in_rows(pts, held.rows)
            pos = _in_rows(held.labels.positive, held.rows)
            unsure = _in_rows(held.labels.uncertain, held.rows)
            pi, _, ignored = match_with_dont_care(det, pos, max_dist=match_px, dont_care=[(unsure, ignore_px)])
            for k, v in enumerate((len(pi), int((~ignored).sum()), len(pos))):
                counts["pseudo"][k] += v
            if has_truth:
                truth = _in_rows(held.truth, held.rows)
                ti, _, _ = match_with_dont_care(det, truth, max_dist=match_px)
                for k, v in enumerate((len(ti), len(det), len(truth))):
                    counts["truth"][k] += v
            if len(det):
                agree += int((datamodule.defect_probability(held.image, det) >= 0.5).sum())
                n_det += len(det)
    finally:
        net.train(was_training)
    out = {"pseudo": prf(*counts["pseudo"]), "n_detections": n_det,
           "classifier_agreement": agree / n_det if n_det else None}
    if has_truth:
        out["truth"] = prf(*counts["truth"])
    return out


class AdaptReport(Callback):
    """Measure the held-out stripe before and after fitting; write ``<out_dir>/adapt.json``.

    Parameters
    ----------
    out_dir : path
        The run folder (``${paths.output_dir}``).
    threshold : float, default 0.5
        U-Net probability threshold of the detections (as ``detector.threshold`` of infer.py).
    match_dist_A, ignore_dist_A : float, default 1.5, 1.5
        Matching distance, and distance to an uncertain pseudo-label within which an unmatched
        detection is ignored.
    """

    def __init__(self, out_dir: str, *, threshold: float = 0.5, match_dist_A: float = 1.5,
                 ignore_dist_A: float = 1.5) -> None:
        self.out_dir = Path(out_dir)
        self.kw = {"threshold": float(threshold), "match_dist_A": float(match_dist_A),
                   "ignore_dist_A": float(ignore_dist_A)}
        self.before: dict[str, Any] | None = None

    def on_fit_start(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            self.before = evaluate_heldout(pl_module.net, trainer.datamodule, **self.kw)
            log.info("held-out stripe before adaptation: %s", _short(self.before))

    def on_fit_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero or self.before is None:
            return
        after = evaluate_heldout(pl_module.net, trainer.datamodule, **self.kw)
        log.info("held-out stripe after adaptation:  %s", _short(after))
        helped = _helped(self.before, after)
        if not helped:
            log.warning("adaptation did not raise the agreement F1 on the held-out stripe (%s -> %s): keep the "
                        "previous U-Net weights for this movie", self.before["pseudo"]["f1"], after["pseudo"]["f1"])
        report = {"settings": self.kw, "before": self.before, "after": after, "helped": helped,
                  "frames": [{"source": h.source, "heldout_rows_canonical": list(h.rows), **h.labels.counts()}
                             for h in trainer.datamodule.heldout],
                  "note": "pseudo = agreement with the held-out confident pseudo-labels (uncertain sites "
                          "ignored); truth only for synthetic movies"}
        self.out_dir.mkdir(parents=True, exist_ok=True)
        write_json(self.out_dir / "adapt.json", report)


def _helped(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """True when the held-out agreement F1 rose (the only criterion available without truth)."""
    b, a = before["pseudo"]["f1"], after["pseudo"]["f1"]
    return a is not None and (b is None or a > b)


def _short(res: dict[str, Any]) -> str:
    def f(d):
        return "P %s R %s F1 %s" % tuple("n/a" if d[k] is None else f"{d[k]:.3f}" for k in ("precision", "recall", "f1"))

    text = f"pseudo-labels {f(res['pseudo'])}, classifier agreement {res['classifier_agreement']}"
    if "truth" in res:
        text += f", truth {f(res['truth'])}"
    return text
