"""Frame containers of a movie (:class:`Frames`, :class:`Movie`) and the array layouts they accept.

Interpretation of array shapes (shared by every format): ``(H, W)`` is one frame; ``(T, H, W)``
is a stack, except ``(H, W, 3|4)`` which is one RGB(A) image; ``(T, H, W, 3|4)`` is an RGB(A)
stack. RGB(A) is converted to grayscale luminance ``0.2125 R + 0.7154 G + 0.0721 B`` (ITU-R
BT.709, as ``skimage.color.rgb2gray``; alpha is dropped). Other 4D data is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)

MIN_FRAME_PX = 64
#: ITU-R BT.709 luminance weights (as ``skimage.color.rgb2gray``).
_LUMA = np.array([0.2125, 0.7154, 0.0721])


def layout(shape: tuple[int, ...], source: str) -> tuple[int, int, int, bool, bool]:
    """Interpret an array shape as ``(n_frames, H, W, is_rgb, is_single_image)``.

    Raises ``ValueError`` for 4D non-RGB data, empty stacks and frames below 64 x 64 px.
    """
    nd = len(shape)
    if nd == 2:
        n, h, w, rgb, single = 1, shape[0], shape[1], False, True
    elif nd == 3 and shape[-1] in (3, 4) and min(shape[:2]) >= MIN_FRAME_PX:
        n, h, w, rgb, single = 1, shape[0], shape[1], True, True
    elif nd == 3:
        n, h, w, rgb, single = shape[0], shape[1], shape[2], False, False
    elif nd == 4 and shape[-1] in (3, 4):
        n, h, w, rgb, single = shape[0], shape[1], shape[2], True, False
    else:
        raise ValueError(f"{source}: {nd}D data of shape {tuple(shape)} is not a movie; expected "
                         "(H, W), (T, H, W), RGB (H, W, 3|4) or RGB stack (T, H, W, 3|4)")
    if n == 0:
        raise ValueError(f"{source}: empty stack (0 frames), shape {tuple(shape)}")
    if h < MIN_FRAME_PX or w < MIN_FRAME_PX:
        raise ValueError(f"{source}: frames of {h} x {w} px are smaller than the "
                         f"{MIN_FRAME_PX} x {MIN_FRAME_PX} px minimum")
    return n, h, w, rgb, single


def _to_float32(raw: Any, *, rgb: bool, source: str) -> np.ndarray:
    arr = np.asarray(raw)
    if np.iscomplexobj(arr) or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{source}: dtype {arr.dtype} is not a real-valued image")
    if rgb:
        return (arr[..., :3].astype(np.float64) @ _LUMA).astype(np.float32)
    return arr.astype(np.float32)


def _check_finite(stack: np.ndarray, source: str, *, first_index: int = 0) -> None:
    """NaN/Inf is an error; a constant frame (all zeros: beam blanked, a padded or zero-filled
    file) is flagged with a warning (see :func:`is_blank`)."""
    flat = stack.reshape(stack.shape[0], -1)
    bad = ~np.isfinite(flat).all(axis=1)
    if bad.any():
        raise ValueError(f"{source}: frame {first_index + int(np.argmax(bad))} contains NaN or "
                         "Inf values")
    for i in np.flatnonzero(is_blank(stack)):
        log.warning("%s: frame %d is constant (every pixel %g): it holds no image", source,
                    first_index + int(i), float(flat[i, 0]))


def is_blank(frames: np.ndarray) -> np.ndarray:
    """Whether each ``(..., H, W)`` image is constant (no contrast at all); bool of shape ``(...)``."""
    x = np.asarray(frames)
    return (x.max(axis=(-2, -1)) == x.min(axis=(-2, -1))) if x.size else np.zeros(x.shape[:-2], bool)


def to_stack(arr: Any, source: str) -> np.ndarray:
    """Convert an array of any supported layout to a checked float32 ``(T, H, W)`` stack."""
    n, h, w, rgb, _ = layout(tuple(np.shape(arr)), source)
    stack = _to_float32(arr, rgb=rgb, source=source).reshape(n, h, w)
    _check_finite(stack, source)
    return stack


class Frames(Sequence):
    """A sequence of float32 ``(H, W)`` frames, held in memory or read on access.

    Supports ``len()``, integer (also negative) indexing, slicing (a list) and iteration.
    Frames read on access are converted to float32 (RGB to luminance) and checked for
    NaN/Inf and shape when accessed.
    """

    def __init__(self, n: int, hw: tuple[int, int], get: Callable[[int], Any], *, rgb: bool,
                 source: str, checked: bool = False):
        self._n, self._hw, self._get = int(n), (int(hw[0]), int(hw[1])), get
        self._rgb, self._source, self._checked = rgb, source, checked

    @classmethod
    def from_stack(cls, stack: np.ndarray, source: str) -> "Frames":
        """Wrap a checked float32 ``(T, H, W)`` stack (see :func:`to_stack`)."""
        return cls(stack.shape[0], stack.shape[1:], stack.__getitem__, rgb=False, source=source,
                   checked=True)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self._n, *self._hw)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._n))]
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"frame index must be an int or slice, got {type(index).__name__}")
        i = int(index) + self._n if index < 0 else int(index)
        if not 0 <= i < self._n:
            raise IndexError(f"{self._source}: frame {index} out of range for {self._n} frames")
        if self._checked:
            return self._get(i)
        try:
            raw = self._get(i)
        except Exception as err:
            if isinstance(err, ValueError) and self._source in str(err):
                raise
            raise ValueError(f"{self._source}: could not read frame {i} ({type(err).__name__}: "
                             f"{err})") from err
        frame = _to_float32(raw, rgb=self._rgb, source=self._source)
        if frame.shape != self._hw:
            raise ValueError(f"{self._source}: frame {i} has shape {frame.shape}, expected "
                             f"{self._hw}")
        _check_finite(frame[None], self._source, first_index=i)
        return frame

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(self._n))


class Movie:
    """A movie of float32 ``(H, W)`` frames with its pixel size and source.

    Attributes
    ----------
    frames : Frames
        The frames (float32 ``(H, W)`` each); ``len(frames)`` is the number of frames.
    pixel_size_A : float or None
        Pixel size from metadata in angstrom per pixel; None when unknown.
    source : str
        Path of the file/folder, or ``"<array>"``.
    """

    def __init__(self, frames: Frames, *, pixel_size_A: float | None, source: str,
                 close: Callable[[], None] | None = None):
        if pixel_size_A is not None and not (np.isfinite(pixel_size_A) and pixel_size_A > 0):
            raise ValueError(f"{source}: pixel_size_A={pixel_size_A!r} must be a positive number")
        self.frames = frames
        self.pixel_size_A = None if pixel_size_A is None else float(pixel_size_A)
        self.source = source
        self._close = close

    @classmethod
    def from_array(cls, arr: Any, pixel_size_A: float | None = None, *,
                   source: str = "<array>") -> "Movie":
        """A movie from an in-memory ``(H, W)``, ``(T, H, W)`` or RGB array (copied to float32)."""
        return cls(Frames.from_stack(to_stack(arr, source), source), pixel_size_A=pixel_size_A,
                   source=source)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(T, H, W)``."""
        return self.frames.shape

    def close(self) -> None:
        """Release an open file handle of a lazily read movie (no-op otherwise)."""
        if self._close is not None:
            self._close()
            self._close = None

    def __enter__(self) -> "Movie":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Movie(source={self.source!r}, shape={self.shape}, "
                f"pixel_size_A={self.pixel_size_A})")


def as_frames(data: Any, source: str, *, lazy: bool) -> Frames:
    """Frames from a reader's output: in memory unless ``lazy`` and the data is not loaded."""
    if isinstance(data, Frames):
        return data if lazy else Frames.from_stack(np.stack(list(data)), source)
    if lazy and (isinstance(data, np.memmap) or not isinstance(data, np.ndarray)):
        return _lazy_array_frames(data, source)
    return Frames.from_stack(to_stack(data, source), source)


def _lazy_array_frames(arr: Any, source: str) -> Frames:
    """Frames read on access from an array-like with ``shape`` and integer indexing."""
    n, h, w, rgb, single = layout(tuple(arr.shape), source)
    if single:
        return Frames(n, (h, w), lambda i: arr[...], rgb=rgb, source=source)
    return Frames(n, (h, w), lambda i: arr[i], rgb=rgb, source=source)
