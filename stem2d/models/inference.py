"""The tile classifier for prediction as a plain ``nn.Module`` (no Lightning, no torchmetrics).

:func:`stem2d.models.loading.load_classifier` returns a :class:`TileClassifier`: the pure network
(:mod:`stem2d.models.nets`) plus what inference reads from a checkpoint (class names, tile
geometry), with the interface of the training module :class:`stem2d.models.classifier.CamClassifier`
that prediction uses (``class_names``, ``hparams``, ``device``, ``forward``, ``forward_with_cam``;
same ``state_dict`` keys). Loading it imports neither Lightning nor torchmetrics, so
``python infer.py`` starts in about the time ``import torch`` takes (issue #16).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from stem2d import CANONICAL_PIXEL_SIZE_A, TILE_SIZE_PX

__all__ = ["HParams", "TileClassifier"]


class HParams(dict):
    """A dict whose keys read as attributes too (as Lightning's ``hparams``)."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class TileClassifier(nn.Module):
    """A trained CAM tile classifier for prediction.

    Parameters
    ----------
    net : nn.Module
        The network (``forward`` -> logits (B, C); ``forward_with_cam`` -> logits and the
        predicted class's CAM (B, H, W)).
    class_names : sequence of str, keyword-only
        One per output, in order.
    noise_modes : sequence of str, keyword-only
        The noise modes it was trained on (informative).
    tile_size_px : int, keyword-only, default 64
    pixel_size_A : float, keyword-only, default 0.3
        Tile geometry it was trained on.
    channels_last : bool, keyword-only, default True
        Keep the network's weights in channels-last memory format (faster convolutions on CPU).
    """

    def __init__(self, net: nn.Module, *, class_names: Sequence[str], noise_modes: Sequence[str] = (),
                 tile_size_px: int = TILE_SIZE_PX, pixel_size_A: float = CANONICAL_PIXEL_SIZE_A,
                 channels_last: bool = True):
        super().__init__()
        names = [str(c) for c in class_names]
        outputs = getattr(getattr(net, "head", None), "out_features", None)
        if outputs is not None and outputs != len(names):
            raise ValueError(f"TileClassifier: the network has {outputs} outputs but class_names has "
                             f"{len(names)} entries {names}")
        self.hparams = HParams(class_names=names, noise_modes=[str(m) for m in noise_modes],
                               tile_size_px=int(tile_size_px), pixel_size_A=float(pixel_size_A),
                               channels_last=bool(channels_last))
        self.net = net.to(memory_format=torch.channels_last) if channels_last else net

    @property
    def class_names(self) -> list[str]:
        return list(self.hparams.class_names)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, C) of standardised tiles (B, 1, H, W)."""
        return self.net(x)

    def forward_with_cam(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, C) and the predicted class's CAM (B, H, W) in one pass."""
        return self.net.forward_with_cam(x)
