"""Load and export the stem2d classifier checkpoints (slim, ``weights_only``-safe) and find the bundled ones.

Loading for prediction (:func:`load_classifier`, :func:`load_unet`) builds the plain networks
(:class:`~stem2d.models.inference.TileClassifier`, :class:`~stem2d.models.unet.UNet`) and never
imports Lightning; only :func:`load_pixel_predictor` (the Lightning module, for training code)
does.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stem2d import CANONICAL_PIXEL_SIZE_A, TILE_SIZE_PX, __version__
from stem2d.models.inference import TileClassifier
from stem2d.models.nets import build_net
from stem2d.models.unet import UNet, build_unet
from stem2d.output.files import atomic_path
from stem2d.output.plain import to_plain

__all__ = [
    "BUNDLED_CHECKPOINT", "bundled_classifier_path", "bundled_site_classifier_path", "classifier_path_for",
    "export_checkpoint", "load_classifier", "load_pixel_predictor", "load_unet", "save_slim_checkpoint", "weights_dir",
]

log = logging.getLogger(__name__)

#: File name of the bundled checkpoint inside the ``stem2d/weights`` package folder.
BUNDLED_CHECKPOINT = "cam_cnn_ws2.ckpt"
#: Hyper-parameters a slim checkpoint keeps (everything needed for inference).
_INFERENCE_HPARAMS = ("class_names", "noise_modes", "tile_size_px", "pixel_size_A", "channels_last")


def weights_dir() -> Path:
    """The folder of the bundled weights (``stem2d/weights``)."""
    return Path(str(resources.files("stem2d") / "weights"))


def _bundled_path() -> Path:
    return bundled_classifier_path("WS2")


def bundled_classifier_path(material: str) -> Path:
    """Where the bundled classifier of ``material`` lives (``stem2d/weights/cam_cnn_<material>.ckpt``;
    it may not exist: only WS2 and MoS2 ship)."""
    return weights_dir() / f"cam_cnn_{material.lower()}.ckpt"


def bundled_site_classifier_path(material: str) -> Path:
    """Where the bundled site-vocabulary classifier of one host material lives
    (``stem2d/weights/cam_cnn_<material>_sites.ckpt``; it may not exist: alloys and Janus layers
    have none and use the family model)."""
    return weights_dir() / f"cam_cnn_{material.lower()}_sites.ckpt"


def classifier_path_for(material: str, class_names: Sequence[str], ckpt_path: str | Path | None = None
                        ) -> str | None:
    """The classifier checkpoint to load for ``material`` and the configured ``class_names``.

    ``ckpt_path`` if given; else, for the site vocabulary (``classes=sites``), the material's own
    site model ``cam_cnn_<material>_sites.ckpt`` when it ships (told the material, it has no
    sublattice ambiguity: a MoSe2 Se2 site looks like a WSe2 W site to the family model), else the
    bundled family model ``cam_cnn_mx2.ckpt``; else the bundled classifier of the material when it ships and has
    these classes; else None (the bundled WS2 weights), with a warning saying why.
    """
    from stem2d.classes import SITE_CLASSES

    if ckpt_path is not None:
        return str(ckpt_path)
    if tuple(class_names) == SITE_CLASSES:
        for path in (bundled_site_classifier_path(material), bundled_classifier_path("mx2")):
            if path.is_file():
                return str(path)
    own = bundled_classifier_path(material)
    if material == "WS2":
        return None
    if not own.is_file():
        log.warning("no bundled classifier for %s: using the WS2 weights (train one, e.g. "
                    "python train.py experiment=mos2_cam_cnn, and pass ckpt_path=)", material)
        return None
    own_names = load_classifier(own).class_names
    if tuple(own_names) != tuple(class_names):
        log.warning("the bundled %s classifier has classes %s; add classes=%s to use it. Using the "
                    "WS2 weights", material, list(own_names), material.lower())
        return None
    return str(own)


def load_unet(ckpt_path: str | Path | None = None) -> torch.nn.Module:
    """The U-Net pixel network for prediction (eval mode, :func:`~stem2d.models.unet.for_inference`:
    BatchNorms folded into the convolutions, skip concatenations split).

    ``ckpt_path`` None loads the bundled ``stem2d/weights/unet_ws2.ckpt``. The network is built
    from the checkpoint's spec and weights alone (no Lightning module).
    """
    from stem2d.models.unet import for_inference

    path = weights_dir() / "unet_ws2.ckpt" if ckpt_path is None else Path(ckpt_path)
    ckpt, what = _unet_checkpoint(path, map_location="cpu")
    net = build_unet(ckpt["stem2d"]["net"])
    weights = {k[len("net."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    missing = [k for k in net.state_dict() if k not in weights]
    if missing:
        raise ValueError(f"{path}: checkpoint lacks network weights {missing[:3]}...")
    net.load_state_dict(weights)
    if ckpt.get("hyper_parameters", {}).get("channels_last", True):  # as PixelPredictor keeps it
        net = net.to(memory_format=torch.channels_last)
    return for_inference(net.eval())


def load_classifier(
    ckpt_path: str | Path | None = None,
    *,
    map_location: str | torch.device = "cpu",
    expected_classes: Sequence[str] | None = None,
    expected_tile_size_px: int | None = TILE_SIZE_PX,
    expected_pixel_size_A: float | None = CANONICAL_PIXEL_SIZE_A,
) -> TileClassifier:
    """Load a tile classifier for inference (eval mode) from a stem2d checkpoint.

    The result is a plain :class:`~stem2d.models.inference.TileClassifier` (no Lightning): it
    classifies with :func:`stem2d.predict.classify.classify_tiles` like the training module.

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
        raise ValueError(f"classifier checkpoint {str(path)!r} (ckpt_path) is not a checkpoint that loads safely with "
                         f"weights_only=True: a pickle with code, a text file or a damaged file "
                         f"({type(err).__name__})") from err
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("stem2d"), dict) or "state_dict" not in ckpt:
        raise ValueError(f"checkpoint {str(path)!r} is not a stem2d classifier checkpoint (no 'stem2d' entry)")
    net_name = (ckpt["stem2d"].get("net") or {}).get("name")
    if net_name == "UNet":
        raise ValueError(f"checkpoint {str(path)!r} holds the U-Net pixel predictor, not a tile classifier: give it as "
                         "unet_ckpt_path=, and a classifier (train.py run or stem2d/weights/cam_cnn_*.ckpt) as ckpt_path=")
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
    model = TileClassifier(
        net, class_names=names, noise_modes=hp.get("noise_modes", ()), tile_size_px=tile,
        pixel_size_A=px, channels_last=bool(hp.get("channels_last", True)),
    )
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise ValueError(f"checkpoint {str(path)!r}: weights do not fit its network spec: {err}") from err
    return model.to(map_location).eval()


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


