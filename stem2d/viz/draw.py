"""Drawing on frames with Pillow: class markers, a scale bar, and the overlay's footer panel.

The footer (legend, CAM colour bar and caption) is rendered once per layout and cached; per frame
only the frame line (number, time, dose) and the per-class counts are drawn into a copy, so a
frame costs well under a millisecond here. Text uses matplotlib's bundled DejaVu Sans, so the
overlay looks the same on every machine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from stem2d.viz.style import HEAT_COLORMAP, REGION_COLOURS, ClassStyle

#: Footer colours.
PANEL_RGB = (24, 24, 24)
TEXT_RGB = (235, 235, 235)
HALO_RGB = (0, 0, 0)


@lru_cache(maxsize=8)
def font(size_px: int) -> ImageFont.FreeTypeFont:
    """DejaVu Sans (shipped with matplotlib) at ``size_px``."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    return ImageFont.truetype(str(path), size=int(size_px))


@lru_cache(maxsize=1)
def heat_lut(n: int = 256) -> np.ndarray:
    """(n, 3) float32 RGB 0..255 of the heat colours: magma from 0.2 to 0.75 (purple to orange-red;
    its darkest part is lost on a dark lattice, its pale top turns a grey lattice khaki)."""
    from matplotlib import colormaps

    return (colormaps[HEAT_COLORMAP](0.2 + 0.55 * np.linspace(0, 1, n))[:, :3] * 255).astype(np.float32)


def draw_marker(draw: ImageDraw.ImageDraw, xy: tuple[float, float], style: ClassStyle, radius: float,
                *, width: int = 2) -> None:
    """One class marker centred at ``xy`` (x, y), in the class colour with a dark halo so it
    reads on bright columns and dark background alike."""
    for colour, w in ((HALO_RGB, width + 2), (style.rgb, width)):
        _shape(draw, xy, style.marker, radius, colour, w)


#: Markers Pillow draws as wide polygon outlines (through a mask the size of the image drawn on).
_POLYGON_MARKERS = ("diamond", "triangle", "star")


def draw_marker_on(img: Image.Image, draw: ImageDraw.ImageDraw, xy: tuple[float, float], style: ClassStyle,
                   radius: float, *, width: int = 2) -> None:
    """:func:`draw_marker` into ``img`` (whose ``draw`` it is), the same pixels (but for a rare edge
    pixel of a star: Pillow rounds a shifted self-crossing polygon a little differently; tested).
    A polygon marker inside the frame is drawn on a crop around it, shifted by whole pixels, and
    pasted back:
    Pillow's wide outline then builds its mask at the crop's size, not the frame's (0.15 ms a
    marker on a 2048 px frame). One that reaches the frame's edge is drawn on the frame (Pillow
    clips the polygon's fill mask there, which a crop would not)."""
    x, y = xy
    pad = int(math.ceil(1.2 * radius)) + width + 4
    x0, y0 = int(math.floor(x)) - pad, int(math.floor(y)) - pad
    box = (x0, y0, x0 + 2 * pad + 1, y0 + 2 * pad + 1)
    if style.marker not in _POLYGON_MARKERS or x0 < 0 or y0 < 0 or box[2] > img.width or box[3] > img.height:
        draw_marker(draw, xy, style, radius, width=width)
        return
    patch = img.crop(box)
    draw_marker(ImageDraw.Draw(patch), (x - x0, y - y0), style, radius, width=width)
    img.paste(patch, box)


def _shape(draw, xy, marker: str, r: float, colour, w: int) -> None:
    x, y = xy
    if marker == "circle":
        draw.ellipse([x - r, y - r, x + r, y + r], outline=colour, width=w)
    elif marker == "square":
        q = r * 0.85
        draw.rectangle([x - q, y - q, x + q, y + q], outline=colour, width=w)
    elif marker in ("diamond", "triangle", "star"):
        n, start = {"diamond": (4, -90), "triangle": (3, -90), "star": (5, -90)}[marker]
        k = 1.15 if marker != "diamond" else 1.1
        pts = [(x + k * r * math.cos(math.radians(start + i * 360 / n)),
                y + k * r * math.sin(math.radians(start + i * 360 / n))) for i in range(n)]
        if marker == "star":
            pts = [pts[(2 * i) % n] for i in range(n)]
        draw.polygon(pts, outline=colour, width=w)
    else:  # cross
        q = r * 0.8
        draw.line([x - q, y - q, x + q, y + q], fill=colour, width=w)
        draw.line([x - q, y + q, x + q, y - q], fill=colour, width=w)


