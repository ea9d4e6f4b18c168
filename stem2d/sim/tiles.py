"""Single-defect tiles: the building blocks of the classifier's training set."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stem2d import CANONICAL_PIXEL_SIZE_A, TILE_SIZE_PX
from stem2d.classes import ClassSet, parse_kind
from stem2d.materials import Material
from stem2d.sim.imaging import Probe, render_haadf
from stem2d.sim.lattice import (
    Columns,
    apply_defect,
    displace_column,
    hollow_directions,
    lattice_vectors_A,
    mx2_columns,
    nearest_column,
)

#: Smallest tile that holds a full unit cell plus the probe, in units of the lattice constant.
_MIN_TILE_IN_CELLS = 2.0


@dataclass(frozen=True)
class TileTruth:
    """Where the defect of a tile is: (row, col) in pixels (NaN for pristine), kind and site."""

    row: float
    col: float
    kind: str | None
    site: str | None


def check_tile_size(size_px: int, pixel_size_A: float, material: Material) -> None:
    """Raise ``ValueError`` if a tile cannot hold a unit cell of ``material``."""
    if not pixel_size_A > 0:
        raise ValueError(f"pixel_size_A must be > 0, got {pixel_size_A}")
    if size_px * pixel_size_A < _MIN_TILE_IN_CELLS * material.a_A:
        raise ValueError(
            f"tile size {size_px} px at {pixel_size_A} A/px is {size_px * pixel_size_A:.2f} A, "
            f"too small for a unit cell of {material.name} (need >= "
            f"{_MIN_TILE_IN_CELLS * material.a_A:.2f} A)"
        )


def sample_kind(class_name: str, classes: ClassSet, rng=None) -> str | None:
    """Pick one defect kind of a class uniformly (None for the pristine class)."""
    rng = np.random.default_rng(rng)
    kinds = classes.kinds_of(class_name)
    return None if not kinds else kinds[int(rng.integers(len(kinds)))]


def simulate_tile(
    kind: str | None,
    *,
    material: Material,
    rng=None,
    size_px: int = TILE_SIZE_PX,
    pixel_size_A: float = CANONICAL_PIXEL_SIZE_A,
    probe: Probe = Probe(),
    z_exponent: float = 1.7,
    max_offset_px: float = 3.0,
    rotation_deg: float | None = None,
    dopant_offset_A: float = 0.0,
    neighbours: tuple[str, ...] = (),
    min_neighbour_distance_A: float = 4.0,
) -> tuple[np.ndarray, TileTruth]:
    """Noise-free HAADF tile with one defect of ``kind`` near its centre.

    The lattice gets a random in-plane rotation (unless ``rotation_deg`` is given) and is shifted
    so that the defect site lies at a random sub-pixel point within ``max_offset_px`` of the
    tile centre.

    Parameters
    ----------
    kind : str or None
        Defect kind, e.g. ``"Mo_W"`` (see :mod:`stem2d.classes`); None for a pristine tile.
    material : Material
        Host monolayer.
    rng : int, Generator or None
        Randomness of rotation and offset.
    size_px, pixel_size_A : int, float
        Tile size and sampling (default: the classifier's canonical 64 px at 0.3 A/px).
    probe, z_exponent : Probe, float
        Image formation, see :func:`stem2d.sim.imaging.render_haadf`.
    max_offset_px : float, default 3
        Radius of the disc around the centre where the defect site is placed.
    dopant_offset_A : float, default 0
        A metal-site substitution (e.g. ``Mo_W``) is moved this far towards one of its three
        hollow sites (random): the displaced "configuration B" of Mo dopants in WS2 movies.
        The reported position stays the metal site. Ignored for other kinds.
    neighbours : tuple of str, default ()
        Defect kinds placed on other random columns of the tile, at least
        ``min_neighbour_distance_A`` from the centre site (and its column): the other defects a
        window cut from a movie holds. The tile's label stays the centre defect's.
    min_neighbour_distance_A : float, default 4

    Returns
    -------
    image : ndarray, float64, (size_px, size_px); a pristine W column peaks at ~1.
    truth : TileTruth
    """
    rng = np.random.default_rng(rng)
    check_tile_size(size_px, pixel_size_A, material)
    parsed = None if kind is None else parse_kind(kind, material)
    theta = rng.uniform(0.0, 360.0) if rotation_deg is None else float(rotation_deg)
    radius = max_offset_px * np.sqrt(rng.uniform())
    phi = rng.uniform(0.0, 2 * np.pi)
    centre = (size_px - 1) / 2.0
    target_px = np.array([centre + radius * np.sin(phi), centre + radius * np.cos(phi)])
    target_A = target_px * pixel_size_A
    site = "M" if parsed is None else parsed.site
    vecs = lattice_vectors_A(material.a_A, theta)
    origin = target_A if site == "M" else target_A - (vecs[0] + vecs[1]) / 3.0
    extent = (size_px * pixel_size_A, size_px * pixel_size_A)
    columns = mx2_columns(material, extent_A=extent, rotation_deg=theta, origin_A=tuple(origin))
    index = nearest_column(columns, tuple(target_A), site)
    if parsed is not None:
        columns = apply_defect(columns, parsed, index)
        if dopant_offset_A and parsed.site == "M" and parsed.occupant_z:
            direction = hollow_directions(theta)[rng.integers(3)]
            columns = displace_column(columns, index, dopant_offset_A * direction)
    columns = add_neighbours(columns, neighbours, material=material, centre_A=target_A,
                             min_distance_A=min_neighbour_distance_A, exclude=index,
                             extent_A=extent, rng=rng)
    image = render_haadf(columns, shape=(size_px, size_px), pixel_size_A=pixel_size_A,
                         probe=probe, z_exponent=z_exponent, z_reference=material.z_metal)
    if parsed is None:
        return image, TileTruth(np.nan, np.nan, None, None)
    return image, TileTruth(float(target_px[0]), float(target_px[1]), kind, site)


def add_neighbours(
    columns: Columns,
    kinds: tuple[str, ...],
    *,
    material: Material,
    centre_A: np.ndarray,
    min_distance_A: float,
    exclude: int,
    extent_A: tuple[float, float],
    rng=None,
) -> Columns:
    """Put each defect of ``kinds`` on a random free column of its site >= ``min_distance_A`` away.

    Only columns inside the image (``0 <= row, col <= extent_A``) are used; columns within
    ``min_distance_A`` of ``centre_A`` (row, col in A) and column ``exclude`` never are, nor is
    a column twice. A kind with no free column left is skipped.
    """
    rng = np.random.default_rng(rng)
    pos = columns.pos_A
    free = ((np.hypot(*(pos - np.asarray(centre_A)).T) >= min_distance_A)
            & (pos >= 0).all(axis=1) & (pos <= np.asarray(extent_A)).all(axis=1))
    free[exclude] = False
    for name in kinds:
        parsed = parse_kind(name, material)
        candidates = np.flatnonzero(free & (columns.site == parsed.site))
        if candidates.size == 0:
            continue
        index = int(candidates[rng.integers(candidates.size)])
        columns = apply_defect(columns, parsed, index)
        free[index] = False
    return columns
