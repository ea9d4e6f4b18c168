"""Confident pseudo-labels of a user's frame from agreeing, independent detectors (``experiment=adapt``).

Nobody has the truth of a user's movie, but three unrelated readings of a frame exist: the bundled
U-Net's detections, the lattice-residual labels (:mod:`stem2d.lattice.residual`) and column
quantification (:func:`stem2d.lattice.columns.quantify_columns`, columns far from their
sublattice's median). Their candidates are merged into sites, and the bundled CAM classifier
reads a 64 x 64 window at each site. A site is

- **positive** where at least ``min_sources`` detectors agree, or one of the ``sufficient``
  detectors (by default column quantification: a column measurably off its sublattice) proposed
  it, and the classifier calls it a defect with probability >= ``p_confident``;
- **negative** where a single detector proposed it and the classifier calls it pristine with
  probability >= ``p_confident`` (the detector's false alarm, which adaptation should unlearn);
- **uncertain** otherwise: its disk is :data:`IGNORE` in the mask and carries no loss.

Everything farther than ``ignore_radius`` from every site is background. Pure numpy/scipy: the
detectors and the classifier come in as arrays and a callable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from stem2d import MASK_IGNORE

__all__ = ["IGNORE", "PseudoLabels", "merge_candidates", "pseudo_labels", "pseudo_mask"]

#: Mask value of pixels without a label (no loss, no metric), as ``ignore_index=255`` in segmentation.
IGNORE = MASK_IGNORE


@dataclass(frozen=True)
class PseudoLabels:
    """Sites of one frame (row, col in the frame's pixels) and how they were decided.

    Attributes
    ----------
    positive, negative, uncertain : ndarray, float64, (N, 2)
        Confident defects, confident false alarms, and the rest.
    votes : dict
        Number of candidates each detector proposed (before merging).
    """

    positive: np.ndarray
    negative: np.ndarray
    uncertain: np.ndarray
    votes: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Plain counts for logs and JSON."""
        return {"positive": len(self.positive), "negative": len(self.negative),
                "uncertain": len(self.uncertain), **{f"from_{k}": v for k, v in self.votes.items()}}


def merge_candidates(candidates: Mapping[str, np.ndarray], *, merge_dist_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Merge the points of several detectors into sites.

    Points closer than ``merge_dist_px`` (transitively) form one site at their mean position.

    Parameters
    ----------
    candidates : mapping of str to ndarray (N_k, 2)
        Each detector's points (row, col).
    merge_dist_px : float
        Linking distance in pixels.

    Returns
    -------
    sites : ndarray, float64, (S, 2)
    seen : ndarray, bool, (S, K)
        Which of the K detectors (in the order of ``candidates``) proposed each site.

    Examples
    --------
    >>> s, seen = merge_candidates({"a": np.array([[0., 0.], [9., 9.]]), "b": np.array([[0., 1.]])},
    ...                            merge_dist_px=2)
    >>> s.tolist(), seen.sum(axis=1).tolist()
    ([[0.0, 0.5], [9.0, 9.0]], [2, 1])
    """
    names = list(candidates)
    pts = [np.asarray(candidates[k], dtype=np.float64).reshape(-1, 2) for k in names]
    source = np.concatenate([np.full(len(p), i) for i, p in enumerate(pts)]) if pts else np.zeros(0, int)
    allp = np.concatenate(pts) if pts else np.zeros((0, 2))
    if len(allp) == 0:
        return np.zeros((0, 2)), np.zeros((0, len(names)), dtype=bool)
    pairs = cKDTree(allp).query_pairs(merge_dist_px, output_type="ndarray")
    adj = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(allp), len(allp)))
    n_sites, comp = connected_components(adj, directed=False)
    sites = np.stack([np.bincount(comp, weights=allp[:, k], minlength=n_sites) for k in (0, 1)], axis=1)
    sites /= np.bincount(comp, minlength=n_sites)[:, None]
    seen = np.zeros((n_sites, len(names)), dtype=bool)
    seen[comp, source] = True
    return sites, seen


def pseudo_labels(
    candidates: Mapping[str, np.ndarray],
    defect_probability: Callable[[np.ndarray], np.ndarray],
    *,
    merge_dist_px: float,
    min_sources: int = 2,
    sufficient: Sequence[str] = ("columns",),
    p_confident: float = 0.9,
) -> PseudoLabels:
    """Positive / negative / uncertain sites from detectors' candidates and a classifier.

    Parameters
    ----------
    candidates : mapping of str to ndarray (N_k, 2)
        Each detector's points (row, col) on the frame.
    defect_probability : callable
        ``(S, 2) sites -> (S,)`` probability that the window at each site holds a defect
        (1 - the classifier's pristine probability).
    merge_dist_px : float, keyword-only
        Candidates closer than this are one site.
    min_sources : int, keyword-only, default 2
        Detectors that must agree for a positive.
    sufficient : sequence of str, keyword-only, default ("columns",)
        Detectors whose proposal alone, with a confident classifier, makes a positive (on real
        frames the U-Net and the lattice residual rarely agree; an odd column that the classifier
        also calls a defect is two independent readings).
    p_confident : float, keyword-only, default 0.9
        Classifier confidence needed for a positive (defect) or a negative (pristine).
    """
    if not 0.5 <= p_confident <= 1:
        raise ValueError(f"p_confident={p_confident} must be in [0.5, 1]")
    if int(min_sources) < 1:
        raise ValueError(f"min_sources={min_sources} must be >= 1")
    sites, seen = merge_candidates(candidates, merge_dist_px=merge_dist_px)
    n_src = seen.sum(axis=1)
    alone = seen[:, [i for i, k in enumerate(candidates) if k in set(sufficient)]].any(axis=1)
    p = np.asarray(defect_probability(sites), dtype=np.float64).reshape(-1) if len(sites) else np.zeros(0)
    positive = ((n_src >= min_sources) | alone) & (p >= p_confident)
    negative = (n_src == 1) & ~alone & (p <= 1 - p_confident)
    uncertain = ~(positive | negative)
    votes = {k: len(np.asarray(v).reshape(-1, 2)) for k, v in candidates.items()}
    return PseudoLabels(sites[positive], sites[negative], sites[uncertain], votes)


def _disks(mask: np.ndarray, points: np.ndarray, radius_px: float, value: int, *, keep: int | None) -> None:
    r = int(np.ceil(radius_px))
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    h, w = mask.shape
    for pr, pc in np.asarray(points, dtype=float).reshape(-1, 2):
        rows, cols = np.rint(pr).astype(int) + dy, np.rint(pc).astype(int) + dx
        ok = ((rows - pr) ** 2 + (cols - pc) ** 2 <= radius_px**2) & (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
        rr, cc = rows[ok], cols[ok]
        if keep is not None:
            free = mask[rr, cc] != keep
            rr, cc = rr[free], cc[free]
        mask[rr, cc] = value


def pseudo_mask(shape: tuple[int, int], labels: PseudoLabels, *, radius_px: float, ignore_radius_px: float) -> np.ndarray:
    """uint8 training mask: 1 in a ``radius_px`` disk at every positive, :data:`IGNORE` in an
    ``ignore_radius_px`` disk at every uncertain site (never over a positive), 0 elsewhere
    (negatives are background: that is what they teach)."""
    mask = np.zeros(shape, dtype=np.uint8)
    _disks(mask, labels.positive, radius_px, 1, keep=None)
    _disks(mask, labels.uncertain, ignore_radius_px, IGNORE, keep=1)
    return mask
