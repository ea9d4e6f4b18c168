"""What changes between the frames of a movie: specimen drift and beam-driven point defects.

Drift (:func:`drift_path`): a constant stage velocity plus a random walk, turning round at a
bound on the total drift.

Defects (:func:`simulate_defects`) follow a discrete-time Markov model; one step is one frame,
and between two frames it applies, in order:

1. **Dopant switching**: each dopant on a metal site (``Mo_W``) flips from configuration A
   (substitutional, on the W site) to B (displaced from the site towards one of its three
   hollow sites, chosen at random) with probability ``mo_switch_prob_ab``, back with
   ``mo_switch_prob_ba``. The stationary fraction in B is ``p_ab / (p_ab + p_ba)``.
2. **S-vacancy hops**: a single chalcogen vacancy ``V_S`` with ``n`` vacancy neighbours (``V_S``
   or ``V_S2`` on the six X2 columns at distance a) hops with probability
   ``s_vacancy_hop_prob * s_vacancy_sticky_factor ** n`` to one of its neighbouring X2 columns
   that is pristine or holds a ``V_S`` (uniformly; edge columns use the neighbours they have).
   Hopping onto a ``V_S`` merges the two into a ``V_S2``: the resident keeps its track, the
   mover's track ends. Sticky neighbours make vacancies aggregate into clusters and short
   lines along the zigzag directions over tens of frames. ``V_S2``, ``V_W`` and antisites do
   not move.
3. **Creation** (Poisson numbers per nm^2 of specimen per frame, at uniformly drawn columns):
   sputtering of one chalcogen (``V_S`` on a pristine X2 column, ``V_S2`` on a ``V_S``), metal
   vacancies (``V_W`` on a pristine W column), metal antisites (``W_S2`` or ``W_S``, even odds,
   on a pristine X2 column). A draw that hits a column where the event cannot happen is lost.

The state is one defect (kind, track, configuration) per column at most; frame 0 holds the
initial defects, drawn at the initial densities on distinct columns.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from stem2d.materials import Material
from stem2d.sim.lattice import Columns

_PRISTINE = -1
#: Kind codes: index into :func:`kind_names`.
MO, VS, VS2, VW, WS2, WS = range(6)


def kind_names(material: Material, dopant: str) -> tuple[str, ...]:
    """Defect-kind names in code order: dopant on M, V_X, V_X2, V_M, M_X2, M_X."""
    m, x = material.metal, material.chalcogen
    return (f"{dopant}_{m}", f"V_{x}", f"V_{x}2", f"V_{m}", f"{m}_{x}2", f"{m}_{x}")


@dataclass(frozen=True)
class DefectRateFields:
    """The fields of :class:`DefectRates`, with their defaults (documented there).

    :class:`~stem2d.sim.movie_config.MovieConfig` inherits them too, so the two always carry
    the same names and defaults; the checks and derived values live in :class:`DefectRates`.
    """

    mo_density_per_nm2: float = 0.11
    s_vacancy_density_per_nm2: float = 0.1
    w_vacancy_density_per_nm2: float = 0.01
    w_antisite_density_per_nm2: float = 0.01
    s_vacancy_creation_per_nm2_frame: float = 0.005
    w_vacancy_creation_per_nm2_frame: float = 5e-4
    w_antisite_creation_per_nm2_frame: float = 5e-4
    s_vacancy_hop_prob: float = 0.1
    s_vacancy_sticky_factor: float = 0.3
    mo_switch_prob_ab: float = 0.1
    mo_switch_prob_ba: float = 0.2


@dataclass(frozen=True)
class DefectRates(DefectRateFields):
    """Initial densities and per-frame rates of the defect dynamics (see the module docstring).

    Attributes
    ----------
    mo_density_per_nm2 : float, default 0.11
        Initial dopants on metal sites per nm^2 (WS2 has 11.4 W sites per nm^2, so ~1 %).
    s_vacancy_density_per_nm2 : float, default 0.1
        Initial single chalcogen vacancies ``V_S`` per nm^2.
    w_vacancy_density_per_nm2, w_antisite_density_per_nm2 : float, default 0.01
        Initial ``V_W`` and metal antisites (``W_S2``/``W_S``, even odds) per nm^2.
    s_vacancy_creation_per_nm2_frame : float, default 0.005
        New chalcogen vacancies (sputtering events) per nm^2 per frame.
    w_vacancy_creation_per_nm2_frame, w_antisite_creation_per_nm2_frame : float, default 5e-4
        New ``V_W`` and antisites per nm^2 per frame.
    s_vacancy_hop_prob : float, default 0.1
        Probability per frame that an isolated ``V_S`` hops to a neighbouring X2 column.
    s_vacancy_sticky_factor : float, default 0.3
        Factor in [0, 1] applied to the hop probability per vacancy neighbour.
    mo_switch_prob_ab, mo_switch_prob_ba : float, default 0.1, 0.2
        Per-frame probabilities that a dopant switches A -> B and B -> A.
    """

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value):
                raise ValueError(f"{f.name} must be a finite number, got {value!r}")
            if value < 0:
                raise ValueError(f"{f.name} must be >= 0, got {value!r}")
            if (f.name.endswith("_prob") or "_prob_" in f.name or f.name.endswith("_factor")) \
                    and value > 1:
                raise ValueError(f"{f.name} is a probability and must be in [0, 1], got {value!r}")

    @property
    def mo_b_fraction(self) -> float:
        """Stationary fraction of dopants in configuration B (0 when neither switches)."""
        total = self.mo_switch_prob_ab + self.mo_switch_prob_ba
        return 0.0 if total == 0 else self.mo_switch_prob_ab / total


def drift_path(
    n_frames: int,
    *,
    speed_px_per_frame: float,
    walk_px_per_frame: float,
    max_drift_px: float,
    rng=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Specimen drift of every frame relative to frame 0.

    Parameters
    ----------
    n_frames : int
        Number of frames T.
    speed_px_per_frame : float
        Constant drift speed (px per frame) in a random direction.
    walk_px_per_frame : float
        RMS per-axis random-walk step added every frame (px).
    max_drift_px : float
        Bound on the total drift |d|: when a step would cross it the constant velocity
        reverses (a stage relaxing back), and the position is clipped onto the bound.
    rng : int, Generator or None

    Returns
    -------
    drift : ndarray, float64, (T, 2), (row, col) px, ``drift[0] == 0``.
    velocity : ndarray, float64, (2,), the constant velocity at the end (px per frame).
    """
    rng = np.random.default_rng(rng)
    angle = rng.uniform(0.0, 2 * np.pi)
    velocity = speed_px_per_frame * np.array([np.sin(angle), np.cos(angle)])
    drift = np.zeros((int(n_frames), 2))
    for k in range(1, int(n_frames)):
        noise = walk_px_per_frame * rng.standard_normal(2)
        nxt = drift[k - 1] + velocity + noise
        if np.hypot(*nxt) > max_drift_px:
            velocity = -velocity
            nxt = drift[k - 1] + velocity + noise
            norm = np.hypot(*nxt)
            if norm > max_drift_px:
                nxt *= max_drift_px / norm
        drift[k] = nxt
    return drift, velocity


