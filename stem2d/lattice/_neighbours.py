"""Nearest sites of a sublattice by lattice index (:mod:`stem2d.lattice.columns`): the k nearest
sites of a site are found as fixed index offsets (shells of the ideal lattice) and checked against
the positions, a KD-tree answers only for the sites where that check fails.

The k nearest by index are the k nearest in space where the lattice coordinates are continuous
(no 2 pi jumps of the geometric phase, checked per frame by :func:`continuous`) and the k nearest
usable sites of the inner and next shells are within 35 % more than the ideal k-th distance, the
next one farther (checked per site; a site beyond the next shells would have to be compressed by
a quarter to come nearer). The sets then equal the KD-tree's (the medians over them are the same
numbers) at a fraction of the cost.
"""

from __future__ import annotations

import numpy as np
from scipy import spatial

from stem2d.lattice import _patches as P

#: Index offsets searched for the inner and next shells (|i|, |j| <= this).
_REACH = 5
#: The next shells checked reach this multiple of the k-th ideal distance.
_NEXT_SHELLS = 1.7
#: The k nearest may be at most this multiple of the k-th ideal distance away (sites beyond the
#: next shells would have to be compressed by a quarter to come nearer).
_MAX_STRETCH = 1.35
#: Padding of the index tables (lookups near their edges stay inside).
_PAD = _REACH + 2


def continuous(frac: np.ndarray, basis: np.ndarray) -> bool:
    """Whether the fractional coordinates ``frac`` (2, H, W) change nowhere by a jump (a 2 pi
    jump of the unwrapped phase, near phase vortices on holes): sampled every ``s`` px (the
    block step of the lattice fit), each step differs from the global lattice's by < 0.25."""
    s = max(1, int(1.0 / (3.0 * np.hypot(*basis[0]))))
    for k in (0, 1):
        f = np.ascontiguousarray(frac[k, ::s, ::s])  # one strided read of the frame, not two
        if f.shape[0] > 1 and np.abs(np.diff(f, axis=0) - basis[k, 0] * s).max() >= 0.25:
            return False
        if f.shape[1] > 1 and np.abs(np.diff(f, axis=1) - basis[k, 1] * s).max() >= 0.25:
            return False
    return True


