"""Atomic columns of a 2H-MX2 monolayer seen along the c axis, and point defects on them.

In projection the metal (M) columns and the chalcogen X2 columns (two X atoms stacked along the
beam) form a honeycomb: lattice vectors a1 = a (1, 0), a2 = a (1/2, sqrt(3)/2), M at 0 and X2 at
(a1 + a2) / 3, so the projected M-X2 distance is a / sqrt(3).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from stem2d.classes import DefectKind
from stem2d.materials import Material


@dataclass(frozen=True)
class Columns:
    """Atomic columns in the image plane.

    Attributes
    ----------
    pos_A : ndarray, float64, shape (N, 2)
        Column positions (row, col) in angstrom; the image origin (pixel 0, 0) is at (0, 0).
    site : ndarray, str, shape (N,)
        ``"M"`` for metal columns, ``"X"`` for chalcogen columns.
    atoms : ndarray, int, shape (N, 2)
        Atomic numbers of the (up to two) atoms in each column; 0 means no atom.
    """

    pos_A: np.ndarray
    site: np.ndarray
    atoms: np.ndarray

    def __len__(self) -> int:
        return len(self.site)


def lattice_vectors_A(a_A: float, rotation_deg: float) -> np.ndarray:
    """The two hexagonal lattice vectors as rows, in (row, col) angstrom, rotated by ``rotation_deg``."""
    t = np.deg2rad(rotation_deg)
    xy = np.array([[1.0, 0.0], [0.5, np.sqrt(3) / 2]]) * a_A  # (x, y) = (col, row)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    xy = xy @ rot.T
    return xy[:, ::-1].copy()


def mx2_columns(
    material: Material,
    *,
    extent_A: tuple[float, float],
    rotation_deg: float = 0.0,
    origin_A: tuple[float, float] = (0.0, 0.0),
    margin_A: float = 4.0,
) -> Columns:
    """All columns of a pristine monolayer covering ``[-margin, extent + margin]``.

    Parameters
    ----------
    material : Material
        The monolayer (lattice constant, metal and chalcogen).
    extent_A : (float, float)
        Height and width of the region in angstrom.
    rotation_deg : float, default 0
        In-plane rotation of the lattice.
    origin_A : (float, float), default (0, 0)
        Position (row, col) in angstrom of one metal column (sets the lattice offset).
    margin_A : float, default 4
        Extra border so that columns just outside the region still blur into it.
    """
    if material.a_A <= 0:
        raise ValueError(f"material.a_A must be > 0, got {material.a_A}")
    h, w = extent_A
    vecs = lattice_vectors_A(material.a_A, rotation_deg)
    origin = np.asarray(origin_A, dtype=float)
    corners = np.array([[-margin_A, -margin_A], [-margin_A, w + margin_A],
                        [h + margin_A, -margin_A], [h + margin_A, w + margin_A]]) - origin
    frac = corners @ np.linalg.inv(vecs)  # fractional coordinates of the corners
    lo = np.floor(frac.min(axis=0)) - 1
    hi = np.ceil(frac.max(axis=0)) + 1
    i, j = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="ij")
    cells = np.stack([i.ravel(), j.ravel()], axis=1) @ vecs + origin
    x_offset = (vecs[0] + vecs[1]) / 3.0
    pos = np.concatenate([cells, cells + x_offset])
    site = np.array(["M"] * len(cells) + ["X"] * len(cells))
    atoms = np.zeros((len(pos), 2), dtype=np.int64)
    atoms[: len(cells), 0] = material.z_metal
    atoms[len(cells):] = material.z_chalcogen
    keep = ((pos[:, 0] >= -margin_A) & (pos[:, 0] <= h + margin_A)
            & (pos[:, 1] >= -margin_A) & (pos[:, 1] <= w + margin_A))
    return Columns(pos[keep], site[keep], atoms[keep])


def hollow_directions(rotation_deg: float) -> np.ndarray:
    """Unit vectors (3, 2), (row, col), from a metal column towards its three nearest hollow sites.

    The hollows of the 2H honeycomb sit at 2 (a1 + a2) / 3 modulo the lattice; a metal dopant
    displaced towards one of them is the "configuration B" seen in Mo-doped WS2 movies.
    """
    v1, v2 = lattice_vectors_A(1.0, rotation_deg)
    dirs = np.stack([-(v1 + v2), 2 * v1 - v2, 2 * v2 - v1]) / 3.0
    return dirs / np.linalg.norm(dirs, axis=1, keepdims=True)


def displace_column(columns: Columns, index: int, offset_A: np.ndarray) -> Columns:
    """Return a copy of ``columns`` with column ``index`` moved by ``offset_A`` (row, col in A)."""
    pos = columns.pos_A.copy()
    pos[index] += np.asarray(offset_A, dtype=np.float64)
    return replace(columns, pos_A=pos)


def nearest_column(columns: Columns, point_A: tuple[float, float], site: str) -> int:
    """Index of the column of type ``site`` ("M" or "X") nearest to ``point_A`` (row, col in A)."""
    candidates = np.flatnonzero(columns.site == site)
    if candidates.size == 0:
        raise ValueError(f"no column of site {site!r} in the field of view")
    d2 = ((columns.pos_A[candidates] - np.asarray(point_A)) ** 2).sum(axis=1)
    return int(candidates[np.argmin(d2)])


def apply_defect(columns: Columns, kind: DefectKind, index: int) -> Columns:
    """Return a copy of ``columns`` with defect ``kind`` at column ``index``.

    The column must be of the kind's host site. A whole-column defect replaces every atom of the
    column with a single occupant (or none, for a vacancy); a single-atom defect on an X2 column
    replaces one of its two atoms.
    """
    if columns.site[index] != kind.site:
        raise ValueError(
            f"defect {kind.name!r} needs a {kind.site} site, column {index} is {columns.site[index]}"
        )
    atoms = columns.atoms.copy()
    if kind.whole_column:
        atoms[index] = (kind.occupant_z, 0)
    else:
        atoms[index, 1] = kind.occupant_z
    return replace(columns, atoms=atoms)


def column_weights(atoms: np.ndarray, *, z_exponent: float, z_reference: int) -> np.ndarray:
    """Incoherent HAADF column strength sum_i Z_i^n, relative to one atom of ``z_reference``."""
    z = np.clip(atoms.astype(np.float64), 0.0, None)
    return np.power(z, z_exponent).sum(axis=1) / float(z_reference) ** z_exponent