def chalcogen_neighbours(columns: Columns, a_A: float) -> np.ndarray:
    """For every column, the indices of the X2 columns at distance ``a_A`` from it if it is one.

    Returns
    -------
    ndarray, int64, shape (N, 6): column indices, padded with -1 (metal columns: all -1).
    """
    x_idx = np.flatnonzero(columns.site == "X")
    tree = cKDTree(columns.pos_A[x_idx])
    dist, nb = tree.query(columns.pos_A[x_idx], k=7, distance_upper_bound=1.05 * a_A)
    ok = np.isfinite(dist) & (dist > 0.5 * a_A)
    out = np.full((len(columns), 6), -1, dtype=np.int64)
    for row, (keep, cand) in enumerate(zip(ok, nb)):
        found = x_idx[cand[keep]]
        out[x_idx[row], : len(found)] = found
    return out


class _State:
    """Per-column defect state (kind code, track id, configuration, hollow direction)."""

    def __init__(self, n: int):
        self.kind = np.full(n, _PRISTINE, dtype=np.int64)
        self.track = np.full(n, -1, dtype=np.int64)
        self.config = np.zeros(n, dtype=np.int64)
        self.direction = np.zeros(n, dtype=np.int64)
        self.next_track = 0

    def add(self, col: int, kind: int, *, config: int = 0, direction: int = 0) -> None:
        self.kind[col], self.track[col] = kind, self.next_track
        self.config[col], self.direction[col] = config, direction
        self.next_track += 1

    def clear(self, col: int) -> None:
        self.kind[col], self.track[col], self.config[col], self.direction[col] = _PRISTINE, -1, 0, 0

    def snapshot(self, frame: int) -> dict[str, np.ndarray]:
        occ = np.flatnonzero(self.kind != _PRISTINE)
        return {"frame": np.full(len(occ), frame, dtype=np.int64), "track": self.track[occ],
                "column": occ, "code": self.kind[occ], "config_code": self.config[occ],
                "direction": self.direction[occ]}