class IndexNeighbours:
    """``nearest(...)``: the k nearest sites of one sublattice around sites of any sublattice.

    Parameters
    ----------
    pos : ndarray, (N, 2)
        Site positions (row, col), px.
    ij : ndarray, int, (N, 2)
        Their lattice indices (a site of sublattice s sits at ``frac = ij + offsets[s]``).
    sub : ndarray, int, (N,)
        Sublattice of each site.
    offsets : ndarray, (S, 2)
        Fractional offset of each sublattice.
    inv : ndarray, (2, 2)
        ``d(row, col) = inv @ d(frac)`` of the global lattice.
    by_index : bool
        False: every query goes to the KD-tree (lattice coordinates with jumps).
    """

    def __init__(self, pos: np.ndarray, ij: np.ndarray, sub: np.ndarray, offsets: np.ndarray,
                 inv: np.ndarray, *, by_index: bool):
        self.pos, self.ij, self.sub = pos, np.asarray(ij, dtype=np.int64), sub
        self.offsets, self.inv, self.by_index = offsets, inv, bool(by_index)
        self._tables: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._trees: dict[tuple[bytes, bool], spatial.cKDTree] = {}
        self._rows, self._cols = np.ascontiguousarray(pos[:, 0]), np.ascontiguousarray(pos[:, 1])
        self._cols_ext = np.append(self._cols, 0.0)  # index -1 (no site) reads the appended entry

    def nearest(self, ref_sub: int, query: np.ndarray, k: int, *, usable: np.ndarray | None = None,
                self_match: bool = False) -> np.ndarray:
        """Indices into the sites of the ``k`` nearest sites of sublattice ``ref_sub`` among those
        where ``usable`` (bool over the sites; default all) around each site of ``query``
        (indices into the sites), (len(query), k) (fewer columns when there are fewer sites);
        ``self_match``: the query sites are of ``ref_sub`` and a site is not its own neighbour.
        The sets of a KD-tree query (the ``k`` nearest; with ``self_match`` one more, the site itself
        dropped), in another order within a row."""
        refs = np.flatnonzero(self.sub == ref_sub)
        usable = np.ones(len(self.pos), bool) if usable is None else usable
        use = refs[usable[refs]]
        if len(use) <= 4 * k or not self.by_index:
            return use[self._kd_nearest(use, query, k, self_match)]
        fast, out = self._by_index(ref_sub, query, k, usable, self_match)
        slow = np.flatnonzero(~fast)
        if len(slow):
            out[slow] = use[self._kd_nearest(use, query[slow], k, self_match)]
        return out

    def _kd_nearest(self, use: np.ndarray, query: np.ndarray, k: int, self_match: bool) -> np.ndarray:
        """The ``k`` nearest of the sites ``use`` to each of the sites ``query`` (with
        ``self_match`` one more is asked for and a site at distance 0, the query itself, dropped,
        else the farthest), as their balanced KD-tree answers, asked of a sliding-midpoint tree
        (built ~2x faster) first.

        The trees agree wherever distances decide: only where the k-th and the next tie (or,
        with ``self_match``, the last two, of which either may be dropped) does the
        answer depend on a tree's order of equal distances; those rows are asked again of the
        balanced tree.
        """
        pos = self.pos[query]
        k_eff = min(k + int(self_match), len(use))
        dist, idx = self._tree(use, balanced=False).query(pos, k=min(k_eff + 1, len(use)))
        dist, idx = dist.reshape(len(pos), -1), idx.reshape(len(pos), -1)
        tie = np.zeros(len(pos), bool)
        for a in range(max(k_eff - 1 - int(self_match), 0), min(k_eff, dist.shape[1] - 1)):
            tie |= dist[:, a] == dist[:, a + 1]
        dist, idx = dist[:, :k_eff].copy(), idx[:, :k_eff].copy()
        if tie.any():
            again, = np.nonzero(tie)
            d_again, i_again = self._tree(use, balanced=True).query(pos[again], k=k_eff)
            dist[again], idx[again] = d_again.reshape(len(again), -1), i_again.reshape(len(again), -1)
        if self_match and idx.shape[1] > 1:
            idx = np.where(dist[:, :1] < 1e-6, idx[:, 1:], idx[:, :-1])
        return idx

    def _tree(self, use: np.ndarray, *, balanced: bool) -> spatial.cKDTree:
        """KD-tree of the sites ``use`` (kept: several queries share their references)."""
        key = (use.tobytes(), balanced)
        if key not in self._trees:
            self._trees[key] = spatial.cKDTree(self.pos[use], balanced_tree=balanced)
        return self._trees[key]

    def _by_index(self, ref_sub: int, query: np.ndarray, k: int, usable: np.ndarray,
                  self_match: bool) -> tuple[np.ndarray, np.ndarray]:
        """(rows answered by index (len(query),) bool, their k nearest (len(query), k))."""
        table, lo = self._table(ref_sub)
        q_sub = self.sub[query]
        # the rows of the usable sites, inf for the others and for index -1 (no site, the
        # appended entry): their squared distances come out inf, no mask needed
        rows_usable = np.append(np.where(usable, self._rows, np.inf), np.inf)
        fast = np.zeros(len(query), bool)
        rows = np.zeros((len(query), k), dtype=np.intp)
        for s in np.unique(q_sub):
            stencil = _stencil(self.inv, self.offsets[ref_sub] - self.offsets[s], k,
                               skip_self=self_match and s == ref_sub)
            if stencil is None:
                continue
            offsets, ideal = stencil
            of_s = np.flatnonzero(q_sub == s)
            for chunk in P.chunks(len(of_s)):  # (queries x stencil) arrays of bounded size
                part = of_s[chunk]
                fast[part], rows[part] = self._check(query[part], offsets, k, ideal, rows_usable, table, lo)
        return fast, rows

    def _check(self, query: np.ndarray, offsets: np.ndarray, k: int, ideal: float, rows_usable: np.ndarray,
               table: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(whether the first k of the stencil ``offsets`` are each query's k nearest, them);
        ``rows_usable``: the sites' rows, inf where not usable, and an inf appended."""
        width = table.shape[1]
        # flat table index of every stencil site of every query (a query whose stencil would
        # leave the table looks at the padding: no sites, not answered); stencil-major (M, N)
        # arrays, so the reductions over the stencil are element-wise across the queries
        at = self.ij[query] - lo + _PAD
        at_r, at_c = at[:, 0], at[:, 1]
        inside = (at_r >= _REACH) & (at_c >= _REACH) & (at_r < table.shape[0] - _REACH) & (at_c < width - _REACH)
        centre = np.where(inside, at_r * width + at_c, _REACH * width + _REACH)
        found = table.ravel()[(offsets[:, 0] * width + offsets[:, 1])[:, None] + centre]
        # squared distances, inf to sites that are not usable (or none: -1 reads the appended inf)
        d2 = np.take(rows_usable, found)
        d2 -= np.take(self._rows, query)
        dc = np.take(self._cols_ext, found)
        dc -= np.take(self._cols, query)
        d2 *= d2
        dc *= dc
        d2 += dc
        limit = (_MAX_STRETCH * ideal) ** 2
        # the inner shells, all usable, nearer than every usable site of the next shells
        far = d2[:k].max(axis=0)
        ok = (far <= limit) & (d2[k:].min(axis=0, initial=np.inf) > far)
        rows = found[:k].T.copy()
        rest = np.flatnonzero(~ok)
        if len(rest) and d2.shape[0] > k:
            # else (a vacancy, the frame edge): the k nearest usable of the stencil, if they are
            # within the limit and the next is farther
            d2r = np.ascontiguousarray(d2[:, rest].T)
            order = np.argpartition(d2r, k, axis=1)
            kth = np.take_along_axis(d2r, order[:, :k], axis=1).max(axis=1)
            sure = (kth <= limit) & (np.take_along_axis(d2r, order[:, k:k + 1], axis=1)[:, 0] > kth)
            ok[rest[sure]] = True
            rows[rest[sure]] = np.take_along_axis(found[:, rest[sure]].T, order[sure, :k], axis=1)
        return ok, rows

    def _table(self, ref_sub: int) -> tuple[np.ndarray, np.ndarray]:
        """(site index at each lattice index of ``ref_sub`` minus ``lo`` plus the padding, -1
        where there is none; ``lo``)."""
        if ref_sub not in self._tables:
            refs = np.flatnonzero(self.sub == ref_sub)
            lo = self.ij[refs].min(axis=0)
            table = np.full(tuple(self.ij[refs].max(axis=0) - lo + 1 + 2 * _PAD), -1, dtype=np.intp)
            table[tuple((self.ij[refs] - lo + _PAD).T)] = refs
            self._tables[ref_sub] = (table, lo)
        return self._tables[ref_sub]


def _stencil(inv: np.ndarray, shift: np.ndarray, k: int, *, skip_self: bool):
    """(index offsets (k + m, 2): the k nearest sites at ``offset + shift`` (fractional units) from
    a site, then those of the next shells; the k-th ideal distance, px), or None when the k-th and
    the next are equally far (the set would be ambiguous)."""
    r = np.arange(-_REACH, _REACH + 1)
    m = np.stack(np.meshgrid(r, r, indexing="ij"), axis=-1).reshape(-1, 2)
    d = np.hypot(*(inv @ (m + shift).T))
    if skip_self:
        keep = (m != 0).any(axis=1)
        m, d = m[keep], d[keep]
    order = np.argsort(d, kind="stable")
    m, d = m[order], d[order]
    if len(d) <= k or not d[k] > d[k - 1] * (1 + 1e-9):
        return None
    return m[d <= max(_NEXT_SHELLS * d[k - 1], d[k - 1])], float(d[k - 1])