def _dashed_box(draw, box, colour, *, dash: int) -> None:
    x0, y0, x1, y1 = box
    for a, b in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))):
        n = max(1, int(math.hypot(b[0] - a[0], b[1] - a[1]) // dash))
        for i in range(0, n, 2):
            t0, t1 = i / n, min(i + 1, n) / n
            draw.line([(a[0] + (b[0] - a[0]) * t0, a[1] + (b[1] - a[1]) * t0),
                       (a[0] + (b[0] - a[0]) * t1, a[1] + (b[1] - a[1]) * t1)], fill=colour, width=2)


def dashed(mask: np.ndarray, period_px: int = 8) -> np.ndarray:
    """``mask`` with every other ``period_px / 2`` diagonal stripe removed: outlines become dashes."""
    return mask & _stripes(mask.shape, period_px)


def _stripes(shape: tuple[int, int], period_px: int) -> np.ndarray:
    """``((row + col) // (period_px // 2)) % 2 == 0`` as a read-only (H, W) view of one 1-D line
    (element ``[r, c]`` is ``line[r + c]``): no frame-sized integer temporaries (a 4096 px frame's
    were ~400 MB at once, the loop's memory peak)."""
    h, w = shape
    line = (np.arange(h + w - 1) // max(1, period_px // 2)) % 2 == 0
    step = line.strides[0]
    return np.lib.stride_tricks.as_strided(line, shape=(h, w), strides=(step, step), writeable=False)


def nice_length_nm(width_px: int, pixel_size_A: float, *, fraction: float = 0.2) -> float:
    """A 1-2-5 scale-bar length (nm) near ``fraction`` of the frame width."""
    target = fraction * width_px * pixel_size_A / 10.0
    exp = math.floor(math.log10(target))
    best = max((m * 10**exp for m in (1, 2, 5, 10) if m * 10**exp <= target * 1.5), default=10**exp)
    return float(best)


def _nm_text(nm: float) -> str:
    return f"{nm:g} nm" if nm >= 1 else f"{nm * 10:g} Å"


@dataclass(frozen=True)
class FooterLayout:
    """Where the per-frame text goes in a cached footer (pixel boxes in the footer)."""

    image: np.ndarray              # (F, W, 3) uint8, the static part
    frame_xy: tuple[int, int]      # top-left of the frame line
    count_xy: dict                 # class name -> top-left of its count text
    font_px: int


@lru_cache(maxsize=16)
def footer(width: int, styles: tuple[ClassStyle, ...], regions: tuple[str, ...], pixel_size_A: float | None,
           heat_floor: float, caption: str, longest_frame_text: str = "frame 00000") -> FooterLayout:
    """The static footer: frame line (left empty) with a scale bar on the right (on a row of
    its own when ``longest_frame_text`` would run into it), one legend entry per class (marker,
    name, room for its count) and per region outline, then the CAM colour bar with its caption.
    Cached by its arguments."""
    fs = int(np.clip(round(width / 25), 11, 40))
    f = font(fs)
    line = int(fs * 1.45)
    pad = max(4, fs // 2)
    # legend entries in a grid: the classes (marker, name, count), then the region outlines
    entries = [(st.name, st) for st in styles] + [(name, None) for name in regions]
    entry_w = max(int(f.getlength(n + " 000")) for n, _ in entries) + 2 * fs if entries else 0
    per_row = max(1, (width - 2 * pad) // max(entry_w, 1)) if entries else 1
    n_rows_cls = math.ceil(len(entries) / per_row) if entries else 0
    # the scale bar goes where there is room: beside the frame line, else in the legend's last
    # row, else on a row of its own under the frame line
    bar_row, extra_row = 0, 0
    if pixel_size_A:
        nm = nice_length_nm(width, pixel_size_A)
        bar, label = nm * 10.0 / pixel_size_A, _nm_text(nm)
        bar_w = f.getlength(label) + fs // 2 + bar + pad
        used_last = ((len(entries) % per_row) or per_row) * entry_w + pad if entries else width
        if f.getlength(longest_frame_text) + fs + bar_w + pad <= width:
            bar_row = 0
        elif width - used_last >= bar_w + fs:
            bar_row = n_rows_cls  # the legend's last row (row 0 is the frame line)
        else:
            bar_row, extra_row = 1, 1
    n_rows = 1 + extra_row + n_rows_cls + 1
    height = n_rows * line + 2 * pad
    img = Image.new("RGB", (width, height), PANEL_RGB)
    draw = ImageDraw.Draw(img)
    y = pad
    frame_xy = (pad, y)
    if pixel_size_A:
        yb = y + bar_row * line
        x1 = width - pad
        x0 = x1 - bar
        draw.text((x0 - f.getlength(label) - fs // 2, yb), label, font=f, fill=TEXT_RGB)
        ym = yb + line // 2
        draw.rectangle([x0, ym - max(2, fs // 5), x1, ym + max(2, fs // 5)], fill=TEXT_RGB)
    y += (1 + extra_row) * line
    count_xy = {}
    r = fs * 0.42
    for i, (name, st) in enumerate(entries):
        col, row = i % per_row, i // per_row
        x = pad + col * entry_w
        yy = y + row * line
        if st is not None:
            draw_marker(draw, (x + r + 1, yy + line / 2 - 1), st, r, width=2)
            count_xy[name] = (int(x + 2 * r + fs // 2 + f.getlength(name + " ")), yy)
        else:  # a region: a dashed box in its outline colour, wider than any marker
            _dashed_box(draw, (x - 2, yy + line * 0.25, x + 2 * r + 4, yy + line * 0.75),
                        REGION_COLOURS.get(name, TEXT_RGB), dash=max(2, fs // 6))
        draw.text((x + 2 * r + fs // 2 + 2, yy), name, font=f, fill=TEXT_RGB)
    y += n_rows_cls * line
    # CAM colour bar: the colours drawn for heat heat_floor .. 1, then the caption
    bar_w, bar_h = int(width * 0.22), int(line * 0.55)
    x0, yb = pad + int(f.getlength(f"{heat_floor:g} ")), y + (line - bar_h) // 2
    draw.text((pad, y), f"{heat_floor:g}", font=f, fill=TEXT_RGB)
    lut = heat_lut()
    ramp = lut[np.linspace(0, len(lut) - 1, bar_w).astype(int)].astype(np.uint8)
    img.paste(Image.fromarray(np.repeat(ramp[None], bar_h, axis=0)), (x0, yb))
    room = width - pad - (x0 + bar_w + fs // 3)
    fits = [c for c in (f"1  {caption}", "1  CAM: classifier evidence", "1  CAM") if f.getlength(c) <= room]
    draw.text((x0 + bar_w + fs // 3, y), (fits or ["1"])[0], font=f, fill=TEXT_RGB)
    return FooterLayout(np.asarray(img).copy(), frame_xy, count_xy, fs)


def frame_text(index: int, *, n_frames: int | None = None, frame_time_s: float | None = None,
               dose_per_frame: float | None = None) -> str:
    """``frame 7 (of 20) · 1.4 s · 4.0·10⁵ e/Å²`` (accumulated dose at the end of the frame)."""
    text = f"frame {index}" + (f" (of {n_frames})" if n_frames and n_frames > 1 else "")
    if frame_time_s:
        text += f" · {index * frame_time_s:.1f} s"
    if dose_per_frame:
        text += f" · {sci((index + 1) * dose_per_frame)} e/Å²"
    return text


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def sci(value: float, digits: int = 2) -> str:
    """``52000`` -> ``'5.2·10⁴'``; plain below 10,000 (``'1500'``)."""
    if value == 0 or 1e-2 <= abs(value) < 1e4:
        return f"{value:.{digits}g}"
    exp = math.floor(math.log10(abs(value)))
    mant = value / 10**exp
    return f"{mant:.{digits - 1}f}·10{str(exp).translate(_SUPERSCRIPT)}"


def fill_footer(layout: FooterLayout, text: str, counts: Mapping[str, int]) -> np.ndarray:
    """A copy of the footer with this frame's line and per-class counts."""
    img = Image.fromarray(layout.image.copy())
    draw = ImageDraw.Draw(img)
    f = font(layout.font_px)
    draw.text(layout.frame_xy, text, font=f, fill=TEXT_RGB)
    for name, xy in layout.count_xy.items():
        draw.text(xy, str(counts.get(name, 0)), font=f, fill=(170, 170, 170))
    return np.asarray(img)


def outline(mask: np.ndarray, width: int = 2) -> np.ndarray:
    """The inner border (``width`` px) of a boolean mask (the frame's edge does not count as
    border). Erosion by array shifts: ~1 ms for a 512 x 512 frame."""
    mask = np.asarray(mask, dtype=bool)
    inner = mask
    for _ in range(width):
        e = inner.copy()
        e[1:] &= inner[:-1]
        e[:-1] &= inner[1:]
        e[:, 1:] &= inner[:, :-1]
        e[:, :-1] &= inner[:, 1:]
        inner = e
    return mask & ~inner