def _place_initial(state: _State, columns: Columns, rates: DefectRates, area_nm2: float,
                   rng: np.random.Generator) -> None:
    metal = np.flatnonzero(columns.site == "M")
    chalc = np.flatnonzero(columns.site == "X")

    def draw(sites: np.ndarray, density: float) -> np.ndarray:
        free = sites[state.kind[sites] == _PRISTINE]
        n = min(int(rng.poisson(density * area_nm2)), len(free))
        return rng.choice(free, size=n, replace=False) if n else free[:0]

    p_b = rates.mo_b_fraction
    for col in draw(metal, rates.mo_density_per_nm2):
        state.add(col, MO, config=int(rng.uniform() < p_b), direction=int(rng.integers(3)))
    for col in draw(metal, rates.w_vacancy_density_per_nm2):
        state.add(col, VW)
    for col in draw(chalc, rates.s_vacancy_density_per_nm2):
        state.add(col, VS)
    for col in draw(chalc, rates.w_antisite_density_per_nm2):
        state.add(col, WS2 if rng.uniform() < 0.5 else WS)


def _switch_dopants(state: _State, rates: DefectRates, rng: np.random.Generator) -> None:
    mo = np.flatnonzero(state.kind == MO)
    u = rng.uniform(size=len(mo))
    new_dir = rng.integers(3, size=len(mo))
    in_b = state.config[mo] == 1
    to_b = ~in_b & (u < rates.mo_switch_prob_ab)
    to_a = in_b & (u < rates.mo_switch_prob_ba)
    state.config[mo[to_b]] = 1
    state.direction[mo[to_b]] = new_dir[to_b]
    state.config[mo[to_a]] = 0
    state.direction[mo[to_a]] = 0


def _hop_vacancies(state: _State, neighbours: np.ndarray, rates: DefectRates,
                   rng: np.random.Generator) -> None:
    vs = np.flatnonzero(state.kind == VS)
    if len(vs) == 0 or rates.s_vacancy_hop_prob == 0:
        return
    nb = neighbours[vs]
    nb_kind = np.where(nb >= 0, state.kind[np.clip(nb, 0, None)], _PRISTINE)
    n_vac = ((nb_kind == VS) | (nb_kind == VS2)).sum(axis=1)
    p_hop = rates.s_vacancy_hop_prob * rates.s_vacancy_sticky_factor ** n_vac
    movers = vs[rng.uniform(size=len(vs)) < p_hop]
    for src in rng.permutation(movers):
        if state.kind[src] != VS:  # another vacancy merged into it this frame
            continue
        cand = neighbours[src][neighbours[src] >= 0]
        cand = cand[(state.kind[cand] == _PRISTINE) | (state.kind[cand] == VS)]
        if len(cand) == 0:
            continue
        dst = int(cand[rng.integers(len(cand))])
        if state.kind[dst] == VS:  # merge: the resident keeps its track
            state.kind[dst] = VS2
        else:
            state.kind[dst], state.track[dst] = VS, state.track[src]
        state.clear(src)


