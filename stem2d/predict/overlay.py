"""Putting class activation maps back into frames and drawing annotated overlay frames."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw

#: Marker colours (RGB) cycled over the classes; pristine is never drawn.
CLASS_COLOURS = [
    (0, 200, 255), (255, 80, 80), (80, 255, 80), (255, 200, 0), (220, 90, 255),
    (255, 255, 255), (0, 120, 255), (255, 140, 0),
]


#: Entries of the heat colour table (the heat strength is quantised to 1/1023: invisible in 8-bit colour).
_LUT_SIZE = 1024


@lru_cache(maxsize=1)
def _heat_lut() -> np.ndarray:
    """Colours (0..255, float32) of heat strength 0..1: the upper 65 % of matplotlib's inferno."""
    return (colormaps["inferno"](0.35 + 0.65 * np.linspace(0.0, 1.0, _LUT_SIZE))[:, :3] * 255).astype(np.float32)


def _window(size: int) -> np.ndarray:
    """2D Gaussian weight (sigma = size / 6) centred in the window: the CAM is shown around the
    site the window was cut for and fades out well before the window border."""
    x = np.arange(size) - (size - 1) / 2
    w = np.exp(-0.5 * (x / (size / 6)) ** 2)
    return np.outer(w, w)


def insert_cams(
    shape: tuple[int, int], positions: np.ndarray, cams: np.ndarray
) -> np.ndarray:
    """Paste CAMs back into a frame-sized heat map.

    Each CAM (a window centred on ``positions[i]``, rounded to whole pixels) is weighted by a
    Gaussian window (sigma = window / 6); where windows overlap the heat map is the
    weight-normalised blend, and it fades to 0 away from the window centres.

    Parameters
    ----------
    shape : (int, int)
        Frame shape (rows, cols), on the same grid as ``positions``.
    positions : ndarray, (N, 2)
        Window centres (row, col) in that frame's pixels.
    cams : ndarray, (N, S, S)
        CAMs in [0, 1].

    Returns
    -------
    ndarray, float32, ``shape``, values in [0, 1].
    """
    heat = np.zeros(shape, dtype=np.float64)
    wsum = np.zeros(shape, dtype=np.float64)
    if len(cams) == 0:
        return heat.astype(np.float32)
    size = cams.shape[-1]
    win = _window(size)
    half = size // 2
    for (r, c), cam in zip(np.rint(positions).astype(int), cams):
        r0, c0 = r - half, c - half
        rs, cs = max(r0, 0), max(c0, 0)
        re, ce = min(r0 + size, shape[0]), min(c0 + size, shape[1])
        if rs >= re or cs >= ce:
            continue
        sub = (slice(rs - r0, re - r0), slice(cs - c0, ce - c0))
        heat[rs:re, cs:ce] += win[sub] * cam[sub]
        wsum[rs:re, cs:ce] += win[sub]
    blended = heat / np.maximum(wsum, 1.0)
    return np.clip(blended, 0.0, 1.0).astype(np.float32)


def to_uint8_gray(frame: np.ndarray, *, low_pct: float = 0.5, high_pct: float = 99.5) -> np.ndarray:
    """Percentile-stretch a frame to uint8 (robust to hot pixels and background)."""
    lo, hi = np.percentile(frame, [low_pct, high_pct])
    scaled = (np.asarray(frame, dtype=np.float64) - lo) / max(hi - lo, 1e-12)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def render_overlay(
    frame: np.ndarray,
    heat: np.ndarray,
    points: np.ndarray,
    labels: Sequence[int],
    class_names: Sequence[str],
    *,
    heat_alpha: float = 0.6,
    heat_floor: float = 0.3,
    marker_radius_px: float = 6.0,
    tails: Sequence[np.ndarray] = (),
    title: str = "",
) -> np.ndarray:
    """Draw one annotated RGB frame.

    Parameters
    ----------
    frame : ndarray (H, W)
        The input frame (any scale).
    heat : ndarray (H, W) in [0, 1]
        CAM heat map on the frame's grid (see :func:`insert_cams`). Values below
        ``heat_floor`` are not drawn (like the original study's CAM threshold), so the colour
        marks where the classifier looked, not the whole window.
    points : ndarray (N, 2)
        Defect positions (row, col) in frame pixels.
    labels : sequence of int
        Class index of each point; the class named ``pristine`` is not drawn.
    class_names : sequence of str
        For the colour legend.
    tails : sequence of ndarray (K, 2)
        Optional recent track positions, drawn as polylines.
    title : str
        Text drawn in the top-left corner (e.g. the frame number).

    Returns
    -------
    ndarray, uint8, (H, W, 3).
    """
    gray = to_uint8_gray(frame)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    heat = np.asarray(heat, dtype=np.float32)
    hot = heat > heat_floor  # only these pixels are tinted (usually a small part of the frame)
    if hot.any():
        strength = np.minimum((heat[hot] - heat_floor) / max(1.0 - heat_floor, 1e-6), 1.0)
        coloured = _heat_lut()[np.rint(strength * (_LUT_SIZE - 1)).astype(np.intp)]
        g = gray[hot].astype(np.float32)[:, None]
        rgb[hot] = (g + (heat_alpha * strength)[:, None] * (coloured - g)).astype(np.uint8)
    img = Image.fromarray(rgb)
    draw = ImageDraw.Draw(img)
    for tail in tails:
        if len(tail) > 1:
            draw.line([(float(c), float(r)) for r, c in tail], fill=(255, 255, 255), width=1)
    rad = marker_radius_px
    for (r, c), lab in zip(np.asarray(points).reshape(-1, 2), labels):
        if class_names[lab] == "pristine":
            continue
        colour = CLASS_COLOURS[lab % len(CLASS_COLOURS)]
        draw.ellipse([c - rad, r - rad, c + rad, r + rad], outline=colour, width=2)
    y = 2
    if title:
        draw.text((4, y), title, fill=(255, 255, 255))
        y += 12
    for i, name in enumerate(class_names):
        if name == "pristine":
            continue
        draw.text((4, y), name, fill=CLASS_COLOURS[i % len(CLASS_COLOURS)])
        y += 12
    return np.asarray(img)
