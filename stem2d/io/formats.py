"""One reader per file format: ``READERS[suffix](path, *, dataset, lazy) -> (data, pixel_size_A, close)``.

``data`` is an array, an array-like read on access, or :class:`~stem2d.io.frames.Frames`;
``close`` releases an open file (None when nothing stays open). ``"folder"`` reads a folder of
images.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np

from stem2d.io.frames import Frames, layout
from stem2d.io.metadata import to_angstrom

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
VIDEO_SUFFIXES = (".mp4", ".avi", ".gif")
READERS: dict[str, Callable[..., tuple[Any, float | None, Callable[[], None] | None]]] = {}


def _register(*suffixes: str):
    def deco(fn):
        for s in suffixes:
            READERS[s] = fn
        return fn
    return deco


@_register(".npy")
def _read_npy(path: Path, *, dataset: str | None, lazy: bool):
    _check_npy_size(path)
    return np.load(path, mmap_mode="r" if lazy else None, allow_pickle=False), None, None


def _check_npy_size(path: Path) -> None:
    """Refuse a ``.npy`` whose size differs from what its header promises (a truncated copy, or a
    damaged header that would read as another shape)."""
    from numpy.lib import format as npformat

    with open(path, "rb") as f:
        try:
            version = npformat.read_magic(f)
            read_header = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
            shape, _, dtype = read_header(f)
        except ValueError:
            return  # not a valid header: np.load reports it
        offset = f.tell()
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = path.stat().st_size
    if not dtype.hasobject and size != expected:
        what = "truncated file" if size < expected else "damaged file (data beyond the array)"
        raise ValueError(f"{path}: {what}: its header says shape {tuple(shape)} {dtype} "
                         f"({expected:,} bytes with the header) but the file has {size:,} bytes")


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
        _check_tif_complete(tif, series, path)
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


def _check_tif_complete(tif: Any, series: Any, path: Path) -> None:
    """Refuse a TIFF whose header promises more frames or bytes than the file holds.

    A truncated ImageJ stack (header: ``images=20``, data for 1) otherwise reads as a shorter
    movie without any error.
    """
    size = path.stat().st_size
    n_series = int(np.prod(series.shape[:-2])) if len(series.shape) > 2 else 1
    if series.shape and series.shape[-1] in (3, 4) and len(series.shape) >= 3:
        n_series = int(np.prod(series.shape[:-3])) if len(series.shape) > 3 else 1
    promised = (tif.imagej_metadata or {}).get("images")
    if isinstance(promised, int) and promised > n_series:
        raise ValueError(f"{path}: truncated or damaged file: its ImageJ header says {promised} frames "
                         f"but the file holds data for {n_series}")
    end = None
    if series.dataoffset is not None:
        end = series.dataoffset + series.nbytes
    else:
        page = series.pages[-1] if len(series.pages) else None
        if page is not None and getattr(page, "dataoffsets", None):
            end = max(o + n for o, n in zip(page.dataoffsets, page.databytecounts))
    if end is not None and end > size:
        raise ValueError(f"{path}: truncated file: its header places {n_series} frame(s) of "
                         f"{tuple(series.shape[-2:])} px up to byte {end:,} but the file has {size:,} bytes")


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
