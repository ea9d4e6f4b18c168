"""Pure CAM-capable classification networks (no Lightning, no Hydra).

Both networks end in global average pooling (GAP) and a single linear layer, so the class
activation map of class c is ``CAM_c = sum_k w[c, k] A_k`` over the last feature maps ``A``
(Zhou et al., CVPR 2016, arXiv:1512.04150), and ``mean(CAM_c) + b_c`` equals the logit of c.
CamNet may instead pool with fixed Gaussian weights g around the tile centre; then
``sum(g * CAM_c) + b_c`` is the logit.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from stem2d.models.cam import class_activation_map

__all__ = ["CamNet", "SeedCNN", "NETS", "build_net", "centre_weights"]


@functools.lru_cache(maxsize=8)
def centre_weights(shape: tuple[int, int], sigma_cells: float | None) -> torch.Tensor:
    """Pooling weights (h, w) summing to 1: uniform (GAP) for None, else a Gaussian of
    ``sigma_cells`` feature cells around the map centre (cached: the same few maps every batch;
    callers must not modify the tensor)."""
    h, w = shape
    # a normal tensor even when first asked for under torch.inference_mode (classification),
    # so the cached weights still serve training later in the same process
    with torch.inference_mode(False):
        if sigma_cells is None:
            return torch.full((h, w), 1.0 / (h * w))
        r = torch.arange(h, dtype=torch.float32) - (h - 1) / 2
        c = torch.arange(w, dtype=torch.float32) - (w - 1) / 2
        g = torch.exp(-(r[:, None] ** 2 + c[None, :] ** 2) / (2 * float(sigma_cells) ** 2))
        return g / g.sum()


class _GapClassifier(nn.Module):
    """Shared head: ``features`` -> average pooling -> linear, plus the class activation map.

    The pooling is global average pooling unless ``pool_sigma_cells`` is set: then a
    Gaussian-weighted average around the map centre, so ``logit_c = sum_xy g(x, y) CAM_c(x, y)
    + b_c`` (the CAM keeps Zhou et al.'s definition; the centre of the window, where the
    detector put the defect, counts most).
    """

    head: nn.Linear
    pool_sigma_cells: float | None = None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last feature maps ``A``, shape (B, K, h, w)."""
        raise NotImplementedError

    def pool(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, K, h, w) -> (B, K): GAP, or the centre-weighted average."""
        if self.pool_sigma_cells is None:
            return feats.mean(dim=(-2, -1))
        g = centre_weights(tuple(feats.shape[-2:]), self.pool_sigma_cells)
        return torch.einsum("bkhw,hw->bk", feats, g.to(feats.device, feats.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, shape (B, num_classes), for images of shape (B, C, H, W)."""
        return self.head(self.pool(self.features(x)))

    def forward_with_cam(
        self, x: torch.Tensor, class_idx: torch.Tensor | int | None = None, *, upsample: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the CAM of ``class_idx`` (None: the predicted class) in one pass.

        Returns
        -------
        logits : Tensor, (B, num_classes)
        cam : Tensor, float32, (B, H, W) at input size when ``upsample`` else (B, h, w).
        """
        feats = self.features(x)
        logits = self.head(self.pool(feats))
        if class_idx is None:
            class_idx = logits.argmax(dim=1)
        size = tuple(x.shape[-2:]) if upsample else None
        cam = class_activation_map(feats, self.head.weight, class_idx, size=size)
        return logits, cam

    def cam(
        self, x: torch.Tensor, class_idx: torch.Tensor | int | None = None, *, upsample: bool = True
    ) -> torch.Tensor:
        """Class activation map ``sum_k w[c, k] A_k`` (without the bias).

        Parameters
        ----------
        x : Tensor, (B, C, H, W)
        class_idx : int or Tensor (B,) or None
            Class whose map to return; None uses each image's predicted class.
        upsample : bool, keyword-only
            Bilinearly resize the map to the input size (H, W). Default True.

        Returns
        -------
        Tensor, float32, (B, H, W) (or (B, h, w) of the feature maps when not upsampled).
        """
        return self.forward_with_cam(x, class_idx, upsample=upsample)[1]

    def spec(self) -> dict[str, Any]:
        """Constructor arguments plus the class name: enough to rebuild the network."""
        return {"name": type(self).__name__, **self._spec}


_PADDING_MODES = ("zeros", "reflect", "replicate")


def _conv_bn_relu(c_in: int, c_out: int, padding_mode: str) -> list[nn.Module]:
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False, padding_mode=padding_mode)
    return [conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class CamNet(_GapClassifier):
    """Small VGG-like CAM classifier: blocks of (conv3x3-BN-ReLU) x n with 2x2 max-pool between.

    With ``channels=(16, 32, 64)`` a 64 x 64 tile gives 16 x 16 last feature maps (one cell
    per 4 x 4 px = 1.2 A at 0.3 A/px), fine enough to localise a defect column, and a
    receptive field of ~30 px (~9 A, about three WS2 lattice constants).

    Parameters
    ----------
    num_classes : int
    in_channels : int, keyword-only
        Image channels (1 for HAADF).
    channels : sequence of int, keyword-only
        Feature channels of each block; len(channels) - 1 max-pools (first block has one conv).
    convs_per_block : int, keyword-only
        Convolutions in every block after the first.
    dropout : float, keyword-only
        Dropout probability before the linear layer (0 disables it).
    padding_mode : {"reflect", "replicate", "zeros"}, keyword-only
        Border handling of the convolutions. ``"reflect"`` (default) continues the lattice
        past the tile edge; zero padding creates artificial edges whose features dominated
        the class activation maps of vacancies in our runs.
    pool_sigma_px : float or None, keyword-only
        None (default): global average pooling, as in Zhou et al. A number: Gaussian-weighted
        pooling of this sigma in input pixels around the tile centre, for windows centred on a
        detected defect whose neighbours must not decide the class.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        in_channels: int = 1,
        channels: Sequence[int] = (16, 32, 64),
        convs_per_block: int = 2,
        dropout: float = 0.0,
        padding_mode: str = "reflect",
        pool_sigma_px: float | None = None,
    ) -> None:
        super().__init__()
        channels = [int(c) for c in channels]
        if pool_sigma_px is not None and not float(pool_sigma_px) > 0:
            raise ValueError(f"CamNet: pool_sigma_px={pool_sigma_px} must be > 0 or None")
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"CamNet: padding_mode={padding_mode!r} is not one of {list(_PADDING_MODES)}")
        if num_classes < 2 or not channels or min(channels) < 1 or convs_per_block < 1:
            raise ValueError(
                f"CamNet: need num_classes >= 2, non-empty positive channels and convs_per_block >= 1; "
                f"got num_classes={num_classes}, channels={channels}, convs_per_block={convs_per_block}"
            )
        self._spec = {
            "num_classes": int(num_classes),
            "in_channels": int(in_channels),
            "channels": channels,
            "convs_per_block": int(convs_per_block),
            "dropout": float(dropout),
            "padding_mode": padding_mode,
            "pool_sigma_px": None if pool_sigma_px is None else float(pool_sigma_px),
        }
        stride = 2 ** (len(channels) - 1)
        self.pool_sigma_cells = None if pool_sigma_px is None else float(pool_sigma_px) / stride
        layers: list[nn.Module] = _conv_bn_relu(in_channels, channels[0], padding_mode)
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers.append(nn.MaxPool2d(2))
            layers += _conv_bn_relu(c_in, c_out, padding_mode)
            for _ in range(convs_per_block - 1):
                layers += _conv_bn_relu(c_out, c_out, padding_mode)
        self.body = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(channels[-1], num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.pool(self.features(x))))


