"""Pixel size in angstrom from calibration units and from a sidecar ``<name>.json`` beside a file."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


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


def sidecar_pixel_size_A(path: Path, *, width: int) -> float | None:
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
