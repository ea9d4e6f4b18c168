"""Open HAADF-STEM movies from microscope, image, array and video files as float32 frames.

Supported inputs (by extension): Gatan ``.dm3``/``.dm4`` and Velox/Berkeley ``.emd``
(rosettasciio), ``.tif``/``.tiff`` stacks (tifffile), ``.npy``/``.npz`` (numpy), ``.h5``/``.hdf5``
(h5py), ``.mp4``/``.avi``/``.gif`` (imageio), and folders of ``.png``/``.tif``/``.jpg`` images
(sorted by name, one image per frame).

Interpretation of array shapes (shared by every format): ``(H, W)`` is one frame; ``(T, H, W)``
is a stack, except ``(H, W, 3|4)`` which is one RGB(A) image; ``(T, H, W, 3|4)`` is an RGB(A)
stack. RGB(A) is converted to grayscale luminance ``0.2125 R + 0.7154 G + 0.0721 B`` (ITU-R
BT.709, as ``skimage.color.rgb2gray``; alpha is dropped). Other 4D data is refused.

Pixel size: from the file's own calibration (DM/EMD axes, ImageJ TIFF resolution, h5 attributes,
an npz ``pixel_size_A`` entry), overridden by a sidecar ``<name>.json`` beside the file when one
is present (keys ``pixel_size_A``, ``pixel_size`` + ``pixel_size_units``, or ``field_of_view_x``
+ ``field_of_view_units`` divided by the frame width), converted to angstrom.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["read_movie", "Movie", "Frames", "MIN_FRAME_PX", "to_angstrom"]

log = logging.getLogger(__name__)

MIN_FRAME_PX = 64
#: ITU-R BT.709 luminance weights (as ``skimage.color.rgb2gray``).
_LUMA = np.array([0.2125, 0.7154, 0.0721])


def to_angstrom(value: float, unit: str | None) -> float | None:
    """Convert a length in ``unit`` (A, nm, pm, um, mm, m; case/spelling tolerant) to angstrom.

    Returns None (and logs at debug level) for missing, pixel or reciprocal units.
    """
    key = (unit or "").strip().lower().replace("\\u00b5", "u").replace("µ", "u").replace("μ", "u")
    factor = _UNIT_TO_A.get(key)
    if factor is None or not np.isfinite(value) or value <= 0:
        log.debug("pixel size %r %r is not a usable length", value, unit)
        return None
    return float(value) * factor


_UNIT_TO_A = {
    "a": 1.0, "å": 1.0, "angstrom": 1.0, "angstroms": 1.0, "ang": 1.0,
    "nm": 10.0, "nanometer": 10.0, "nanometers": 10.0, "nanometre": 10.0,
    "pm": 0.01, "um": 1e4, "micron": 1e4, "microns": 1e4, "micrometer": 1e4,
    "micrometre": 1e4, "mm": 1e7, "m": 1e10,
}


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
    bad = ~np.isfinite(stack.reshape(stack.shape[0], -1)).all(axis=1)
    if bad.any():
        raise ValueError(f"{source}: frame {first_index + int(np.argmax(bad))} contains NaN or "
                         "Inf values")


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


IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
VIDEO_SUFFIXES = (".mp4", ".avi", ".gif")
_READERS: dict[str, Callable[..., tuple[Any, float | None, Callable[[], None] | None]]] = {}


def read_movie(path: str | Path, *, dataset: str | None = None, lazy: bool = False) -> Movie:
    """Open a movie (or a single image) as a :class:`Movie` of float32 ``(H, W)`` frames.

    Parameters
    ----------
    path : str or Path
        A file with a supported extension, or a folder of images.
    dataset : str, optional
        Which array to read: the key of an ``.npz``, the dataset path inside an ``.h5``/``.hdf5``
        (default: the first 2D/3D dataset in h5py's alphabetical visiting order), or the signal
        title inside an ``.emd``/``.dm*`` (default: the first 2D/3D image signal). Refused for
        other formats.
    lazy : bool, default False
        Read frames on access (``.npy`` memory map, TIFF pages or a memory map of contiguous
        TIFF data, h5 slicing, rosettasciio dask arrays, one file per frame for folders) instead
        of loading everything. Videos, ``.npz`` and compressed single-page TIFF stacks are read
        eagerly. NaN/Inf and shape problems are reported when a frame is accessed. Call
        ``movie.close()`` (or use ``with``) to release the open file of a lazy h5/TIFF movie.

    Returns
    -------
    Movie
        ``frames`` of float32 ``(H, W)`` arrays, ``pixel_size_A`` (angstrom or None),
        ``source`` (the path), ``shape`` ``(T, H, W)``.

    Raises
    ------
    FileNotFoundError
        The path does not exist.
    ValueError
        Unknown extension, unreadable/corrupt file, missing dataset, 4D or empty data, frames
        smaller than 64 x 64 px, or NaN/Inf values (message names the file and the frame).
    """
    path = Path(path)
    source = str(path)
    if not path.exists():
        raise FileNotFoundError(f"{source}: no such file or folder")
    kind = "folder" if path.is_dir() else path.suffix.lower()
    if kind not in _READERS:
        known = ", ".join(sorted(k for k in _READERS if k != "folder"))
        raise ValueError(f"{source}: unknown extension {path.suffix!r}; supported: {known} or "
                         "a folder of images")
    if dataset is not None and kind not in (".npz", ".h5", ".hdf5", ".emd", ".dm3", ".dm4"):
        raise ValueError(f"{source}: dataset={dataset!r} is only meaningful for npz/h5/emd/dm "
                         "files")
    try:
        data, pixel_size_A, close = _READERS[kind](path, dataset=dataset, lazy=lazy)
    except Exception as err:  # library errors on corrupt files: re-raise naming the file
        if isinstance(err, (ValueError, FileNotFoundError)) and source in str(err):
            raise
        raise ValueError(
            f"{source}: could not read as {kind} ({type(err).__name__}: {err})") from err
    try:
        frames = _as_frames(data, source, lazy=lazy)
    except Exception:
        if close is not None:
            close()
        raise
    sidecar = _sidecar_pixel_size_A(path, width=frames.shape[2])
    if sidecar is not None:
        if pixel_size_A is not None and abs(sidecar - pixel_size_A) > 0.05 * pixel_size_A:
            log.warning("%s: sidecar json pixel size %.4g A overrides file metadata %.4g A",
                        source, sidecar, pixel_size_A)
        pixel_size_A = sidecar
    return Movie(frames, pixel_size_A=pixel_size_A, source=source, close=close)


def _register(*suffixes: str):
    def deco(fn):
        for s in suffixes:
            _READERS[s] = fn
        return fn
    return deco


def _as_frames(data: Any, source: str, *, lazy: bool) -> Frames:
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


@_register(".npy")
def _read_npy(path: Path, *, dataset: str | None, lazy: bool):
    return np.load(path, mmap_mode="r" if lazy else None, allow_pickle=False), None, None


@_register(".npz")
def _read_npz(path: Path, *, dataset: str | None, lazy: bool):
    with np.load(path, allow_pickle=False) as npz:
        keys = list(npz.files)
        if dataset is None:
            arrays = [k for k in keys if npz[k].ndim >= 2]
            if not arrays:
                raise ValueError(f"{path}: no 2D/3D array in npz (keys: {keys})")
            dataset = arrays[0]
        elif dataset not in keys:
            raise ValueError(f"{path}: dataset={dataset!r} not in npz; keys: {keys}")
        pixel = float(npz["pixel_size_A"]) if "pixel_size_A" in keys else None
        return npz[dataset], pixel, None


@_register(".h5", ".hdf5")
def _read_h5(path: Path, *, dataset: str | None, lazy: bool):
    import h5py

    f = h5py.File(path, "r")
    try:
        if dataset is None:
            found: list[str] = []
            f.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset)
                         and obj.ndim in (2, 3) and not found else None)
            if not found:
                raise ValueError(f"{path}: no 2D/3D dataset in the h5 file")
            dataset = found[0]
        if dataset not in f or not isinstance(f[dataset], h5py.Dataset):
            raise ValueError(f"{path}: dataset={dataset!r} is not a dataset in the h5 file")
        dset = f[dataset]
        pixel = _h5_pixel_size_A(dict(dset.attrs))
        if lazy:
            return dset, pixel, f.close
        data = dset[()]
    except Exception:
        f.close()
        raise
    f.close()
    return data, pixel, None


def _h5_pixel_size_A(attrs: dict) -> float | None:
    if "pixel_size_A" in attrs:
        return float(attrs["pixel_size_A"])
    if "pixel_size" in attrs:
        unit = attrs.get("pixel_size_units", attrs.get("units", ""))
        unit = unit.decode() if isinstance(unit, bytes) else str(unit)
        return to_angstrom(float(np.ravel(attrs["pixel_size"])[-1]), unit)
    return None


@_register(".tif", ".tiff")
def _read_tif(path: Path, *, dataset: str | None, lazy: bool):
    import tifffile

    tif = tifffile.TiffFile(path)
    try:
        series = tif.series[0]
        pixel = _tif_pixel_size_A(tif)
        if lazy:
            n, h, w, rgb, single = layout(tuple(series.shape), str(path))
            pages = series.pages
            if not single and len(pages) == n and all(p is not None for p in pages):
                frames = Frames(n, (h, w), lambda i: pages[i].asarray(), rgb=rgb, source=str(path))
                return frames, pixel, tif.close
            if series.dataoffset is not None:  # contiguous, uncompressed: memory-map
                tif.close()
                return tifffile.memmap(path, series=0, mode="r"), pixel, None
            log.info("%s: compressed TIFF without one page per frame; loading eagerly", path)
        data = series.asarray()
    except Exception:
        tif.close()
        raise
    tif.close()
    return data, pixel, None


def _tif_pixel_size_A(tif: Any) -> float | None:
    """Pixel size from ImageJ metadata (``unit``) and the XResolution tag (pixels per unit)."""
    meta = tif.imagej_metadata or {}
    unit = meta.get("unit")
    tag = tif.pages[0].tags.get("XResolution")
    if unit is None or tag is None:
        return None
    num, den = tag.value
    if num == 0:
        return None
    return to_angstrom(den / num, unit)


@_register(".dm3", ".dm4", ".emd")
def _read_rsciio(path: Path, *, dataset: str | None, lazy: bool):
    if path.suffix.lower() == ".emd":
        from rsciio.emd import file_reader
    else:
        from rsciio.digitalmicrograph import file_reader
    signals = file_reader(str(path), lazy=lazy)
    titles = [s.get("metadata", {}).get("General", {}).get("title", "") for s in signals]
    if dataset is not None:
        chosen = [s for s, t in zip(signals, titles) if t == dataset]
        if not chosen:
            raise ValueError(f"{path}: dataset={dataset!r} not found; signal titles: {titles}")
    else:
        chosen = [s for s in signals if len(s["data"].shape) in (2, 3)]
        if not chosen:
            shapes = [tuple(s["data"].shape) for s in signals]
            raise ValueError(f"{path}: no 2D/3D image signal (shapes: {shapes})")
    signal = chosen[0]
    axes = sorted(signal.get("axes", []), key=lambda a: a.get("index_in_array", 0))
    pixel = None
    if axes:
        x_axis = axes[-1]
        pixel = to_angstrom(float(x_axis.get("scale", 1.0)), x_axis.get("units"))
    return signal["data"], pixel, None


@_register(*VIDEO_SUFFIXES)
def _read_video(path: Path, *, dataset: str | None, lazy: bool):
    import imageio.v3 as iio

    return iio.imread(path, index=None), None, None


@_register("folder")
def _read_folder(path: Path, *, dataset: str | None, lazy: bool):
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{path}: folder holds no {'/'.join(IMAGE_SUFFIXES)} images")
    first = _read_image(files[0])
    _, h, w, rgb, single = layout(first.shape, str(files[0]))
    if not single:
        raise ValueError(f"{files[0]}: a folder frame must be one 2D (or RGB) image, got shape "
                         f"{first.shape}")

    def get(i: int) -> np.ndarray:
        img = _read_image(files[i])
        if img.shape != first.shape:
            raise ValueError(f"{files[i]}: shape {img.shape} differs from {files[0].name} "
                             f"{first.shape}")
        return img

    return Frames(len(files), (h, w), get, rgb=rgb, source=str(path)), None, None


def _read_image(file: Path) -> np.ndarray:
    try:
        if file.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            return tifffile.imread(file)
        import imageio.v3 as iio

        return iio.imread(file)
    except Exception as err:
        raise ValueError(f"{file}: could not read image ({type(err).__name__}: {err})") from err


def _sidecar_pixel_size_A(path: Path, *, width: int) -> float | None:
    """Pixel size in angstrom from ``<stem>.json`` (or ``<name>.json``) beside ``path``."""
    for candidate in (path.with_suffix(".json"), path.with_name(path.name + ".json")):
        if candidate.is_file() and candidate != path:
            try:
                meta = json.loads(candidate.read_text())
            except (OSError, ValueError) as err:
                raise ValueError(
                    f"{candidate}: sidecar metadata is not valid json ({err})") from err
            value = _pixel_size_from_mapping(meta, width=width)
            if value is not None:
                log.debug("%s: pixel size %.4g A from sidecar %s", path, value, candidate)
                return value
    return None


def _pixel_size_from_mapping(meta: Any, *, width: int) -> float | None:
    """Search a nested json mapping for a pixel size or a field of view (first match wins)."""
    if isinstance(meta, list):
        for item in meta:
            found = _pixel_size_from_mapping(item, width=width)
            if found is not None:
                return found
        return None
    if not isinstance(meta, dict):
        return None
    if "pixel_size_A" in meta:
        return float(meta["pixel_size_A"])
    if "pixel_size" in meta:
        return to_angstrom(float(meta["pixel_size"]),
                           meta.get("pixel_size_units", meta.get("units")))
    if "field_of_view_x" in meta:
        fov = to_angstrom(float(meta["field_of_view_x"]),
                          meta.get("field_of_view_units", meta.get("units")))
        return None if fov is None else fov / width
    for value in meta.values():
        found = _pixel_size_from_mapping(value, width=width)
        if found is not None:
            return found
    return None
