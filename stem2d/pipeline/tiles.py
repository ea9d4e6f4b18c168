"""``python infer.py tiles=X.npy``: classify an array of tiles into ``predictions.csv``."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from stem2d.classes import ClassSet
from stem2d.io.frames import is_blank
from stem2d.materials import get_material
from stem2d.models.loading import load_classifier
from stem2d.models.projected import project_classifier
from stem2d.output.files import atomic_path
from stem2d.pipeline.schema import INFER, validate
from stem2d.pipeline.utils import output_dir
from stem2d.predict.classify import classify_tiles

log = logging.getLogger(__name__)

__all__ = ["run_tiles"]


def run_tiles(cfg: DictConfig) -> Path:
    """``infer.py tiles=PATH.npy``: classify the tiles, write ``predictions.csv`` to the run folder."""
    validate(cfg, INFER, where="infer")
    if not cfg.get("tiles"):
        raise ValueError("infer: nothing to do; pass tiles=PATH.npy (an (N, 64, 64) array of tiles)")
    path = Path(str(cfg.tiles))
    if not path.is_file():
        raise FileNotFoundError(f"tiles={str(path)!r} does not exist")
    try:
        tiles = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"tiles={str(path)!r} is not a plain .npy array: {err}") from err
    if not isinstance(tiles, np.ndarray):  # an .npz archive
        names = list(tiles.files)
        tiles.close()
        raise ValueError(f"tiles={str(path)!r} is an .npz archive (arrays {names}); give one .npy file "
                         "holding an (N, 64, 64) array (np.save)")
    model = load_classifier(cfg.get("ckpt_path"))
    if cfg.get("classes") is not None:  # a site-vocabulary classifier is projected onto the classes
        classes = ClassSet.from_mapping(OmegaConf.to_container(cfg.classes, resolve=True))
        model = project_classifier(model, classes, get_material(str(cfg.material)),
                                   strict=bool(cfg.classify.check_classes))
    try:
        result = classify_tiles(model, tiles, batch_size=int(cfg.classify.batch_size))
    except ValueError as err:
        raise ValueError(f"tiles={str(path)!r}: {err}") from err
    if is_blank(tiles).all():
        raise ValueError(f"tiles={str(path)!r}: all {len(tiles)} tiles are constant (e.g. all zeros): "
                         "there is no image to classify")
    out = output_dir(cfg) / "predictions.csv"
    with atomic_path(out) as tmp:
        result.to_frame().to_csv(tmp, index=False, float_format="%.4f")
    log.info("classified %d tiles -> %s", len(tiles), out)
    return out