#: Hyper-parameters that only matter for training (left out of slim checkpoints).
_TRAINING_ONLY = ("optimizer", "scheduler", "compile")


def save_slim_checkpoint(src: str | Path, dst: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
    """Copy a PixelPredictor Lightning checkpoint keeping only weights, net spec and hparams.

    Parameters
    ----------
    src : path
        Full Lightning checkpoint (with optimizer state, callbacks, ...).
    dst : path
        Where to write the slim checkpoint (a few hundred kB for the default U-Net).
    extra : dict, optional
        Plain values stored under ``checkpoint["stem2d"]`` (e.g. the command that trained it).
    """
    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    if "stem2d" not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{src}: not a PixelPredictor checkpoint (no 'stem2d' / 'state_dict' entry)")
    hparams = {k: v for k, v in ckpt.get("hyper_parameters", {}).items() if k not in _TRAINING_ONLY}
    slim = {
        "state_dict": {k: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")},
        "hyper_parameters": hparams,
        "stem2d": {**ckpt["stem2d"], **to_plain(extra or {})},
        "pytorch-lightning_version": ckpt.get("pytorch-lightning_version"),
    }
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(slim, dst)
    return dst


def _unet_checkpoint(path: Path, *, map_location: str) -> tuple[dict, str]:
    """The checked contents of a (full or slim) PixelPredictor checkpoint, and how to name it."""
    what = f"U-Net checkpoint {str(path)!r} (unet_ckpt_path)"
    if not path.is_file():
        raise FileNotFoundError(f"{what} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "not a checkpoint"
        raise ValueError(f"{what} is not a checkpoint that loads safely with weights_only=True: a pickle "
                         f"with code, a text file or a damaged file ({type(err).__name__})") from err
    stem2d_entry = ckpt.get("stem2d") if isinstance(ckpt, dict) else None
    spec = stem2d_entry.get("net") if isinstance(stem2d_entry, dict) else None
    if not isinstance(spec, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{what} is not a stem2d PixelPredictor checkpoint (no 'stem2d.net' spec or state_dict)")
    if spec.get("name", "UNet") != "UNet":
        raise ValueError(f"{what} holds a {spec.get('name')} network (a tile classifier?), not the U-Net pixel "
                         "predictor; a classifier goes to ckpt_path=, a U-Net from train.py experiment=exp_unet "
                         "to unet_ckpt_path=")
    return ckpt, what


def load_pixel_predictor(path: str | Path, *, map_location: str = "cpu"):
    """Load a (full or slim) PixelPredictor checkpoint as the Lightning module, in eval mode
    (for training code; prediction uses :func:`load_unet`, which does not import Lightning).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        The file is not a PixelPredictor checkpoint or names an unknown network.
    """
    from stem2d.models.pixel import PixelPredictor

    path = Path(path)
    ckpt, _ = _unet_checkpoint(path, map_location=map_location)
    net: UNet = build_unet(ckpt["stem2d"]["net"])
    hparams = {k: v for k, v in ckpt.get("hyper_parameters", {}).items() if k not in _TRAINING_ONLY}
    model = PixelPredictor(net, **hparams)
    model.load_state_dict(ckpt["state_dict"], strict=False)
    missing = [k for k in model.state_dict() if k.startswith("net.") and k not in ckpt["state_dict"]]
    if missing:
        raise ValueError(f"{path}: checkpoint lacks network weights {missing[:3]}...")
    return model.eval()
