"""A patch of MX2 monolayer around one site, as atomic columns: the base of a physics-randomised tile.

Unlike :func:`stem2d.sim.tiles.simulate_tile` (which renders an image), a :class:`Scene` keeps
the columns, so each augmented sample can be rendered with its own geometry and physics
(:mod:`stem2d.sim.physics`). Alloys get a per-column composition drawn at random, Janus layers an
S face and a Se face (which one meets the beam first is drawn per scene).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from stem2d.classes import DefectKind, parse_kind
from stem2d.materials import ATOMIC_NUMBER, Material
from stem2d.sim.lattice import (
    Columns,
    apply_defect,
    hollow_directions,
    lattice_vectors_A,
    mx2_columns,
)


@dataclass(frozen=True)
class Scene:
    """Columns around the centre of a base, positions relative to that centre.

    Attributes
    ----------
    pos_A : ndarray, float32, (N, 2); column (row, col) in angstrom from the scene centre.
    atoms : ndarray, int8, (N, 2); atomic numbers ordered along the beam (0 = none).
    defect_A : ndarray, float64, (2,); the defect site (NaN for pristine).
    material : str
    second_fraction : float; fraction of the second chalcogen (alloys, Janus 0.5; else 0).
    """

    pos_A: np.ndarray
    atoms: np.ndarray
    defect_A: np.ndarray
    material: str
    second_fraction: float


def _chalcogen_layers(columns: Columns, material: Material, x: float, rng) -> Columns:
    """Replace chalcogen atoms by the second chalcogen: at random (alloy) or one face (Janus)."""
    if not material.mixed:
        return columns
    atoms = columns.atoms.copy()
    xs = columns.site == "X"
    z2 = ATOMIC_NUMBER[material.second_chalcogen]
    if material.janus:
        face = int(rng.integers(2))
        atoms[xs, face] = z2
    else:
        swap = rng.uniform(size=(int(xs.sum()), 2)) < x
        sub = atoms[xs]
        sub[swap] = z2
        atoms[xs] = sub
    return replace(columns, atoms=atoms)


def draw_composition(material: Material, second_fraction: float | None, rng) -> tuple[Material, float]:
    """The alloy fraction ``x`` of the second chalcogen (``second_fraction``, else uniform in the
    material's range: one draw from ``rng``) and the material with its Vegard lattice constant."""
    lo, hi = material.second_fraction_range
    x = float(rng.uniform(lo, hi)) if second_fraction is None else float(second_fraction)
    return replace(material, a_A=material.lattice_constant_A(x)), x


def place_defect(columns: Columns, kind: DefectKind, index: int, rng) -> Columns:
    """Put ``kind`` on column ``index``; a single-atom change hits the upper or lower atom at random."""
    if kind.site == "H":
        pos = np.concatenate([columns.pos_A, columns.pos_A[index:index + 1]])
        atoms = np.concatenate([columns.atoms, [[kind.occupant_z, 0]]])
        return Columns(pos, np.append(columns.site, "H"), atoms)
    if kind.site == "X" and not kind.whole_column:
        atoms = columns.atoms.copy()
        atoms[index, int(rng.integers(2))] = kind.occupant_z
        return replace(columns, atoms=atoms)
    return apply_defect(columns, kind, index)


def build_scene(
    kind: str | None,
    *,
    material: Material,
    radius_A: float,
    rng=None,
    max_offset_A: float = 0.6,
    site: str | None = None,
    neighbours: tuple[str, ...] = (),
    min_neighbour_distance_A: float = 4.0,
    dopant_offset_A: float = 0.0,
    second_fraction: float | None = None,
) -> Scene:
    """Columns within ``radius_A`` of a centre near one site holding ``kind``.

    Parameters
    ----------
    kind : str or None
        Defect kind (generic kinds such as ``Mlight_M`` resolve for ``material``); None: pristine.
    material : Material
    radius_A : float
        Columns up to this distance from the centre are kept.
    rng : int, Generator or None
    max_offset_A : float, default 0.6
        The defect site lies uniformly in a disc of this radius around the centre.
    site : {"M", "X", "H"} or None
        Site at the centre of a pristine scene (None: drawn uniformly); defects use their own.
    neighbours : tuple of str
        Other defect kinds on random columns >= ``min_neighbour_distance_A`` from the site.
    dopant_offset_A : float
        A metal-site substitution moves this far towards a hollow (Mo configuration B).
    second_fraction : float or None
        Fraction of the second chalcogen of an alloy (None: uniform in the material's range).

    Returns
    -------
    Scene
    """
    rng = np.random.default_rng(rng)
    mat, x = draw_composition(material, second_fraction, rng)
    parsed = None if kind is None else parse_kind(kind, mat)
    if parsed is not None:
        site = parsed.site
    elif site is None:
        site = ("M", "X", "H")[int(rng.integers(3))]
    radius = max_offset_A * np.sqrt(rng.uniform())
    phi = rng.uniform(0.0, 2 * np.pi)
    target = np.array([radius * np.sin(phi), radius * np.cos(phi)])
    vecs = lattice_vectors_A(mat.a_A, 0.0)
    shift = {"M": 0.0, "X": 1.0 / 3.0, "H": 2.0 / 3.0}[site] * (vecs[0] + vecs[1])
    extent = 2.0 * radius_A
    origin = target + radius_A - shift
    columns = mx2_columns(mat, extent_A=(extent, extent), origin_A=tuple(origin), margin_A=0.0)
    columns = _chalcogen_layers(columns, mat, x, rng)
    d = np.hypot(*(columns.pos_A - (target + radius_A)).T)
    index = int(np.argmin(np.where(columns.site == ("M" if site == "H" else site), d, np.inf)))
    if parsed is not None:
        columns = place_defect(columns, parsed, index, rng)
        if site == "H":
            index = len(columns) - 1
            columns.pos_A[index] = target + radius_A
        elif dopant_offset_A and site == "M" and parsed.occupant_z:
            direction = hollow_directions(0.0)[rng.integers(3)]
            pos = columns.pos_A.copy()
            pos[index] += dopant_offset_A * direction
            columns = replace(columns, pos_A=pos)
    free = (d >= min_neighbour_distance_A) & (d <= radius_A - 2.0)
    free = np.append(free, np.zeros(len(columns) - len(free), bool))
    free[index] = False
    for name in neighbours:
        other = parse_kind(name, mat)
        candidates = np.flatnonzero(free & (columns.site == ("M" if other.site == "H" else other.site)))
        if candidates.size == 0:
            continue
        j = int(candidates[rng.integers(candidates.size)])
        free[j] = False
        columns = place_defect(columns, other, j, rng)
        if other.site == "H":
            pos = columns.pos_A.copy()
            pos[-1] += (2.0 / 3.0) * (vecs[0] + vecs[1])
            columns = replace(columns, pos_A=pos)
            free = np.append(free, False)
    rel = columns.pos_A - radius_A
    keep = np.hypot(*rel.T) <= radius_A
    defect = target if parsed is not None else np.array([np.nan, np.nan])
    return Scene(rel[keep].astype(np.float32), columns.atoms[keep].astype(np.int8), defect,
                 material.name, x if material.mixed else 0.0)
