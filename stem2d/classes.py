"""Defect kinds (what sits on which lattice site) and class sets (which kinds a class groups).

Kinds use Kroger-Vink-like names ``<occupant>_<host site>``:

- occupant: an element symbol (``Mo``), ``V`` for a vacancy, or ``Z<n>`` for the element of
  atomic number n (``Z23`` is vanadium, since ``V`` means vacancy);
- host site: the metal symbol (``W``: the metal column), the chalcogen symbol (``S``: one of the
  two atoms of an X2 column) or the chalcogen symbol with a 2 (``S2``: the whole X2 column).

So ``Mo_W`` is Mo on a W site, ``V_S`` one S missing from an S2 column, ``V_S2`` both missing,
``W_S2`` a W atom replacing an S2 column, ``W_S`` a W atom replacing one S of a column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class DefectKind:
    """A parsed defect kind.

    Attributes
    ----------
    name : str
        The kind as written, e.g. ``"W_S2"``.
    site : str
        ``"M"`` (metal column) or ``"X"`` (chalcogen X2 column).
    whole_column : bool
        For X sites: True when both chalcogen atoms are replaced (``_S2``), False for one.
    occupant_z : int
        Atomic number of the occupant; 0 for a vacancy.
    """

    name: str
    site: str
    whole_column: bool
    occupant_z: int


def parse_kind(name: str, material: Material) -> DefectKind:
    """Parse a kind name for a material; raise ``ValueError`` naming the kind when it does not fit."""
    occupant, sep, host = name.partition("_")
    if not sep or not occupant or not host:
        raise ValueError(f"defect kind {name!r}: expected '<occupant>_<host site>', e.g. 'Mo_W'")
    if host == material.metal:
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
