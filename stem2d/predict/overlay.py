"""Putting class activation maps back into frames and drawing annotated overlay frames."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

from stem2d.viz import draw as vdraw
from stem2d.viz.style import REGION_COLOURS, class_style, class_styles, drawn_classes

#: Caption of the CAM colour bar in the footer.
CAM_CAPTION = "CAM: where the classifier saw the class"

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
    # float32 accumulators: a display map (half the memory of float64 on large frames)
    heat = np.zeros(shape, dtype=np.float32)
    wsum = np.zeros(shape, dtype=np.float32)
    if len(cams) == 0:
        return heat
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
    np.maximum(wsum, 1.0, out=wsum)
    heat /= wsum
    return np.clip(heat, 0.0, 1.0, out=heat)


def to_uint8_gray(frame: np.ndarray, *, low_pct: float = 0.5, high_pct: float = 99.5) -> np.ndarray:
    """Percentile-stretch a frame to uint8 (robust to hot pixels and background).

    The percentiles are estimated on every third pixel of every third row (~1/9 of the frame:
    10x faster, and the same to a grey level on a lattice image).
    """
    frame = np.asarray(frame, dtype=np.float32)
    sample = frame[::3, ::3] if frame.size > 9 * 4096 else frame
    lo, hi = np.percentile(sample, [low_pct, high_pct])
    scaled = np.subtract(frame, np.float32(lo))  # then in place: one frame-sized float32 temporary
    scaled *= np.float32(255.0 / max(hi - lo, 1e-12))
    np.clip(scaled, 0, 255, out=scaled)
    return scaled.astype(np.uint8)


class OverlayRenderer:
    """Draws annotated overlay frames of one movie: the frame in grey, the CAM heat map as a
    translucent colour map (only above ``heat_floor``, at most ``heat_alpha`` opaque, so the atom
    columns stay visible through it), a class marker at every defect, region outlines, and a
    footer panel under the frame with the frame number (time, dose), a scale bar, the class
    legend with this frame's counts and the CAM colour bar with its caption.

    Parameters
    ----------
    class_names : sequence of str
        The classifier's classes (``pristine`` is never drawn). Colours and markers come from
        :mod:`stem2d.viz.style` by name.
    pixel_size_A : float, optional
        Å per frame pixel: sets the scale bar and the marker size (2.4 Å, between a column's
        first and second neighbours); without it markers are 6 px and there is no scale bar.
    n_frames : int, optional
        Shown as ``frame k (of n)`` (k counts from 0, as in detections.csv).
    frame_time_s, dose_per_frame : float, optional
        Seconds and e/Å² per frame: the footer shows the elapsed time and accumulated dose.
    heat_floor : float, default 0.3
        Heat below this is not drawn (like the original study's CAM threshold).
    heat_alpha : float, default 0.4
        Opacity of the heat colour at heat 1 (it rises linearly from 0 at ``heat_floor``).
    extra_classes : sequence of str, default ()
        Classes beyond the classifier's that points may carry (``unknown``: a candidate the
        classifier did not confirm; ``adatom`` from the evidence step), given a legend entry.
    region_names : sequence of str, default ()
        Region masks that frames may carry (``hole``, ``contamination``), given a legend entry.
        The footer's layout is fixed here, so every frame of a movie has the same size.
    """

    def __init__(self, class_names: Sequence[str], *, pixel_size_A: float | None = None,
                 n_frames: int | None = None, frame_time_s: float | None = None,
                 dose_per_frame: float | None = None, heat_floor: float = 0.3, heat_alpha: float = 0.4,
                 extra_classes: Sequence[str] = (), region_names: Sequence[str] = ()):
        self.class_names = [str(c) for c in class_names]
        legend = drawn_classes(self.class_names) + [str(c) for c in extra_classes if str(c) not in self.class_names]
        self.styles = class_styles(legend)
        self.region_names = tuple(str(r) for r in region_names)
        last = max(int(n_frames or 0) - 1, 99999 if n_frames is None else 0)
        self._longest_text = vdraw.frame_text(last, n_frames=n_frames, frame_time_s=frame_time_s,
                                              dose_per_frame=dose_per_frame)
        self.pixel_size_A = float(pixel_size_A) if pixel_size_A else None
        self.n_frames, self.frame_time_s, self.dose_per_frame = n_frames, frame_time_s, dose_per_frame
        self.heat_floor, self.heat_alpha = float(heat_floor), float(heat_alpha)
        radius = 6.0 if self.pixel_size_A is None else 2.4 / self.pixel_size_A
        self.marker_radius_px = float(np.clip(radius, 5.0, 24.0))
        # (heat level, grey) -> RGB: level 0 is below the floor (plain grey), levels 1..255 span
        # heat_floor..1, blended with opacity rising linearly to heat_alpha
        alpha = np.concatenate([[0.0], self.heat_alpha * np.linspace(0.0, 1.0, 255)]).astype(np.float32)
        colour = np.concatenate([np.zeros((1, 3), np.float32), vdraw.heat_lut(255)])
        grey = np.arange(256, dtype=np.float32)
        table = grey[None, :, None] * (1.0 - alpha)[:, None, None] + (colour * alpha[:, None])[:, None, :]
        self._table = np.clip(table + 0.5, 0, 255).astype(np.uint8).reshape(-1, 3)

    def _tint(self, gray: np.ndarray, heat: np.ndarray) -> np.ndarray:
        """Grey frame -> RGB with the heat colours blended in: one table look-up per pixel."""
        scale = np.float32(254.0 / max(1.0 - self.heat_floor, 1e-6))
        level = np.asarray(heat, dtype=np.float32) - np.float32(self.heat_floor)  # in place from here:
        level *= scale  # one frame-sized float32 and one uint16 temporary (a 4096 px frame's peak)
        level += np.float32(1.0)
        np.clip(level, 0, 255, out=level)
        index = level.astype(np.uint16)
        del level
        index <<= 8
        index |= gray
        return self._table.take(index, axis=0)

    def render(self, frame: np.ndarray, heat: np.ndarray | None, points: np.ndarray, labels: Sequence, *,
               index: int = 0, regions: Mapping[str, np.ndarray] | None = None,
               tails: Sequence[np.ndarray] = ()) -> np.ndarray:
        """One annotated frame.

        Parameters
        ----------
        frame : ndarray (H, W)
            The input frame (any scale).
        heat : ndarray (H, W) in [0, 1] or None
            CAM heat map on the frame's grid (:func:`insert_cams`).
        points : ndarray (N, 2)
            Defect positions (row, col) in frame pixels.
        labels : sequence of int or str
            Class of each point: an index into ``class_names`` or a class name (e.g. the
            ``class`` column of detections.csv, where the evidence step may have made a call
            ``unknown``). ``pristine`` is not drawn.
        index : int
            Frame number.
        regions : mapping of str to bool ndarray (H, W), optional
            Region masks (e.g. ``hole``, ``contamination``), drawn as outlines (in the legend
            when named in ``region_names``).
        tails : sequence of ndarray (K, 2)
            Recent track positions, drawn as thin polylines.

        Returns
        -------
        ndarray, uint8, (H + footer height, W, 3): the frame on top, the footer under it.
        """
        gray = to_uint8_gray(frame)
        rgb = self._tint(gray, np.zeros(gray.shape, np.float32) if heat is None else heat)
        for name, mask in (regions or {}).items():
            if mask.any():  # every kind comes every frame, mostly empty
                rgb[vdraw.dashed(vdraw.outline(mask))] = REGION_COLOURS.get(name, vdraw.TEXT_RGB)
        img = Image.fromarray(rgb)
        draw = ImageDraw.Draw(img)
        for tail in tails:
            if len(tail) > 1:
                draw.line([(float(c), float(r)) for r, c in tail], fill=(255, 255, 255), width=1)
        counts: dict[str, int] = {}
        for (r, c), lab in zip(np.asarray(points, dtype=float).reshape(-1, 2), labels, strict=False):
            name = lab if isinstance(lab, str) else self.class_names[int(lab)]
            if name == "pristine":
                continue
            style = self.styles.get(name) or class_style(name)
            counts[style.name] = counts.get(style.name, 0) + 1
            vdraw.draw_marker_on(img, draw, (c, r), style, self.marker_radius_px)
        layout = vdraw.footer(rgb.shape[1], tuple(self.styles.values()), self.region_names,
                              self.pixel_size_A, self.heat_floor, CAM_CAPTION, self._longest_text)
        text = vdraw.frame_text(index, n_frames=self.n_frames, frame_time_s=self.frame_time_s,
                                dose_per_frame=self.dose_per_frame)
        return np.concatenate([np.asarray(img), vdraw.fill_footer(layout, text, counts)], axis=0)


def render_overlay(
    frame: np.ndarray,
    heat: np.ndarray,
    points: np.ndarray,
    labels: Sequence[int],
    class_names: Sequence[str],
    *,
    index: int = 0,
    pixel_size_A: float | None = None,
    regions: Mapping[str, np.ndarray] | None = None,
    tails: Sequence[np.ndarray] = (),
) -> np.ndarray:
    """One annotated frame with a one-off :class:`OverlayRenderer` (see its ``render``); a movie
    should keep one renderer."""
    return OverlayRenderer(class_names, pixel_size_A=pixel_size_A, region_names=tuple(regions or ())).render(
        frame, heat, points, labels, index=index, regions=regions, tails=tails)