def _create(state: _State, columns: Columns, rates: DefectRates, area_nm2: float,
            rng: np.random.Generator) -> None:
    metal = np.flatnonzero(columns.site == "M")
    chalc = np.flatnonzero(columns.site == "X")
    for col in rng.choice(chalc, size=rng.poisson(rates.s_vacancy_creation_per_nm2_frame * area_nm2)):
        if state.kind[col] == _PRISTINE:
            state.add(col, VS)
        elif state.kind[col] == VS:
            state.kind[col] = VS2
    for col in rng.choice(metal, size=rng.poisson(rates.w_vacancy_creation_per_nm2_frame * area_nm2)):
        if state.kind[col] == _PRISTINE:
            state.add(col, VW)
    for col in rng.choice(chalc, size=rng.poisson(rates.w_antisite_creation_per_nm2_frame * area_nm2)):
        if state.kind[col] == _PRISTINE:
            state.add(col, WS2 if rng.uniform() < 0.5 else WS)


def simulate_defects(
    columns: Columns,
    *,
    material: Material,
    rates: DefectRates,
    n_frames: int,
    area_nm2: float,
    dopant: str = "Mo",
    rng=None,
) -> pd.DataFrame:
    """Run the defect dynamics on a fixed specimen lattice for ``n_frames`` frames.

    Parameters
    ----------
    columns : Columns
        The pristine specimen lattice (positions in specimen angstrom).
    material : Material
        Host monolayer (lattice constant and element names of the kinds).
    rates : DefectRates
        Densities and per-frame probabilities.
    n_frames : int
        Number of frames (states) to produce, >= 1.
    area_nm2 : float
        Specimen area covered by ``columns`` in nm^2 (scales densities to numbers).
    dopant : str, default "Mo"
        Element of the metal-site dopant (names the kind, e.g. ``Mo_W``).
    rng : int, Generator or None

    Returns
    -------
    DataFrame, one row per defect per frame: ``frame`` (int64), ``track`` (int64), ``column``
    (int64, index into ``columns``), ``kind`` (str), ``config`` (str: ``"A"``/``"B"`` for the
    dopant, ``""`` otherwise), ``direction`` (int64, hollow-site index 0-2 of a B dopant),
    ``row_A``, ``col_A`` (float64, the column position in specimen angstrom).
    """
    if int(n_frames) < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if not area_nm2 > 0:
        raise ValueError(f"area_nm2 must be > 0, got {area_nm2}")
    rng = np.random.default_rng(rng)
    neighbours = chalcogen_neighbours(columns, material.a_A)
    state = _State(len(columns))
    _place_initial(state, columns, rates, area_nm2, rng)
    snaps = [state.snapshot(0)]
    for frame in range(1, int(n_frames)):
        _switch_dopants(state, rates, rng)
        _hop_vacancies(state, neighbours, rates, rng)
        _create(state, columns, rates, area_nm2, rng)
        snaps.append(state.snapshot(frame))
    table = {key: np.concatenate([s[key] for s in snaps]) for key in snaps[0]}
    names = np.array(kind_names(material, dopant), dtype=object)
    is_dopant = table["code"] == MO
    return pd.DataFrame({
        "frame": table["frame"], "track": table["track"], "column": table["column"],
        "kind": names[table["code"]].astype(str),
        "config": np.where(is_dopant, np.where(table["config_code"] == 1, "B", "A"), ""),
        "direction": table["direction"],
        "row_A": columns.pos_A[table["column"], 0], "col_A": columns.pos_A[table["column"], 1],
    })
