"""Which confusions of the family classifier are physics, and which are learnable.

A site class is told apart by its site (metal, chalcogen, hollow) and by how bright its column
is next to the full host column of that site. Under the training physics
(``conf/data/mx2.yaml`` ``physics:``; :mod:`stem2d.sim.physics`) that brightness ratio is not one
number but a range: the contrast exponent n, the per-element factors f_Z, the lighter-metal band
and the channelling factor c of the second atom of a column all move it (and the detector gamma
bends it). :func:`column_ratios` samples the ratio of every site class of a material over drawn
physics, with :meth:`~stem2d.sim.physics.ImagePhysics.column_weights` (the renderer's own column
strengths); :func:`overlap` says, for a confused pair on the same site, how much of the true
class's range the called class can also produce. Those tiles cannot be told apart by the
column's brightness alone, whatever the training: the confusion is in the physics. A pair on
different sites is told apart by the sublattice, unless the sublattices themselves look alike:
:func:`sublattice_contrast` (chalcogen / metal column) of one material can be the inverse of
another's (MoSe2's Se2 columns outshine Mo as WSe2's W outshines Se2), and the classifier is
not told the material (:func:`sublattices_alike`). A pair with separate ranges on told-apart
sites is an error the model can learn away.

The ratio is the column's scattering strength (isolated-column peak) relative to the full host
column; in a tile, probe tails of the neighbours raise small ratios (docs/physics.md: one S of
WS2 missing, 0.40-0.625 in strength, peaks 0.43-0.8). The neighbours' metal / chalcogen ratio
also constrains n and c within a tile, so overlapping ranges are necessary, not sufficient, for
an unreachable target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stem2d.classes import SITE_CLASS_KINDS, ClassSet, parse_kind
from stem2d.materials import ATOMIC_NUMBER, Material
from stem2d.sim.physics import PhysicsRanges, draw_physics

__all__ = ["SiteRatios", "column_ratios", "confused_pairs", "overlap", "sublattice_contrast", "sublattices_alike"]

#: Percentiles that bound a ratio range (robust to the rare extreme draw).
RANGE_PERCENTILES = (1.0, 99.0)


@dataclass(frozen=True)
class SiteRatios:
    """Ratio samples of one site class: its ``site`` (``M``, ``X``, ``H``; ``any`` for pristine) and
    the column strength relative to the full host column of that site, over drawn physics."""

    site: str
    values: np.ndarray

    @property
    def range(self) -> tuple[float, float]:
        lo, hi = np.percentile(self.values, RANGE_PERCENTILES)
        return float(lo), float(hi)


def _host_columns(material: Material) -> list[list[int]]:
    """The chalcogen columns (beam order) a material holds: X2, or every S/Se order of an alloy
    or Janus layer."""
    x = ATOMIC_NUMBER[material.chalcogen]
    if not material.mixed:
        return [[x, x]]
    y = ATOMIC_NUMBER[material.second_chalcogen]
    return [[x, y], [y, x]] if material.janus else [[x, x], [x, y], [y, x], [y, y]]


def _columns(name: str, kinds: Sequence[str], material: Material) -> tuple[str, list, list]:
    """(site, defect columns, their host columns) of a site class; atoms in beam order."""
    metal = [material.z_metal, 0]
    if not kinds:
        return "any", [metal], [metal]
    site, cols, hosts = None, [], []
    for kind_name in kinds:
        kind = parse_kind(kind_name, material)
        site = kind.site
        if kind.site in ("M", "H"):  # a metal site, or an adatom against a host metal column
            cols.append([kind.occupant_z, 0])
            hosts.append(metal)
        else:
            for host in _host_columns(material):
                if kind.whole_column:
                    cols.append([kind.occupant_z, 0])
                    hosts.append(host)
                else:
                    for position in (0, 1):  # the upper or the lower atom
                        col = list(host)
                        col[position] = kind.occupant_z
                        cols.append(col)
                        hosts.append(host)
    return str(site), cols, hosts


def column_ratios(material: Material, *, ranges: PhysicsRanges, n_draws: int = 1000,
                  rng=None) -> dict[str, SiteRatios]:
    """Column-strength ratios of every site class of ``material`` over ``n_draws`` physics draws.

    Parameters
    ----------
    material : Material
    ranges : PhysicsRanges, keyword-only
        The training physics (contrast exponent, species factors, lighter-metal band,
        channelling, detector gamma are used).
    n_draws : int, keyword-only, default 1000
    rng : int, Generator or None, keyword-only

    Returns
    -------
    dict
        Site class name -> :class:`SiteRatios`; classes the material lacks are left out. Values
        hold ``n_draws`` x (defect columns of the class) ratios, after the detector gamma.
    """
    rng = np.random.default_rng(rng)
    present = ClassSet.from_mapping(SITE_CLASS_KINDS).kinds_in(material)
    specs = {name: _columns(name, kinds, material) for name, kinds in present.items()
             if kinds or not SITE_CLASS_KINDS[name]}
    cols = np.array([c for _, cs, _ in specs.values() for c in cs], dtype=np.int64)
    hosts = np.array([h for _, _, hs in specs.values() for h in hs], dtype=np.int64)
    out = np.empty((n_draws, len(cols)))
    for i in range(n_draws):
        physics = draw_physics(ranges, host_metal=material.metal, rng=rng)
        ratio = physics.column_weights(cols, material.z_metal) / physics.column_weights(hosts, material.z_metal)
        out[i] = np.power(ratio, physics.detector_gamma)
    result, start = {}, 0
    for name, (site, cs, _) in specs.items():
        result[name] = SiteRatios(site, out[:, start:start + len(cs)].ravel())
        start += len(cs)
    return result


def sublattice_contrast(material: Material, *, ranges: PhysicsRanges, n_draws: int = 1000,
                        rng=None) -> np.ndarray:
    """Full chalcogen column / host metal column strength (after the detector gamma) over
    ``n_draws`` physics draws (alloys: every S/Se order), shape (n_draws * columns,).

    Below 1 the metal sublattice is the brighter one (WS2 ~0.2); above 1 (MoSe2) the chalcogen
    one. The classifier is not told the material, so where one material's value is another's
    inverse, a metal site of the one looks like a chalcogen site of the other.
    """
    rng = np.random.default_rng(rng)
    hosts = np.array(_host_columns(material), dtype=np.int64)
    metal = np.array([[material.z_metal, 0]], dtype=np.int64)
    out = np.empty((n_draws, len(hosts)))
    for i in range(n_draws):
        physics = draw_physics(ranges, host_metal=material.metal, rng=rng)
        ratio = physics.column_weights(hosts, material.z_metal) / physics.column_weights(metal, material.z_metal)
        out[i] = np.power(ratio, physics.detector_gamma)
    return out.ravel()


def sublattices_alike(contrast: np.ndarray, family: Sequence[np.ndarray]) -> float:
    """Fraction of one material's chalcogen/metal contrasts that fall inside the metal/chalcogen
    range (1-99 %) of some material of ``family``: sites whose sublattice the tile cannot name."""
    inside = np.zeros(len(contrast), bool)
    for other in family:
        lo, hi = np.percentile(1.0 / other, RANGE_PERCENTILES)
        inside |= (contrast >= lo) & (contrast <= hi)
    return float(inside.mean())


def overlap(true: SiteRatios, called: SiteRatios, *, across_sites: bool = False) -> float | None:
    """Fraction of the true class's ratios inside the called class's range, 0 when the ranges are
    apart; None when the two sit on different sites (told apart by position) unless
    ``across_sites`` (each ratio is then taken against its own site's full column)."""
    sites = {true.site, called.site} - {"any"}
    if len(sites) > 1 and not across_sites:
        return None
    lo, hi = called.range
    return float(((true.values >= lo) & (true.values <= hi)).mean())


def confused_pairs(pred: np.ndarray, labels: np.ndarray, *, top: int) -> list[tuple[int, int, int, float]]:
    """The ``top`` most frequent (true, called) confusions: ``(true, called, n, n / tiles of true)``."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    wrong = pred != labels
    pairs, counts = np.unique(np.stack([labels[wrong], pred[wrong]], axis=1), axis=0, return_counts=True) \
        if wrong.any() else (np.zeros((0, 2), np.int64), np.zeros(0, np.int64))
    order = np.argsort(-counts, kind="stable")[:top]
    return [(int(pairs[k, 0]), int(pairs[k, 1]), int(counts[k]), float(counts[k] / (labels == pairs[k, 0]).sum()))
            for k in order]
