"""Where the frame is not clean lattice: holes, their edges, contamination and amorphous patches.

Found from the column quantification (:func:`stem2d.lattice.columns.quantify_columns`) site by
site, then painted onto the pixel grid (each pixel takes the region of its nearest site):

- ``hole``: three or more touching metal/chalcogen columns that are (nearly) empty
  (``intensity_rel < empty_rel``): a multi-column hole, not a point vacancy;
- ``edge``: intact columns within ``edge_A`` of a hole;
- ``contamination``: raised background: the local hollow level is more than
  ``contamination_z`` robust SDs above the frame's and more than ``contamination_fraction`` of a
  metal column's mean disk intensity;
- ``amorphous``: the neighbourhood does not look like the lattice (``fit_quality <
  min_fit_quality``) or the local Bragg contrast is weak (``bragg < min_bragg``).

Point calls inside holes, contamination and amorphous patches are not trusted (the pipeline
flags them ``unknown``); calls on edges are kept and marked. Defect densities are per lattice area
(the frame minus these regions).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import sparse, spatial
from scipy.sparse.csgraph import connected_components

from stem2d.lattice.columns import ColumnQuantification

__all__ = ["REGION_KINDS", "RegionMap", "find_regions"]

#: Region kinds, in the order of their label values (0 = lattice).
REGION_KINDS = ("lattice", "hole", "edge", "contamination", "amorphous")
#: Kinds in which point calls are not trusted.
UNTRUSTED = ("hole", "contamination", "amorphous")


@dataclass(frozen=True)
class RegionMap:
    """Regions of one frame.

    Attributes
    ----------
    labels : ndarray, uint8, (H, W)
        Index into :data:`REGION_KINDS` per pixel of the quantified frame.
    site_region : ndarray, uint8, (N,)
        The same per row of the column table.
    pixel_size_A : float
    """

    labels: np.ndarray
    site_region: np.ndarray
    pixel_size_A: float

    @cached_property
    def pixel_counts(self) -> np.ndarray:
        """Pixels of each kind, in the order of :data:`REGION_KINDS` (one comparison per
        non-lattice kind over the uint8 labels: no integer copy of the frame as a bincount makes)."""
        rest = [int(np.count_nonzero(self.labels == i)) for i in range(1, len(REGION_KINDS))]
        return np.array([self.labels.size - sum(rest), *rest], dtype=np.int64)

    def fractions(self) -> dict[str, float]:
        """Fraction of the frame in each kind."""
        return {k: float(c) / self.labels.size for k, c in zip(REGION_KINDS, self.pixel_counts)}

    def lattice_area_nm2(self) -> float:
        """Area outside holes, edges, contamination and amorphous patches (nm^2)."""
        return float(self.pixel_counts[0]) * self.pixel_size_A**2 / 100.0

    def region_at(self, points: np.ndarray) -> np.ndarray:
        """Region name (str array) at (row, col) points of the quantified frame."""
        p = np.rint(np.asarray(points, dtype=np.float64).reshape(-1, 2)).astype(np.intp)
        p[:, 0] = np.clip(p[:, 0], 0, self.labels.shape[0] - 1)
        p[:, 1] = np.clip(p[:, 1], 0, self.labels.shape[1] - 1)
        return np.asarray(REGION_KINDS, dtype=object)[self.labels[p[:, 0], p[:, 1]]]

    def masks(self) -> dict[str, np.ndarray]:
        """Boolean mask per non-lattice kind present."""
        return {k: self.labels == i for i, k in enumerate(REGION_KINDS) if i and self.pixel_counts[i]}


def find_regions(
    quant: ColumnQuantification,
    shape: tuple[int, int],
    *,
    material_mx_distance_A: float,
    empty_rel: float = 0.3,
    min_hole_columns: int = 3,
    edge_A: float = 3.5,
    contamination_z: float = 3.0,
    contamination_fraction: float = 0.3,
    min_fit_quality: float = 0.5,
    min_bragg: float = 0.5,
) -> RegionMap:
    """Holes, edges, contamination and amorphous patches of a quantified frame.

    Parameters
    ----------
    quant : ColumnQuantification
        Of the frame (its ``table`` must hold ``background``).
    shape : (int, int)
        Shape of the quantified frame.
    material_mx_distance_A : float, keyword-only
        Projected metal-chalcogen distance (``Material.mx_distance_A``): columns closer than 1.3
        times this touch.
    empty_rel, min_hole_columns, edge_A, contamination_z, contamination_fraction,
    min_fit_quality, min_bragg : keyword-only
        The rules of the module docstring.

    Returns
    -------
    RegionMap
    """
    t = quant.table
    ps = quant.pixel_size_A
    pos = t[["row", "col"]].to_numpy()
    sub = t["sublattice"].to_numpy()
    column = sub != "hollow"
    region = np.zeros(len(t), np.uint8)
    # holes: connected groups of empty columns
    empty = np.flatnonzero(column & (t["intensity_rel"].to_numpy() < empty_rel))
    hole = np.zeros(len(t), bool)
    if len(empty) >= min_hole_columns:
        pairs = spatial.cKDTree(pos[empty]).query_pairs(1.3 * material_mx_distance_A / ps, output_type="ndarray")
        graph = sparse.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(empty),) * 2)
        _, comp = connected_components(graph, directed=False)
        sizes = np.bincount(comp)
        hole[empty[sizes[comp] >= min_hole_columns]] = True
    # a hollow surrounded by hole columns is hole too
    tree = spatial.cKDTree(pos) if hole.any() else None  # of every site: here and in _paint
    if hole.any():
        near_hole = tree.query_ball_point(pos[hole], r=1.3 * material_mx_distance_A / ps)
        for idx in near_hole:
            idx = np.asarray(idx)
            hole[idx[sub[idx] == "hollow"]] = True
    # amorphous / weak lattice
    amorphous = (t["fit_quality"].to_numpy() < min_fit_quality) | (t["bragg"].to_numpy() < min_bragg)
    # contamination: raised background, smoothed over the nearest hollows
    contamination = np.zeros(len(t), bool)
    metal = sub == "metal"
    if np.count_nonzero(sub == "hollow") >= 7 and metal.any():
        bg = t["background"].to_numpy()
        # the 7 nearest hollows by lattice index (the sets of a KD-tree, ~2x faster)
        level = np.median(bg[quant.neighbours.nearest(2, np.arange(len(t)), 7)], axis=1)
        ref = np.median(level)
        spread = 1.4826 * np.median(np.abs(level - ref)) + 1e-12
        r_int = quant.integration_radius_A / ps
        metal_mean = np.median(t["intensity"].to_numpy()[metal]) / (np.pi * r_int**2)
        excess = level - ref
        contamination = (excess > contamination_z * spread) & (excess > contamination_fraction * metal_mean)
    region[amorphous] = REGION_KINDS.index("amorphous")
    region[contamination] = REGION_KINDS.index("contamination")
    if hole.any():
        d, _ = spatial.cKDTree(pos[hole]).query(pos)
        region[(d * ps <= edge_A) & ~hole] = REGION_KINDS.index("edge")
    region[hole] = REGION_KINDS.index("hole")
    return RegionMap(_paint(region, pos, shape, reach_px=1.2 * material_mx_distance_A / ps, tree=tree), region, ps)


def _paint(region: np.ndarray, pos: np.ndarray, shape: tuple[int, int], *, reach_px: float,
           tree: spatial.cKDTree | None = None) -> np.ndarray:
    """Pixel labels: the region of the nearest site (sites farther than ``reach_px``: lattice),
    computed on a coarse grid and enlarged (region boundaries need no sub-site precision)."""
    step = max(1, int(reach_px / 4))
    rows = np.arange(0, shape[0], step) + (step - 1) / 2
    cols = np.arange(0, shape[1], step) + (step - 1) / 2
    coarse = np.zeros((len(rows), len(cols)), np.uint8)
    if len(pos) and region.any():
        # only grid points within reach of a non-lattice site can be labelled: query those
        near = _near_grid(pos[region > 0], coarse.shape, step, reach_px)
        r, c = np.nonzero(near)
        tree = spatial.cKDTree(pos) if tree is None else tree  # ``tree``: of ``pos``, when built already
        d, idx = tree.query(np.stack([rows[r], cols[c]], axis=1))
        coarse[r, c] = np.where(d <= reach_px, region[idx], 0)
    if step == 1:
        return _median3_where_labelled(coarse)
    return np.repeat(np.repeat(coarse, step, axis=0), step, axis=1)[:shape[0], :shape[1]]


def _median3_where_labelled(labels: np.ndarray) -> np.ndarray:
    """``ndimage.median_filter(labels, size=3)`` computed on the bounding box of the labelled
    (non-zero) pixels only: outside it every 3 x 3 neighbourhood holds at most 3 labelled pixels,
    so its median is 0 as before (the box is filtered with a 2 px margin, so its pixels see their
    true neighbours, or the frame's reflected edge where the box reaches it)."""
    rows, cols = np.flatnonzero(labels.any(axis=1)), np.flatnonzero(labels.any(axis=0))
    if len(rows) == 0:
        return labels
    r0, r1 = max(rows[0] - 2, 0), min(rows[-1] + 3, labels.shape[0])
    c0, c1 = max(cols[0] - 2, 0), min(cols[-1] + 3, labels.shape[1])
    out = np.zeros_like(labels)
    out[r0:r1, c0:c1] = _median3_of_labels(labels[r0:r1, c0:c1])
    return out


def _median3_of_labels(labels: np.ndarray) -> np.ndarray:
    """``ndimage.median_filter(labels, size=3)`` (mode reflect) of a small-integer label image,
    by counting: the median is at least ``v`` where at least 5 of the 9 pixels are, so it is the
    sum over the distinct labels ``u_1 < u_2 < ...`` present of ``(u_i - u_{i-1}) [count(>= u_i) >= 5]``,
    one 3 x 3 box count per label present (a 1607 px frame with one or two region kinds: ~5-10 ms
    instead of the rank filter's ~28)."""
    padded = np.pad(labels, 1, mode="symmetric")  # numpy's symmetric is ndimage's reflect
    out = np.zeros(labels.shape, labels.dtype)
    below = 0
    for value in np.unique(labels[labels > 0]).tolist():
        at_least = (padded >= value).view(np.uint8)
        rows = at_least[:-2] + at_least[1:-1]
        rows += at_least[2:]
        count = rows[:, :-2] + rows[:, 1:-1]
        count += rows[:, 2:]
        out[count >= 5] += value - below  # where the median reaches this label (it reached the one below)
        below = value
    return out


def _near_grid(points: np.ndarray, shape: tuple[int, int], step: int, reach_px: float) -> np.ndarray:
    """Boolean (len(rows), len(cols)) of the coarse grid of :func:`_paint`: True at least at every
    grid point within ``reach_px`` of one of ``points`` (a square stencil around each)."""
    r = int(np.ceil(reach_px / step)) + 1
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    centre = np.rint((points - (step - 1) / 2) / step).astype(np.intp)
    rr = np.clip(centre[:, :1] + dy.ravel(), 0, shape[0] - 1)
    cc = np.clip(centre[:, 1:] + dx.ravel(), 0, shape[1] - 1)
    near = np.zeros(shape, bool)
    near[rr, cc] = True
    return near