class SeedCNN(_GapClassifier):
    """The original study's network: Conv(16, 6x6 'same')-MaxPool-Conv(32)-MaxPool-Conv(64)-MaxPool-GAP-Dense.

    ReLU after each convolution (Keras default of the study); the CAM uses the maps after
    the last max-pool (8 x 8 for a 64 x 64 tile), which is what its GAP saw.

    Parameters
    ----------
    num_classes : int
    in_channels : int, keyword-only
    channels : sequence of int, keyword-only
        Filters of the three convolutions.
    kernel_size : int, keyword-only
        Square kernel size in px (6 in the study; even sizes pad asymmetrically, as Keras does).
    """

    def __init__(
        self,
        num_classes: int,
        *,
        in_channels: int = 1,
        channels: Sequence[int] = (16, 32, 64),
        kernel_size: int = 6,
    ) -> None:
        super().__init__()
        channels = [int(c) for c in channels]
        if num_classes < 2 or not channels or min(channels) < 1 or kernel_size < 1:
            raise ValueError(
                f"SeedCNN: need num_classes >= 2, positive channels and kernel_size; "
                f"got num_classes={num_classes}, channels={channels}, kernel_size={kernel_size}"
            )
        self._spec = {
            "num_classes": int(num_classes),
            "in_channels": int(in_channels),
            "channels": channels,
            "kernel_size": int(kernel_size),
        }
        layers: list[nn.Module] = []
        c_in = in_channels
        before, after = (kernel_size - 1) // 2, kernel_size // 2
        for c_out in channels:
            layers += [
                nn.ZeroPad2d((before, after, before, after)),  # 'same' padding, Keras-style for even k
                nn.Conv2d(c_in, c_out, kernel_size),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in = c_out
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(channels[-1], num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


#: The networks a checkpoint may name (an allow-list: checkpoints never import arbitrary code).
NETS: dict[str, type[_GapClassifier]] = {"CamNet": CamNet, "SeedCNN": SeedCNN}


def build_net(spec: dict[str, Any]) -> _GapClassifier:
    """Rebuild a network from :meth:`spec` output; ``ValueError`` for an unknown name."""
    spec = dict(spec)
    name = spec.pop("name", None)
    if name not in NETS:
        raise ValueError(f"network {name!r} is not one of {sorted(NETS)}")
    num_classes = spec.pop("num_classes")
    return NETS[name](num_classes, **spec)
