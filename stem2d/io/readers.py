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

The per-format readers are in :mod:`stem2d.io.formats`, the frame containers in
:mod:`stem2d.io.frames` and the units and sidecar parsing in :mod:`stem2d.io.metadata`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from stem2d.io.formats import READERS
from stem2d.io.frames import MIN_FRAME_PX, Frames, Movie, as_frames
from stem2d.io.metadata import sidecar_pixel_size_A, to_angstrom

__all__ = ["read_movie", "Movie", "Frames", "MIN_FRAME_PX", "to_angstrom"]

log = logging.getLogger(__name__)


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
    if kind not in READERS:
        known = ", ".join(sorted(k for k in READERS if k != "folder"))
        raise ValueError(f"{source}: unknown extension {path.suffix!r}; supported: {known} or "
                         "a folder of images")
    if dataset is not None and kind not in (".npz", ".h5", ".hdf5", ".emd", ".dm3", ".dm4"):
        raise ValueError(f"{source}: dataset={dataset!r} is only meaningful for npz/h5/emd/dm "
                         "files")
    try:
        data, pixel_size_A, close = READERS[kind](path, dataset=dataset, lazy=lazy)
    except Exception as err:  # library errors on corrupt files: re-raise naming the file
        if isinstance(err, (ValueError, FileNotFoundError)) and source in str(err):
            raise
        raise ValueError(
            f"{source}: could not read as {kind} ({type(err).__name__}: {err})") from err
    try:
        frames = as_frames(data, source, lazy=lazy)
    except Exception:
        if close is not None:
            close()
        raise
    sidecar = sidecar_pixel_size_A(path, width=frames.shape[2])
    if sidecar is not None:
        if pixel_size_A is not None and abs(sidecar - pixel_size_A) > 0.05 * pixel_size_A:
            log.warning("%s: sidecar json pixel size %.4g A overrides file metadata %.4g A",
                        source, sidecar, pixel_size_A)
        pixel_size_A = sidecar
    return Movie(frames, pixel_size_A=pixel_size_A, source=source, close=close)
