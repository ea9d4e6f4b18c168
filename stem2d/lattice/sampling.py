"""Checks before a movie is resampled: is the pixel size plausible, and does the result fit?

Every frame is resampled to the classifier's 0.3 A/px before anything else. A wrong pixel size
turns that into a trap: ``pixel_size_A=30`` on a 256 px frame asked for a 25,600 px frame and
memory grew until the process was killed; ``0.001`` shrank it to one pixel. The infer glue calls
:func:`check_pixel_size` (given value vs the lattice) and :func:`plan_resample` (output size and
peak memory) once, before the frame loop, so such runs stop at once with a message naming the
values.
"""

from __future__ import annotations

import logging
import math
import os

from stem2d import CANONICAL_PIXEL_SIZE_A, TILE_SIZE_PX

__all__ = ["BYTES_PER_CANONICAL_PX", "available_memory_bytes", "check_pixel_size", "plan_resample"]

log = logging.getLogger(__name__)

#: Peak memory of the frame loop per pixel of the resampled frame: U-Net activations, heat map,
#: windows (measured: 260 / 226 / 178 bytes per px for 512 / 1024 / 2048 px frames, bundled U-Net).
BYTES_PER_CANONICAL_PX = 256
#: Of the memory available at the start, the frame loop may plan to use this fraction.
MEMORY_FRACTION = 0.8
#: A given pixel size this many times larger or smaller than the lattice's is refused.
MAX_LATTICE_FACTOR = 2.0
#: Disagreement (relative) above which a given pixel size is reported as a warning.
WARN_TOLERANCE = 0.05


def available_memory_bytes() -> int | None:
    """Memory available to a new allocation (``MemAvailable`` of /proc/meminfo), None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def plan_resample(
    shape: tuple[int, int],
    *,
    pixel_size_A: float,
    to_pixel_size_A: float = CANONICAL_PIXEL_SIZE_A,
    source: str = "frame",
    bytes_per_px: float = BYTES_PER_CANONICAL_PX,
    available_bytes: int | None = None,
) -> tuple[int, int]:
    """The resampled frame shape, after checking that it is usable and fits in memory.

    Parameters
    ----------
    shape : (int, int)
        Input frame shape (H, W) in pixels.
    pixel_size_A : float, keyword-only
        Input pixel size, angstrom per px (the value the run will use).
    to_pixel_size_A : float, keyword-only
        Target sampling (default 0.3, the classifier's).
    source : str, keyword-only
        The movie, for messages.
    bytes_per_px : float, keyword-only
        Planned peak memory per resampled pixel (default :data:`BYTES_PER_CANONICAL_PX`).
    available_bytes : int, keyword-only, optional
        Memory available; default :func:`available_memory_bytes` (no check when unknown).

    Returns
    -------
    (int, int)
        ``(round(H * px / to), round(W * px / to))``, as :func:`stem2d.lattice.scale.resample` makes.

    Raises
    ------
    ValueError
        Pixel size not a finite number > 0; a resampled frame smaller than one classifier window
        (64 px); or a planned peak memory above 80 % of the available memory.
    """
    if not (isinstance(pixel_size_A, (int, float)) and math.isfinite(pixel_size_A) and pixel_size_A > 0):
        raise ValueError(f"{source}: pixel_size_A={pixel_size_A!r} must be a finite number > 0")
    h, w = int(shape[0]), int(shape[1])
    zoom = pixel_size_A / to_pixel_size_A
    out = (max(1, round(h * zoom)), max(1, round(w * zoom)))
    what = (f"{source}: frames of {h} x {w} px at pixel_size_A={pixel_size_A:g} A/px span "
            f"{h * pixel_size_A:.4g} x {w * pixel_size_A:.4g} A, i.e. {out[0]} x {out[1]} px at the "
            f"classifier's {to_pixel_size_A:g} A/px")
    if min(out) < TILE_SIZE_PX:
        raise ValueError(f"{what}: smaller than one {TILE_SIZE_PX} x {TILE_SIZE_PX} px window. Is the pixel size "
                         "right? Leave pixel_size_A unset to measure it from the lattice")
    available = available_memory_bytes() if available_bytes is None else available_bytes
    planned = bytes_per_px * out[0] * out[1] + 16.0 * h * w
    if available is not None and planned > MEMORY_FRACTION * available:
        raise ValueError(f"{what}: analysing one such frame needs about {planned / 1e9:.3g} GB, more than "
                         f"{MEMORY_FRACTION:.0%} of the {available / 1e9:.3g} GB available. Is the pixel size "
                         "right? Leave pixel_size_A unset to measure it from the lattice, or crop the movie")
    return out


def check_pixel_size(given_A: float, measured_A: float | None, *, source: str = "frame",
                     material: str = "the") -> None:
    """Compare a pixel size given by the user with the one measured from the lattice.

    More than :data:`WARN_TOLERANCE` apart: a warning (the given value is used). More than
    :data:`MAX_LATTICE_FACTOR` times apart: a ``ValueError`` naming both values, since the
    lattice measurement is exact to ~0.1 % and such a value is a typo or a unit mix-up (nm for A).
    ``measured_A=None`` (no lattice found) accepts the given value.
    """
    if measured_A is None:
        return
    ratio = given_A / measured_A
    if ratio > MAX_LATTICE_FACTOR or ratio < 1 / MAX_LATTICE_FACTOR:
        raise ValueError(f"{source}: pixel_size_A={given_A:g} disagrees with the {material} lattice of frame 0, "
                         f"which measures {measured_A:.4g} A/px ({ratio:.3g} x). Leave pixel_size_A unset to use "
                         "the measured value, or check the unit (angstrom per pixel) and material=")
    if abs(ratio - 1) > WARN_TOLERANCE:
        log.warning("%s: pixel_size_A=%g as given, but the %s lattice of frame 0 measures %.4g A/px (%+.0f%%)",
                    source, given_A, material, measured_A, 100 * (ratio - 1))
