"""Convolution + ReLU (and + skip addition) as one oneDNN call for CPU prediction.

``torch.ops.mkldnn._convolution_pointwise`` is the fused convolution torch.compile's CPU backend
(Inductor) emits for ``relu(conv(x))``: the ReLU (and an addition) run as post-ops while the
output is in cache instead of as extra passes over it. It is a private op, so it is probed once
against the plain modules and used only where it applies (float32 CPU tensors, zero padding,
under no_grad or inference_mode, outside autocast, tracing and ONNX export); everywhere else the plain modules run. The
U-Net's prediction copy (:func:`stem2d.models.unet.for_inference`) maps a 1607 px frame in ~9 %
less time with it (bit-identical probabilities on the benchmark's frame).
"""

from __future__ import annotations

import functools
import logging

import torch
from torch import nn

__all__ = ["ConvReLU", "conv_add_relu", "fusable", "fusable_conv"]

log = logging.getLogger(__name__)


def fusable(*tensors: torch.Tensor) -> bool:
    """Whether the fused ops apply to these inputs (see the module docstring)."""
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():  # first: the probe must not be traced
        return False
    return (not torch.is_grad_enabled()  # no autograd formula: prediction only
            and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
            and not torch.is_autocast_enabled("cpu") and _available())


def fusable_conv(conv: nn.Module) -> bool:
    """A plain 2D convolution the fused op can run (zero padding, given as numbers)."""
    return (isinstance(conv, nn.Conv2d) and conv.padding_mode == "zeros" and not isinstance(conv.padding, str))


class ConvReLU(nn.Module):
    """``relu(conv(x))``: one fused oneDNN call where :func:`fusable`, else the two modules."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if not fusable_conv(conv):
            raise ValueError(f"ConvReLU: need a 2D convolution with zero padding, got {conv}")
        self.conv = conv
        _available()  # probed here, once, not inside a forward that may be traced

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if fusable(x):
            return _pointwise(x, self.conv, "relu")
        return torch.relu(self.conv(x))


def conv_add_relu(conv: nn.Conv2d, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``relu(conv(x) + other)``, written into ``other`` by one fused call where :func:`fusable`
    (``other`` must then be a fresh tensor of the output's shape and layout)."""
    if fusable(x, other):
        return torch.ops.mkldnn._convolution_pointwise_(
            other, x, conv.weight, conv.bias, list(conv.padding), list(conv.stride), list(conv.dilation),
            conv.groups, "add", 1.0, "relu", [None], "")
    return torch.relu(conv(x) + other)


def _pointwise(x: torch.Tensor, conv: nn.Conv2d, unary: str) -> torch.Tensor:
    return torch.ops.mkldnn._convolution_pointwise(
        x, conv.weight, conv.bias, list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups,
        unary, [None], "")


@functools.cache
def _available() -> bool:
    """The fused ops exist and give the plain modules' numbers (to float32 rounding) here."""
    try:
        gen = torch.Generator().manual_seed(0)
        conv = nn.Conv2d(4, 4, 3, padding=1).eval()
        x = torch.randn(1, 4, 12, 12, generator=gen).contiguous(memory_format=torch.channels_last)
        other = torch.randn(1, 4, 12, 12, generator=gen).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            want_relu = torch.relu(conv(x))
            want_add = torch.relu(conv(x) + other)
            got_relu = _pointwise(x, conv, "relu")
            got_add = torch.ops.mkldnn._convolution_pointwise_(
                other.clone(), x, conv.weight, conv.bias, [1, 1], [1, 1], [1, 1], 1, "add", 1.0, "relu", [None], "")
        ok = bool(torch.allclose(got_relu, want_relu, atol=1e-5) and torch.allclose(got_add, want_add, atol=1e-5))
    except (RuntimeError, AttributeError, NotImplementedError) as err:
        log.debug("fused oneDNN convolutions unavailable (%s): plain modules", err)
        return False
    if not ok:
        log.warning("fused oneDNN convolutions disagree with the plain modules here: not used")
    return ok
