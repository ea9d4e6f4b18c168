"""2H transition-metal dichalcogenide monolayers (MX2) and the elements that may sit on their sites."""

from __future__ import annotations

from dataclasses import dataclass

#: Atomic numbers of the elements stem2d knows (hosts and common dopants).
ATOMIC_NUMBER = {
    "S": 16, "Se": 34, "Te": 52, "V": 23, "Cr": 24, "Nb": 41, "Mo": 42, "Re": 75, "W": 74,
}


@dataclass(frozen=True)
class Material:
    """A 2H-MX2 monolayer.

    Parameters
    ----------
    name : str
        Formula, e.g. ``"WS2"``.
    metal, chalcogen : str
        Element symbols of the metal (M) and chalcogen (X) sites.
    a_A : float
        In-plane lattice constant in angstrom (M-M distance).
    """

    name: str
    metal: str
    chalcogen: str
    a_A: float

    @property
    def z_metal(self) -> int:
        return ATOMIC_NUMBER[self.metal]

    @property
    def z_chalcogen(self) -> int:
        return ATOMIC_NUMBER[self.chalcogen]

    @property
    def mx_distance_A(self) -> float:
        """Projected distance between an M column and its nearest X2 column, a / sqrt(3)."""
        return self.a_A / 3**0.5

    @property
    def d100_A(self) -> float:
        """Spacing of the {100} lattice planes, sqrt(3)/2 * a (the first Bragg ring)."""
        return self.a_A * 3**0.5 / 2


MATERIALS = {
    "WS2": Material("WS2", "W", "S", 3.18),
    "MoS2": Material("MoS2", "Mo", "S", 3.16),
    "WSe2": Material("WSe2", "W", "Se", 3.28),
    "MoSe2": Material("MoSe2", "Mo", "Se", 3.29),
}


def get_material(name: str) -> Material:
    """Look up a material by formula; raise ``ValueError`` naming the key and the choices."""
    try:
        return MATERIALS[name]
    except KeyError:
        raise ValueError(
            f"material={name!r} is not known; choose one of {sorted(MATERIALS)}"
        ) from None
