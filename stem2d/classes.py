"""Defect kinds (what sits on which lattice site) and class sets (which kinds a class groups).

Kinds use Kroger-Vink-like names ``<occupant>_<host site>``:

- occupant: an element symbol (``Mo``), ``V`` for a vacancy, or ``Z<n>`` for the element of
  atomic number n (``Z23`` is vanadium, since ``V`` means vacancy);
- host site: the metal symbol (``W``: the metal column), the chalcogen symbol (``S``: one of the
  two atoms of an X2 column) or the chalcogen symbol with a 2 (``S2``: the whole X2 column).

So ``Mo_W`` is Mo on a W site, ``V_S`` one S missing from an S2 column, ``V_S2`` both missing,
``W_S2`` a W atom replacing an S2 column, ``W_S`` a W atom replacing one S of a column.

Kinds may also be written for any host (the site-based vocabulary, ``conf/classes/sites.yaml``):
host sites ``M`` (metal column), ``X`` / ``X2`` (one / both chalcogens of a column), ``H`` (the
empty hexagon centre: an adatom off the lattice); occupants ``M`` (the host metal), ``Mlight`` /
``Mheavy`` (the lighter / heavier metal substituting the host: Mo in W hosts, V in Mo hosts; W in
Mo hosts), ``Xheavy`` / ``Xlight`` (Se on S, Te on Se; S on Se). A generic kind that does not
exist in a material (``Mheavy_M`` in WS2, ``Xlight_X`` in WS2 or in an S/Se alloy) raises.
Every kind belongs to one *site class* (:func:`site_class_of`), so old class sets such as the
five default WS2 names map onto the site vocabulary (:func:`site_map`, :func:`project_probabilities`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from stem2d.materials import ATOMIC_NUMBER, Material

#: The default class set (a contract: these names appear in outputs and checkpoints).
DEFAULT_CLASS_KINDS: dict[str, tuple[str, ...]] = {
    "pristine": (),
    "mo_dopant": ("Mo_W",),
    "s_vacancy": ("V_S", "V_S2"),
    "w_vacancy": ("V_W",),
    "w_dopant": ("W_S2", "W_S"),
}
DEFAULT_CLASSES: tuple[str, ...] = tuple(DEFAULT_CLASS_KINDS)

#: The site-based vocabulary: classes defined by site and contrast, for every MX2 host
#: (``conf/classes/sites.yaml`` holds the same mapping).
SITE_CLASS_KINDS: dict[str, tuple[str, ...]] = {
    "pristine": (),
    "metal_vacancy": ("V_M",),
    "metal_lighter": ("Mlight_M",),
    "metal_heavier": ("Mheavy_M",),
    "chalcogen_single_vacancy": ("V_X",),
    "chalcogen_double_vacancy": ("V_X2",),
    "chalcogen_heavier": ("Xheavy_X",),
    "chalcogen_lighter": ("Xlight_X",),
    "antisite": ("M_X2", "M_X"),
    "adatom": ("M_H",),
}
SITE_CLASSES: tuple[str, ...] = tuple(SITE_CLASS_KINDS)
#: Chalcogen elements (anything else on a chalcogen site is a metal: an antisite).
CHALCOGENS = frozenset({8, 16, 34, 52})
_LIGHTER_METAL = {"W": "Mo", "Mo": "Z23", "Nb": "Z23"}
_HEAVIER_METAL = {"Mo": "W", "Nb": "W", "V": "Mo"}
_HEAVIER_CHALCOGEN = {"S": "Se", "Se": "Te"}
_LIGHTER_CHALCOGEN = {"Se": "S", "Te": "Se"}


@dataclass(frozen=True)
class DefectKind:
    """A parsed defect kind.

    Attributes
    ----------
    name : str
        The kind as written, e.g. ``"W_S2"``.
    site : str
        ``"M"`` (metal column), ``"X"`` (chalcogen X2 column) or ``"H"`` (hollow: an adatom).
    whole_column : bool
        For X sites: True when both chalcogen atoms are replaced (``_S2``), False for one.
    occupant_z : int
        Atomic number of the occupant; 0 for a vacancy.
    """

    name: str
    site: str
    whole_column: bool
    occupant_z: int


def _generic_occupant(name: str, occupant: str, material: Material) -> str:
    """Resolve the generic occupants (M, Mlight, Mheavy, Xheavy, Xlight) for ``material``."""
    if occupant == "M":
        return material.metal
    table = {"Mlight": (_LIGHTER_METAL, material.metal), "Mheavy": (_HEAVIER_METAL, material.metal),
             "Xheavy": (_HEAVIER_CHALCOGEN, material.chalcogen),
             "Xlight": (_LIGHTER_CHALCOGEN, material.chalcogen)}
    if occupant not in table:
        return occupant
    lookup, host = table[occupant]
    if occupant.startswith("X") and material.mixed:
        raise ValueError(f"defect kind {name!r}: {material.name} mixes two chalcogens, so a "
                         f"heavier/lighter chalcogen on a chalcogen site is part of the alloy")
    if host not in lookup:
        raise ValueError(f"defect kind {name!r}: {material.name} has no {occupant} substitution")
    return lookup[host]


def parse_kind(name: str, material: Material) -> DefectKind:
    """Parse a kind name for a material; raise ``ValueError`` naming the kind when it does not fit."""
    occupant, sep, host = name.partition("_")
    if not sep or not occupant or not host:
        raise ValueError(f"defect kind {name!r}: expected '<occupant>_<host site>', e.g. 'Mo_W'")
    occupant = _generic_occupant(name, occupant, material)
    host = {"M": material.metal, "X": material.chalcogen, "X2": material.chalcogen + "2"}.get(host, host)
    if host == "H":
        site, whole = "H", True
    elif host == material.metal:
        site, whole = "M", True
    elif host == material.chalcogen:
        site, whole = "X", False
    elif host == material.chalcogen + "2":
        site, whole = "X", True
    else:
        raise ValueError(
            f"defect kind {name!r}: host site {host!r} is not in {material.name} "
            f"(sites: {material.metal}, {material.chalcogen}, {material.chalcogen}2)"
        )
    if occupant == "V":
        z = 0
    elif occupant.startswith("Z") and occupant[1:].isdigit():
        z = int(occupant[1:])
    elif occupant in ATOMIC_NUMBER:
        z = ATOMIC_NUMBER[occupant]
    else:
        raise ValueError(
            f"defect kind {name!r}: occupant {occupant!r} is unknown; use 'V' (vacancy), "
            f"one of {sorted(ATOMIC_NUMBER)} or 'Z<atomic number>'"
        )
    return DefectKind(name, site, whole, z)


@dataclass(frozen=True)
class ClassSet:
    """An ordered set of classes, each grouping defect kinds (an empty group means pristine)."""

    kinds: tuple[tuple[str, tuple[str, ...]], ...]

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Sequence[str]] | None = None) -> "ClassSet":
        """Build from ``{class name: [kind, ...]}``; None gives the default WS2 classes."""
        mapping = DEFAULT_CLASS_KINDS if mapping is None else mapping
        if len(mapping) < 2:
            raise ValueError(f"classes: need at least two classes, got {list(mapping)}")
        items = []
        for name, kinds in mapping.items():
            if isinstance(kinds, str):
                raise ValueError(f"classes.{name}: expected a list of defect kinds, got {kinds!r}")
            items.append((str(name), tuple(str(k) for k in kinds)))
        if sum(1 for _, k in items if not k) > 1:
            raise ValueError("classes: at most one class may be pristine (an empty kind list)")
        return cls(tuple(items))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.kinds)

    def __len__(self) -> int:
        return len(self.kinds)

    def index(self, name: str) -> int:
        """Index of a class name; ``ValueError`` naming the class and the choices otherwise."""
        try:
            return self.names.index(name)
        except ValueError:
            raise ValueError(f"class {name!r} is not in the class set {list(self.names)}") from None

    def kinds_of(self, name: str) -> tuple[str, ...]:
        return self.kinds[self.index(name)][1]

    def validate(self, material: Material) -> None:
        """Check that every kind can be placed in ``material``."""
        for name, kinds in self.kinds:
            for kind in kinds:
                try:
                    parse_kind(kind, material)
                except ValueError as err:
                    raise ValueError(f"classes.{name}: {err}") from None

    def to_dict(self) -> dict[str, list[str]]:
        return {name: list(kinds) for name, kinds in self.kinds}

    def kinds_in(self, material: Material) -> dict[str, tuple[str, ...]]:
        """The kinds of every class that exist in ``material`` (a class may keep none)."""
        out = {}
        for name, kinds in self.kinds:
            ok = []
            for kind in kinds:
                try:
                    parse_kind(kind, material)
                except ValueError:
                    continue
                ok.append(kind)
            out[name] = tuple(ok)
        return out


def site_class_of(kind: DefectKind | None, material: Material) -> str:
    """The site class (one of :data:`SITE_CLASSES`) of a parsed kind; None is pristine."""
    if kind is None:
        return "pristine"
    z = kind.occupant_z
    if kind.site == "H":
        return "adatom"
    if kind.site == "M":
        if z == 0:
            return "metal_vacancy"
        if z == material.z_metal:
            raise ValueError(f"defect kind {kind.name!r} puts the host metal on its own site")
        return "metal_lighter" if z < material.z_metal else "metal_heavier"
    if z == 0:
        return "chalcogen_double_vacancy" if kind.whole_column else "chalcogen_single_vacancy"
    if z not in CHALCOGENS:
        return "antisite"
    if z == material.z_chalcogen:
        raise ValueError(f"defect kind {kind.name!r} puts the host chalcogen on its own site")
    return "chalcogen_heavier" if z > material.z_chalcogen else "chalcogen_lighter"


def site_map(classes: ClassSet, material: Material) -> dict[str, tuple[str, ...]]:
    """Which site classes each class of ``classes`` covers in ``material`` (none for a class
    whose kinds all are missing from the material, e.g. ``metal_heavier`` in WS2).

    >>> from stem2d.materials import get_material
    >>> site_map(ClassSet.from_mapping(None), get_material("WS2"))["s_vacancy"]
    ('chalcogen_single_vacancy', 'chalcogen_double_vacancy')
    """
    present = classes.kinds_in(material)  # a kind the material lacks covers nothing there
    out = {}
    for name, kinds in classes.kinds:
        sites = [site_class_of(parse_kind(k, material), material) for k in present[name]]
        out[name] = tuple(dict.fromkeys(sites if kinds else ["pristine"]))
    return out


def site_label(name: str, material: Material) -> str:
    """A site class named for a material, e.g. ``metal_lighter`` in WS2 -> ``"Mo_W"``; the class
    name itself where the material has no such kind."""
    kinds = ClassSet.from_mapping(SITE_CLASS_KINDS).kinds_in(material).get(name, ())
    if name == "pristine" or not kinds:
        return name
    labels = []
    for kind in kinds:
        parsed = parse_kind(kind, material)
        occupant = "V" if parsed.occupant_z == 0 else next(
            (el for el, z in ATOMIC_NUMBER.items() if z == parsed.occupant_z and el != "V"),
            f"Z{parsed.occupant_z}")
        host = {"M": material.metal, "H": "hollow"}.get(parsed.site) or (
            material.chalcogen + ("2" if parsed.whole_column else ""))
        labels.append(f"{occupant}_{host}")
    return "/".join(labels)


def pristine_class(classes: ClassSet) -> str | None:
    """The class of ``classes`` with no defect kinds (the pristine class), or None."""
    return next((name for name, kinds in classes.kinds if not kinds), None)


#: The defect that hops on the chalcogen sublattice, in order of preference (evolution: diffusion, creation).
HOPPING_SITE_CLASSES = ("chalcogen_single_vacancy", "chalcogen_double_vacancy")


def hopping_class(classes: ClassSet, material: Material) -> str | None:
    """The class of ``classes`` that holds chalcogen vacancies in ``material`` (the defect whose
    hops the evolution analysis measures): the one covering single vacancies, else double ones;
    None when the class set names neither.

    >>> from stem2d.materials import get_material
    >>> hopping_class(ClassSet.from_mapping(None), get_material("WS2"))
    's_vacancy'
    >>> hopping_class(ClassSet.from_mapping(SITE_CLASS_KINDS), get_material("MoSe2"))
    'chalcogen_single_vacancy'
    """
    mapping = site_map(classes, material)
    for site in HOPPING_SITE_CLASSES:
        owners = [name for name, sites in mapping.items() if site in sites]
        if owners:
            return owners[0]
    return None


def vocabulary_of(names: Sequence[str]) -> ClassSet | None:
    """The built-in class set whose names include all of ``names`` (the default WS2 set, then the
    site vocabulary), or None; for tables that carry class names without their kinds."""
    for mapping in (DEFAULT_CLASS_KINDS, SITE_CLASS_KINDS):
        if set(names) <= set(mapping):
            return ClassSet.from_mapping(mapping)
    return None


def site_classes_in(material: Material) -> tuple[str, ...]:
    """The site classes ``material`` can hold (pristine always; no heavier metal in W hosts, no
    lighter or heavier chalcogen in S/Se alloys, where it is the alloy itself).

    >>> from stem2d.materials import get_material
    >>> [c for c in SITE_CLASSES if c not in site_classes_in(get_material("WS2"))]
    ['metal_heavier', 'chalcogen_lighter']
    """
    present = ClassSet.from_mapping(SITE_CLASS_KINDS).kinds_in(material)
    return tuple(name for name, kinds in SITE_CLASS_KINDS.items() if present[name] or not kinds)


def condition_on_material(probs: np.ndarray, site_names: Sequence[str], material: Material) -> np.ndarray:
    """Site-class probabilities given the material: classes it cannot hold get 0, the rest are
    renormalised (the family classifier is not told the material; a run's config is).

    Parameters
    ----------
    probs : ndarray, float, (N, len(site_names))
    site_names : sequence of str
    material : Material

    Returns
    -------
    ndarray, float64, (N, len(site_names)); rows sum to 1.
    """
    keep = np.isin(np.asarray(site_names), site_classes_in(material)).astype(np.float64)
    p = np.asarray(probs, dtype=np.float64) * keep
    return p / np.maximum(p.sum(axis=1, keepdims=True), np.finfo(np.float64).tiny)


def projection_matrix(
    site_names: Sequence[str], classes: ClassSet, material: Material, *, outside_class: str | None = None
) -> tuple[np.ndarray, tuple[str, ...]]:
    """The linear map from probabilities over site classes to probabilities over ``classes``.

    Each class of ``classes`` gets the site classes it covers (:func:`site_map`; a site class
    covered by k classes gives each 1/k). A site class no class covers goes to ``outside_class``
    when given (e.g. the pristine class: "none of this class set's defects"), else it is appended
    under its own name, so nothing is silently dropped. Every row sums to 1, so projected
    probabilities sum to 1 whenever the site probabilities do.

    Parameters
    ----------
    site_names : sequence of str
        The model's class names (site classes).
    classes : ClassSet
    material : Material
    outside_class : str, keyword-only, optional
        A class of ``classes`` that takes the site classes no class covers.

    Returns
    -------
    matrix : ndarray, float64, (len(site_names), K); names : tuple of str, length K.

    >>> from stem2d.materials import get_material
    >>> m, names = projection_matrix(SITE_CLASSES, ClassSet.from_mapping(None), get_material("WS2"),
    ...                              outside_class="pristine")
    >>> names, m.sum(axis=1).tolist() == [1.0] * len(SITE_CLASSES)
    (('pristine', 'mo_dopant', 's_vacancy', 'w_vacancy', 'w_dopant'), True)
    """
    mapping = site_map(classes, material)
    if outside_class is not None and outside_class not in mapping:
        raise ValueError(f"outside_class={outside_class!r} is not in the class set {list(mapping)}")
    names = list(mapping)
    share = {s: sum(s in v for v in mapping.values()) for s in site_names}
    outside = [s for s in site_names if share[s] == 0]
    if outside_class is None:
        names += outside
    matrix = np.zeros((len(site_names), len(names)))
    for i, s in enumerate(site_names):
        if share[s]:
            for j, sites in enumerate(mapping.values()):
                if s in sites:
                    matrix[i, j] = 1.0 / share[s]
        else:
            matrix[i, names.index(s if outside_class is None else outside_class)] = 1.0
    return matrix, tuple(names)


def project_probabilities(
    probs: np.ndarray, site_names: Sequence[str], classes: ClassSet, material: Material,
    *, outside_class: str | None = None,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map probabilities over site classes onto another class set (e.g. the default WS2 names).

    ``probs @ projection_matrix(...)``: see :func:`projection_matrix` for how site classes are
    shared and where the ones no class covers go (``outside_class``, else appended).

    Parameters
    ----------
    probs : ndarray, float, (N, len(site_names))
    site_names : sequence of str
        The model's class names (site classes).
    classes : ClassSet
    material : Material
    outside_class : str, keyword-only, optional

    Returns
    -------
    probs : ndarray, float64, (N, K); names : tuple of str, length K.
    """
    matrix, names = projection_matrix(site_names, classes, material, outside_class=outside_class)
    return np.asarray(probs, dtype=np.float64) @ matrix, names
