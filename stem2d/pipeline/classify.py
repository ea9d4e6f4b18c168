"""Tile inference API: load a classifier checkpoint, classify tiles, localise defects by CAM.

>>> model = load_classifier()                     # doctest: +SKIP  (the bundled weights)
>>> result = classify_tiles(model, tiles)         # doctest: +SKIP  tiles: (N, 64, 64) counts
>>> result.to_frame().head()                      # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from stem2d import CANONICAL_PIXEL_SIZE_A, TILE_SIZE_PX, __version__
from stem2d.cam import cam_peak
from stem2d.models.classifier import CamClassifier
from stem2d.models.nets import build_net
from stem2d.pipeline.utils import atomic_path, output_dir
from stem2d.plain import to_plain
from stem2d.preprocess import standardize_tiles

log = logging.getLogger(__name__)

__all__ = [
    "BUNDLED_CHECKPOINT",
    "bundled_classifier_path",
    "TileResult",
    "classify_tiles",
    "export_checkpoint",
    "load_classifier",
    "run_tiles",
]

#: File name of the bundled checkpoint inside the ``stem2d/weights`` package folder.
BUNDLED_CHECKPOINT = "cam_cnn_ws2.ckpt"
#: Hyper-parameters a slim checkpoint keeps (everything needed for inference).
_INFERENCE_HPARAMS = ("class_names", "noise_modes", "tile_size_px", "pixel_size_A", "channels_last")


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


def _bundled_path() -> Path:
    return bundled_classifier_path("WS2")


def bundled_classifier_path(material: str) -> Path:
    """Where the bundled classifier of ``material`` lives (``stem2d/weights/cam_cnn_<material>.ckpt``;
    it may not exist: only WS2 and MoS2 ship)."""
    return Path(str(resources.files("stem2d") / "weights" / f"cam_cnn_{material.lower()}.ckpt"))


def load_classifier(
    ckpt_path: str | Path | None = None,
    *,
    map_location: str | torch.device = "cpu",
    expected_classes: Sequence[str] | None = None,
    expected_tile_size_px: int | None = TILE_SIZE_PX,
    expected_pixel_size_A: float | None = CANONICAL_PIXEL_SIZE_A,
) -> CamClassifier:
    """Load a :class:`CamClassifier` for inference (eval mode) from a stem2d checkpoint.

    Parameters
    ----------
    ckpt_path : path, optional
        A training checkpoint (``checkpoints/*.ckpt``) or a slim one from
        :func:`export_checkpoint`; None loads the bundled ``stem2d/weights/cam_cnn_ws2.ckpt``.
    map_location : str or torch.device, keyword-only
    expected_classes : sequence of str, keyword-only, optional
        Refuse a checkpoint whose class names (in order) differ.
    expected_tile_size_px, expected_pixel_size_A : keyword-only, optional
        Refuse a checkpoint trained on other tiles (None skips the check).

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not a stem2d classifier checkpoint, or one of another class set or tile geometry.
    """
    path = _bundled_path() if ckpt_path is None else Path(ckpt_path)
    if not path.is_file():
        hint = " (the bundled weights are missing: reinstall stem2d)" if ckpt_path is None else ""
        raise FileNotFoundError(f"classifier checkpoint {str(path)!r} does not exist{hint}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "not ours"
        raise ValueError(f"checkpoint {str(path)!r} could not be read as a stem2d checkpoint: {err}") from err
    if not isinstance(ckpt, dict) or "stem2d" not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"checkpoint {str(path)!r} is not a stem2d classifier checkpoint (no 'stem2d' entry)")
    hp = ckpt.get("hyper_parameters", {})
    names = [str(c) for c in hp.get("class_names", [])]
    if expected_classes is not None and list(expected_classes) != names:
        raise ValueError(
            f"checkpoint {str(path)!r} was trained on classes {names}, expected {list(expected_classes)}"
        )
    tile = int(hp.get("tile_size_px", TILE_SIZE_PX))
    if expected_tile_size_px is not None and tile != expected_tile_size_px:
        raise ValueError(f"checkpoint {str(path)!r} was trained on {tile} px tiles, expected {expected_tile_size_px}")
    px = float(hp.get("pixel_size_A", CANONICAL_PIXEL_SIZE_A))
    if expected_pixel_size_A is not None and not np.isclose(px, expected_pixel_size_A, rtol=1e-3):
        raise ValueError(f"checkpoint {str(path)!r} was trained at {px} A/px, expected {expected_pixel_size_A}")
    net = build_net(ckpt["stem2d"]["net"])
    model = CamClassifier(
        net, class_names=names, noise_modes=hp.get("noise_modes", ()), tile_size_px=tile,
        pixel_size_A=px, channels_last=bool(hp.get("channels_last", True)),
    )
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise ValueError(f"checkpoint {str(path)!r}: weights do not fit its network spec: {err}") from err
    return model.to(map_location).eval()


def _check_tiles(tiles: np.ndarray, tile_size_px: int) -> np.ndarray:
    tiles = np.asarray(tiles)
    if tiles.ndim != 3 or tiles.shape[1:] != (tile_size_px, tile_size_px):
        hint = " (one tile: tiles[None])" if tiles.shape == (tile_size_px, tile_size_px) else ""
        raise ValueError(f"tiles: expected shape (N, {tile_size_px}, {tile_size_px}), got {tiles.shape}{hint}")
    if not np.issubdtype(tiles.dtype, np.number) or np.issubdtype(tiles.dtype, np.complexfloating):
        raise ValueError(f"tiles: expected real numbers, got dtype {tiles.dtype}")
    bad = ~np.isfinite(tiles).all(axis=(1, 2))
    if bad.any():
        raise ValueError(f"tiles: {int(bad.sum())} tile(s) contain NaN or inf, first at index {int(np.argmax(bad))}")
    return tiles


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bf16 natively (AVX512-BF16 / AMX), so bf16 autocast is a speed-up."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without the check: assume not
        return False


def classify_tiles(model: CamClassifier, tiles: np.ndarray, *, batch_size: int = 256,
                   bf16: bool = False) -> TileResult:
    """Classify tiles and localise each by the CAM of its predicted class.

    Parameters
    ----------
    model : CamClassifier
    tiles : ndarray, (N, T, T)
        Raw tiles (counts) at the model's pixel size; standardised here with
        :func:`stem2d.preprocess.standardize_tiles`.
    batch_size : int, keyword-only
    bf16 : bool, keyword-only
        Run the network under bf16 autocast (1.5x faster on a CPU with native bf16; on 1,000
        held-out tiles it changed no predicted class). Default False.

    Returns
    -------
    TileResult
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
    labels = probs.argmax(axis=1).astype(np.int64)
    return TileResult(labels, probs, cams, cam_peak(cams).reshape(n, 2), tuple(model.class_names))


def export_checkpoint(
    ckpt_path: str | Path, out_path: str | Path, *, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write a slim inference checkpoint (weights, inference hyper-parameters, net spec).

    The result loads with ``torch.load(weights_only=True)`` and :func:`load_classifier`;
    optimizer state, callbacks and loop state are dropped. ``metadata`` (plain values) is
    stored under ``ckpt["stem2d"]["metadata"]``.
    """
    ckpt = torch.load(Path(ckpt_path), map_location="cpu", weights_only=True)
    if "stem2d" not in ckpt:
        raise ValueError(f"checkpoint {str(ckpt_path)!r} is not a stem2d classifier checkpoint (no 'stem2d' entry)")
    hp = ckpt.get("hyper_parameters", {})
    slim = {
        "state_dict": {k: v.contiguous() for k, v in ckpt["state_dict"].items()},
        "hyper_parameters": {k: hp[k] for k in _INFERENCE_HPARAMS if k in hp},
        "stem2d": {"net": ckpt["stem2d"]["net"], "version": __version__, "metadata": to_plain(dict(metadata or {}))},
        "pytorch-lightning_version": ckpt.get("pytorch-lightning_version"),
    }
    with atomic_path(out_path) as tmp:
        torch.save(slim, tmp)
    return Path(out_path)


def run_tiles(cfg: DictConfig) -> Path:
    """``infer.py tiles=PATH.npy``: classify the tiles, write ``predictions.csv`` to the run folder."""
    if not cfg.get("tiles"):
        raise ValueError("infer: nothing to do; pass tiles=PATH.npy (an (N, 64, 64) array of tiles)")
    path = Path(str(cfg.tiles))
    if not path.is_file():
        raise FileNotFoundError(f"tiles={str(path)!r} does not exist")
    try:
        tiles = np.load(path, allow_pickle=False)
    except ValueError as err:
        raise ValueError(f"tiles={str(path)!r} is not a plain .npy array: {err}") from err
    expected = None
    if cfg.get("check_classes", True) and cfg.get("classes") is not None:
        expected = list(OmegaConf.to_container(cfg.classes, resolve=True))
    model = load_classifier(cfg.get("ckpt_path"), expected_classes=expected)
    try:
        result = classify_tiles(model, tiles, batch_size=int(cfg.get("batch_size", 256)))
    except ValueError as err:
        raise ValueError(f"tiles={str(path)!r}: {err}") from err
    out = output_dir(cfg) / "predictions.csv"
    with atomic_path(out) as tmp:
        result.to_frame().to_csv(tmp, index=False, float_format="%.4f")
    log.info("classified %d tiles -> %s", len(tiles), out)
    return out
