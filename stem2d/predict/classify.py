"""Classify tiles with a CAM classifier and localise each defect by its class activation map.

>>> from stem2d.models.loading import load_classifier
>>> model = load_classifier()                     # doctest: +SKIP  (the bundled weights)
>>> result = classify_tiles(model, tiles)         # doctest: +SKIP  tiles: (N, 64, 64) counts
>>> result.to_frame().head()                      # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from stem2d.io.frames import is_blank
from stem2d.models.cam import cam_peak
from stem2d.models.precision import cpu_has_bf16  # noqa: F401  (its home is models.precision)
from stem2d.models.preprocess import standardize_tiles

if TYPE_CHECKING:  # the Lightning module is accepted too; prediction never imports Lightning
    from stem2d.models.classifier import CamClassifier
    from stem2d.models.inference import TileClassifier

__all__ = ["TileResult", "classify_tiles"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TileResult:
    """Classifier output for N tiles.

    Attributes
    ----------
    labels : ndarray, int64, (N,); index of the predicted class.
    probs : ndarray, float32, (N, C); softmax probabilities.
    cams : ndarray, float32, (N, H, W); CAM of the predicted class at tile size.
    cam_pos : ndarray, float64, (N, 2); CAM peak (row, col) in tile pixels (NaN if flat).
    class_names : tuple of str
    """

    labels: np.ndarray
    probs: np.ndarray
    cams: np.ndarray
    cam_pos: np.ndarray
    class_names: tuple[str, ...]

    def to_frame(self) -> pd.DataFrame:
        """Table with columns ``index,class,score,cam_row,cam_col`` (score = top probability)."""
        return pd.DataFrame({
            "index": np.arange(len(self.labels)),
            "class": np.asarray(self.class_names, dtype=object)[self.labels] if len(self.labels) else [],
            "score": self.probs.max(axis=1) if len(self.labels) else [],
            "cam_row": self.cam_pos[:, 0],
            "cam_col": self.cam_pos[:, 1],
        })


def _check_tiles(tiles: np.ndarray, tile_size_px: int) -> np.ndarray:
    tiles = np.asarray(tiles)
    if tiles.ndim != 3 or tiles.shape[1:] != (tile_size_px, tile_size_px):
        hint = " (one tile: tiles[None])" if tiles.shape == (tile_size_px, tile_size_px) else ""
        raise ValueError(f"tiles: expected shape (N, {tile_size_px}, {tile_size_px}), got {tiles.shape}{hint}")
    if len(tiles) == 0:
        raise ValueError(f"tiles: the array is empty (shape {tiles.shape}); nothing to classify")
    if not np.issubdtype(tiles.dtype, np.number) or np.issubdtype(tiles.dtype, np.complexfloating):
        raise ValueError(f"tiles: expected real numbers, got dtype {tiles.dtype}")
    bad = ~np.isfinite(tiles).all(axis=(1, 2))
    if bad.any():
        raise ValueError(f"tiles: {int(bad.sum())} tile(s) contain NaN or inf, first at index {int(np.argmax(bad))}")
    return tiles


def classify_tiles(model: TileClassifier | CamClassifier, tiles: np.ndarray, *, batch_size: int = 256,
                   bf16: bool = False) -> TileResult:
    """Classify tiles and localise each by the CAM of its predicted class.

    Parameters
    ----------
    model : TileClassifier or CamClassifier
        From :func:`stem2d.models.loading.load_classifier`, or the training module.
    tiles : ndarray, (N, T, T)
        Raw tiles (counts) at the model's pixel size; standardised here with
        :func:`stem2d.models.preprocess.standardize_tiles`.
    batch_size : int, keyword-only
    bf16 : bool, keyword-only
        Run the network under bf16 autocast (on a CPU with native bf16: 1.1x faster at 2 threads
        and batch 256, docs/results.md section 4; 1.4-1.6x at one thread on the ~48 windows of a
        512 x 512 frame, as the movie loop runs it; on 1,000 held-out tiles it changed no
        predicted class). Default False.

    Returns
    -------
    TileResult
        A constant tile (all zeros, say) holds no information: its probabilities are uniform
        (score 1/C, the first class) and its CAM is zero, with a warning; the network would
        otherwise answer from its biases alone (w_vacancy at 0.84 for the bundled weights).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    tiles = _check_tiles(tiles, int(model.hparams.tile_size_px))
    x = standardize_tiles(tiles)
    n, c = len(x), len(model.class_names)
    probs = np.empty((n, c), np.float32)
    cams = np.empty(x.shape, np.float32)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
            for start in range(0, n, batch_size):
                xb = torch.from_numpy(x[start : start + batch_size, None]).to(model.device)
                logits, cam = model.forward_with_cam(xb)
                probs[start : start + len(xb)] = logits.float().softmax(dim=1).cpu().numpy()
                cams[start : start + len(xb)] = cam.cpu().numpy()
    finally:
        model.train(was_training)
    blank = is_blank(tiles)
    if blank.any():
        probs[blank], cams[blank] = 1.0 / c, 0.0
        log.warning("tiles: %d of %d tile(s) are constant (no image; first at index %d): not classified, "
                    "scored 1/%d", int(blank.sum()), n, int(np.argmax(blank)), c)
    labels = probs.argmax(axis=1).astype(np.int64)
    return TileResult(labels, probs, cams, cam_peak(cams).reshape(n, 2), tuple(model.class_names))
