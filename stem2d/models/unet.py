"""A small U-Net for pixel-wise defect probability maps (pure ``nn.Module``; no Lightning).

Encoder blocks of (conv3x3-BN-ReLU) x ``convs_per_block`` with 2x2 max-pooling between levels,
a decoder of nearest-neighbour upsampling + 1x1 channel reduction, concatenation with the skip
connection and (conv3x3-BN-ReLU) x ``convs_per_block``, and a 1x1 head giving one logit channel.

The network is fully convolutional: any input whose height and width are multiples of
:attr:`UNet.size_multiple` (``2 ** (levels - 1)``) gives an output of the same size, and the
output is equivariant to input shifts by multiples of ``size_multiple`` away from the border
(what seamless tiled prediction in :mod:`stem2d.predict.pixelmap` relies on).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from stem2d.models.fused import ConvReLU, conv_add_relu, fusable_conv

__all__ = ["MaxPool2x2", "SkipConv", "UNet", "build_unet", "for_inference", "fuse_batchnorm", "fuse_relus", "split_skip_convs"]


def _block(c_in: int, c_out: int, n: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [
            nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """U-Net returning per-pixel defect logits.

    Parameters
    ----------
    num_classes : int, default 2
        Pixel classes: 2 gives one logit channel (defect vs background, sigmoid); more give one
        logit channel per class (softmax).
    in_channels : int, keyword-only
        Image channels (1 for HAADF).
    channels : sequence of int, keyword-only
        Feature channels per level, finest first, e.g. ``(16, 32, 64)`` (3 levels, 2 poolings).
    convs_per_block : int, keyword-only
        3x3 convolutions per encoder and decoder block.

    Examples
    --------
    >>> net = UNet(channels=(8, 16, 32)).eval()  # ~28k parameters, ~45 ms per 512 x 512 frame on 2 CPU cores
    >>> net(torch.zeros(1, 1, 64, 64)).shape
    torch.Size([1, 1, 64, 64])
    """

    def __init__(
        self,
        num_classes: int = 2,
        *,
        in_channels: int = 1,
        channels: Sequence[int] = (8, 16, 32),
        convs_per_block: int = 2,
    ) -> None:
        super().__init__()
        channels = [int(c) for c in channels]
        if len(channels) < 2 or min(channels) < 1 or convs_per_block < 1 or in_channels < 1 or num_classes < 2:
            raise ValueError(
                "UNet: need num_classes >= 2, >= 2 levels of positive channels, convs_per_block >= 1 and "
                f"in_channels >= 1; got num_classes={num_classes}, channels={channels}, "
                f"convs_per_block={convs_per_block}, in_channels={in_channels}"
            )
        self._spec = {"num_classes": int(num_classes), "in_channels": int(in_channels), "channels": channels,
                      "convs_per_block": int(convs_per_block)}
        self.encoders = nn.ModuleList()
        c_prev = in_channels
        for c in channels:
            self.encoders.append(_block(c_prev, c, convs_per_block))
            c_prev = c
        self.pool = nn.MaxPool2d(2)
        self.reducers = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for c_coarse, c_fine in zip(channels[:0:-1], channels[-2::-1]):
            self.reducers.append(nn.Conv2d(c_coarse, c_fine, 1))
            self.decoders.append(_block(2 * c_fine, c_fine, convs_per_block))
        self.head = nn.Conv2d(channels[0], 1 if num_classes == 2 else num_classes, 1)

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (``2 ** poolings``)."""
        return 2 ** (len(self.encoders) - 1)

    @property
    def receptive_radius_px(self) -> int:
        """Largest distance (px) from an output pixel to an input pixel that can change it.

        Encoder convolutions reach ``c (2^L - 1)``, decoder ones ``c (2^(L-1) - 1)`` and the
        pooling grid ``2^(L-1) - 1`` more (``c`` convs per block, ``L`` levels); 23 px for 3
        levels of 2 convolutions.
        """
        c, levels = self._spec["convs_per_block"], len(self.encoders)
        return c * (2**levels - 1) + c * (2 ** (levels - 1) - 1) + 2 ** (levels - 1) - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, 1, H, W) (or (B, num_classes, H, W) for more than 2 classes) for images
        (B, C, H, W) whose H and W are multiples of ``size_multiple``."""
        m = self.size_multiple
        if x.ndim != 4 or x.shape[-2] % m or x.shape[-1] % m:
            raise ValueError(f"UNet: input must be (B, C, H, W) with H, W multiples of {m}, got {tuple(x.shape)}")
        x = x.contiguous(memory_format=torch.channels_last)  # ~2x faster convolutions on CPU
        skips = []
        for i, enc in enumerate(self.encoders):
            if i:
                x = self.pool(x)
            x = enc(x)
            skips.append(x)
        for reduce, dec, skip in zip(self.reducers, self.decoders, skips[-2::-1]):
            x = _decode(dec, nn.functional.interpolate(reduce(x), scale_factor=2, mode="nearest"), skip)
        return self.head(x)

    def spec(self) -> dict[str, Any]:
        """Constructor arguments plus the class name: enough to rebuild the network."""
        return {"name": type(self).__name__, **self._spec}


def _decode(block: nn.Sequential, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """A decoder block on the upsampled coarse features ``x`` and the skip connection: on their
    concatenation, or, where :func:`split_skip_convs` made its first convolution a
    :class:`SkipConv`, on the two apart."""
    first, *rest = block
    if not isinstance(first, SkipConv):
        return block(torch.cat([x, skip], dim=1))
    x = first(x, skip)
    for layer in rest:
        x = layer(x)
    return x


class SkipConv(nn.Module):
    """``conv(cat([x, skip], dim=1))`` computed as ``conv_x(x) + conv_skip(skip)`` (the input
    channels of ``conv`` split in two): the same numbers to float32 rounding without the
    concatenated copy. In channels_last memory a concatenation interleaves the channels of every
    pixel; on the CPU that copy took ~21 % of the U-Net's time (1 thread, 864 px tile, torch
    profiler) and the split forward is ~11 % faster."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if conv.in_channels % 2 or conv.groups != 1 or conv.padding_mode != "zeros":
            raise ValueError(f"SkipConv: need an ungrouped, zero-padded convolution of an even channel count, got {conv}")
        half = conv.in_channels // 2
        self.conv_x, self.conv_skip = (
            nn.Conv2d(half, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                      dilation=conv.dilation, bias=bias, padding_mode=conv.padding_mode)
            for bias in (conv.bias is not None, False))
        with torch.no_grad():
            self.conv_x.weight.copy_(conv.weight[:, :half])
            self.conv_skip.weight.copy_(conv.weight[:, half:])
            if conv.bias is not None:
                self.conv_x.bias.copy_(conv.bias)
        self.to(device=conv.weight.device, memory_format=_memory_format(conv.weight))

    #: The block's ReLU folded in (:func:`fuse_relus`): ``relu(conv_x(x) + conv_skip(skip))``.
    relu: bool = False

    def extra_repr(self) -> str:
        return f"relu={self.relu}"

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        # the concatenated convolution: for ONNX Runtime (which runs it faster) and under autocast
        # (two half-precision convolutions round twice where one rounds once: bf16 maps would
        # differ from the training network's more than float32 rounding)
        if torch.onnx.is_in_onnx_export() or torch.is_autocast_enabled(x.device.type):
            out = nn.functional.conv2d(torch.cat([x, skip], dim=1),
                                       torch.cat([self.conv_x.weight, self.conv_skip.weight], dim=1),
                                       self.conv_x.bias, self.conv_x.stride, self.conv_x.padding, self.conv_x.dilation)
            return torch.relu(out) if self.relu else out
        if self.relu and fusable_conv(self.conv_x):
            return conv_add_relu(self.conv_x, x, self.conv_skip(skip))
        out = self.conv_x(x)
        out += self.conv_skip(skip)
        return torch.relu(out) if self.relu else out


