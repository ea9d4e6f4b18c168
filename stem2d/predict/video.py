"""Streaming MP4 + GIF writer for overlay movies (frames appended one at a time)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
from PIL import Image

log = logging.getLogger(__name__)


class OverlayMovieWriter:
    """Write RGB frames to ``<stem>.mp4`` (H.264 via imageio-ffmpeg) and ``<stem>.gif``.

    Frames go to temporary ``.partial`` files that are renamed only by :meth:`close`, so an
    interrupted run never leaves a movie that looks complete. Use as a context manager: on an
    exception the partial files are removed. The MP4 is streamed to ffmpeg; GIF frames are
    downscaled (Pillow, antialiased) and reduced to a 256-colour palette (fast octree) as they
    come, kept as palette images (1 byte/px) and written by :meth:`close` (GIF encoders need
    every frame; a 480 x 385 frame costs 185 kB).

    Parameters
    ----------
    out_dir : path
        Folder of the run.
    stem : str, default "overlay"
        File name without extension.
    fps : float, default 10
        Frames per second of both movies.
    gif_max_px : int, default 480
        The GIF is downscaled so its longer side is at most this (GIFs are large); 480 keeps the
        overlay footer's text (1/25 of the frame width) at 13 px or more for a square frame.
    preset : str, default "ultrafast"
        x264 speed preset. The encoder runs beside the frame loop on the same cores: on 512 px
        overlay frames ``ultrafast`` costs ffmpeg 5.1 ms of CPU per frame against 10.8 ms for
        ``superfast`` and ~3x that for x264's default ``medium``, for a ~1.5x larger file.
    """

    def __init__(self, out_dir, *, stem: str = "overlay", fps: float = 10.0, gif_max_px: int = 480,
                 preset: str = "ultrafast"):
        out_dir = Path(out_dir)
        self.final = [out_dir / f"{stem}.mp4", out_dir / f"{stem}.gif"]
        self.partial = [out_dir / f".{stem}.partial.mp4", out_dir / f".{stem}.partial.gif"]
        self.gif_max_px = gif_max_px
        self.n_frames = 0
        self._mp4 = imageio.get_writer(self.partial[0], fps=fps, codec="libx264", quality=7,
                                       macro_block_size=1, pixelformat="yuv420p",
                                       ffmpeg_log_level="error",
                                       # one encoder thread: x264's frame threads cost CPU the frame loop
                                       # needs (2048 px overlays: 54 vs 69 ms of ffmpeg CPU per frame,
                                       # the same file size), and one thread encodes ~18 such frames/s
                                       output_params=["-preset", str(preset), "-threads", "1"])
        self._gif_frames: list[Image.Image] = []
        self._gif_duration_ms = 1000.0 / fps

    def append(self, rgb: np.ndarray) -> None:
        """Add one uint8 (H, W, 3) frame."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"overlay frames must be uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
        h, w = rgb.shape[:2]
        even = rgb[: h - h % 2, : w - w % 2]  # yuv420p needs even sizes
        self._mp4.append_data(even)
        scale = min(1.0, self.gif_max_px / max(h, w))
        small = Image.fromarray(rgb)
        if scale < 1.0:
            small = small.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR,
                                 reducing_gap=2.0)  # box-reduced first: a 2048 px frame 8 vs 14 ms
        self._gif_frames.append(small.quantize(256, method=Image.Quantize.FASTOCTREE))
        self.n_frames += 1

    def close(self) -> list[Path]:
        """Finish both files and give them their final names."""
        self._mp4.close()
        self._write_gif()
        for part, final in zip(self.partial, self.final):
            os.replace(part, final)
        return self.final

    def _write_gif(self) -> None:
        frames, self._gif_frames = self._gif_frames, []
        if not frames:
            frames = [Image.new("P", (1, 1))]
        frames[0].save(self.partial[1], format="GIF", save_all=True, append_images=frames[1:],
                       duration=self._gif_duration_ms, loop=0)

    def abort(self) -> None:
        """Close and delete the partial files."""
        self._gif_frames.clear()
        try:
            self._mp4.close()
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


class HeatStackWriter:
    """The CAM heat map of every frame, as ``cam_heat.npy`` (uint8, 255 = heat 1), for viewers
    (the napari reader's hidden ``CAM heat`` layer).

    Frames are binned ``bin_px`` x ``bin_px`` (block mean): the CAMs come from 0.3 A/px windows,
    so binning a finer frame to about that sampling loses nothing and keeps the file small
    (0.07 MB per 512 x 512 frame at bin 2). Written to a ``.partial`` file renamed by
    :meth:`close`, like :class:`OverlayMovieWriter`.

    Parameters
    ----------
    out_dir : path
        Folder of the run.
    n_frames : int
        Frames that will be appended.
    frame_shape : (int, int)
        Frame size in px.
    bin_px : int, default 1
        Binning factor (``round(0.3 A / pixel size)`` is a good choice).
    """

    def __init__(self, out_dir, *, n_frames: int, frame_shape: tuple[int, int], bin_px: int = 1):
        out_dir = Path(out_dir)
        self.final, self.partial = out_dir / "cam_heat.npy", out_dir / ".cam_heat.partial.npy"
        self.bin_px = max(1, int(bin_px))
        h, w = (int(v) // self.bin_px for v in frame_shape)
        self._stack = np.lib.format.open_memmap(self.partial, mode="w+", dtype=np.uint8, shape=(int(n_frames), h, w))
        self.n_frames = 0

    def append(self, heat: np.ndarray) -> None:
        """Add one (H, W) heat map with values in [0, 1]."""
        b = self.bin_px
        _, h, w = self._stack.shape
        heat = np.asarray(heat, dtype=np.float32)[: h * b, : w * b]
        if b == 1:  # no binning: the scaled copy is the one frame-sized temporary
            block = np.multiply(heat, np.float32(255.0))
        else:
            block = heat.reshape(h, b, w, b).mean(axis=(1, 3))
            block *= np.float32(255.0)  # in place: one frame-sized temporary (a 4096 px frame's memory peak)
        block += np.float32(0.5)
        np.clip(block, 0, 255, out=block)
        self._stack[self.n_frames] = block  # truncated to uint8 as astype does
        self.n_frames += 1

    def close(self) -> Path:
        self._stack.flush()
        del self._stack
        os.replace(self.partial, self.final)
        return self.final

    def abort(self) -> None:
        self._stack = None
        self.partial.unlink(missing_ok=True)
