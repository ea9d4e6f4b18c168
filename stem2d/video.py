"""Streaming MP4 + GIF writer for overlay movies (frames appended one at a time)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
from skimage.transform import resize

log = logging.getLogger(__name__)


class OverlayMovieWriter:
    """Write RGB frames to ``<stem>.mp4`` (H.264 via imageio-ffmpeg) and ``<stem>.gif``.

    Frames go to temporary ``.partial`` files that are renamed only by :meth:`close`, so an
    interrupted run never leaves a movie that looks complete. Use as a context manager: on an
    exception the partial files are removed.

    Parameters
    ----------
    out_dir : path
        Folder of the run.
    stem : str, default "overlay"
        File name without extension.
    fps : float, default 10
        Frames per second of both movies.
    gif_max_px : int, default 384
        The GIF is downscaled so its longer side is at most this (GIFs are large).
    """

    def __init__(self, out_dir, *, stem: str = "overlay", fps: float = 10.0, gif_max_px: int = 384):
        out_dir = Path(out_dir)
        self.final = [out_dir / f"{stem}.mp4", out_dir / f"{stem}.gif"]
        self.partial = [out_dir / f".{stem}.partial.mp4", out_dir / f".{stem}.partial.gif"]
        self.gif_max_px = gif_max_px
        self.n_frames = 0
        self._mp4 = imageio.get_writer(self.partial[0], fps=fps, codec="libx264", quality=7,
                                       macro_block_size=1, pixelformat="yuv420p",
                                       ffmpeg_log_level="error")
        self._gif = imageio.get_writer(self.partial[1], mode="I", duration=1000.0 / fps, loop=0)

    def append(self, rgb: np.ndarray) -> None:
        """Add one uint8 (H, W, 3) frame."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"overlay frames must be uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
        h, w = rgb.shape[:2]
        even = rgb[: h - h % 2, : w - w % 2]  # yuv420p needs even sizes
        self._mp4.append_data(even)
        scale = min(1.0, self.gif_max_px / max(h, w))
        small = rgb if scale == 1.0 else (
            resize(rgb, (round(h * scale), round(w * scale)), anti_aliasing=True, preserve_range=True)
            .astype(np.uint8))
        self._gif.append_data(small)
        self.n_frames += 1

    def close(self) -> list[Path]:
        """Finish both files and give them their final names."""
        self._mp4.close()
        self._gif.close()
        for part, final in zip(self.partial, self.final):
            os.replace(part, final)
        return self.final

    def abort(self) -> None:
        """Close and delete the partial files."""
        for w in (self._mp4, self._gif):
            try:
                w.close()
            except Exception:  # noqa: BLE001 - best effort while failing anyway
                log.debug("closing a partial movie failed", exc_info=True)
        for part in self.partial:
            part.unlink(missing_ok=True)

    def __enter__(self) -> "OverlayMovieWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