def _memory_format(t: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if t.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format


def build_unet(spec: dict[str, Any]) -> UNet:
    """Rebuild a :class:`UNet` from :meth:`UNet.spec` output; ``ValueError`` for another name."""
    spec = dict(spec)
    name = spec.pop("name", "UNet")
    if name != "UNet":
        raise ValueError(f"network {name!r} is not 'UNet'")
    return UNet(**spec)


def for_inference(net: UNet) -> UNet:
    """The prediction copy of a U-Net: BatchNorms folded (:func:`fuse_batchnorm`), the skip
    concatenations split (:func:`split_skip_convs`), ReLUs fused into the convolutions before
    them (:func:`fuse_relus`) and the 2 x 2 max-pooling as element-wise maxima
    (:class:`MaxPool2x2`); eval mode, same outputs to float32 rounding."""
    fast = fuse_relus(split_skip_convs(fuse_batchnorm(net)))
    fast.pool = MaxPool2x2()
    return fast


def fuse_relus(net: UNet) -> UNet:
    """``net`` (changed in place and returned) with every convolution followed by a ReLU (past
    the Identity a folded BatchNorm left) as one :class:`~stem2d.models.fused.ConvReLU`, and every
    :class:`SkipConv` taking its block's ReLU: one fused oneDNN call each on the CPU (ReLU and skip
    addition as post-ops), the plain modules elsewhere. For prediction."""
    for block in [*net.encoders, *net.decoders]:
        layers = list(block)
        for i, layer in enumerate(layers):
            after = next((j for j in range(i + 1, len(layers)) if not isinstance(layers[j], nn.Identity)), None)
            if after is None or not isinstance(layers[after], nn.ReLU):
                continue
            if isinstance(layer, SkipConv):
                layer.relu = True
            elif fusable_conv(layer):
                block[i] = ConvReLU(layer)
            else:
                continue
            block[after] = nn.Identity()
    return net


class MaxPool2x2(nn.Module):
    """``nn.MaxPool2d(2)`` of inputs with even height and width (the U-Net's always are) as two
    element-wise maxima of strided views: the same values, ~35 % less time than the pooling
    kernel on channels_last CPU tensors (the U-Net's full-resolution level: ~5 ms per 864 px
    tile). For prediction: its gradient at ties differs from ``MaxPool2d``'s."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if h % 2 or w % 2:
            raise ValueError(f"MaxPool2x2: need an even height and width, got {tuple(x.shape)}")
        if torch.onnx.is_in_onnx_export() or torch.jit.is_tracing():  # one MaxPool node, not views
            return nn.functional.max_pool2d(x, 2)
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            v = x.permute(0, 2, 3, 1).reshape(n, h // 2, 2, w // 2, 2, c)  # a view: (n, h, w, c) in memory
            rows = torch.maximum(v[:, :, 0], v[:, :, 1])
            return torch.maximum(rows[:, :, :, 0], rows[:, :, :, 1]).permute(0, 3, 1, 2)
        v = x.reshape(n, c, h // 2, 2, w // 2, 2)
        rows = torch.maximum(v[:, :, :, 0], v[:, :, :, 1])
        return torch.maximum(rows[..., 0], rows[..., 1])


def split_skip_convs(net: UNet) -> UNet:
    """``net`` (changed in place and returned) with the first convolution of every decoder block
    a :class:`SkipConv`: no concatenated copy of the skip connection per block. For prediction:
    the ``state_dict`` no longer matches a training checkpoint's."""
    for block in net.decoders:
        if isinstance(block[0], nn.Conv2d):
            block[0] = SkipConv(block[0])
    return net


def fuse_batchnorm(net: nn.Module) -> nn.Module:
    """An inference copy of ``net`` with every BatchNorm folded into the convolution before it.

    In eval mode a BatchNorm is an affine map per channel, so ``conv -> bn`` equals one
    convolution with rescaled weights and a bias (~10 % faster for the U-Net on CPU, ~20 % for
    CamNet; outputs agree to float32 rounding, ~1e-5 in the logits). Any module whose
    ``nn.Sequential`` parts hold ``Conv2d, BatchNorm2d`` pairs works (UNet, CamNet, a
    CamClassifier). The copy is in eval mode and meant for prediction only: its ``state_dict``
    differs from a training checkpoint's (``net`` itself is left unchanged).
    """
    fused = copy.deepcopy(net).eval()
    for block in fused.modules():
        if not isinstance(block, nn.Sequential):
            continue
        for i in range(len(block) - 1):
            conv, bn = block[i], block[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                block[i] = fuse_conv_bn_eval(conv, bn)
                block[i + 1] = nn.Identity()
    return fused
