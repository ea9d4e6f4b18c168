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
    second_chalcogen: str | None = None
    second_fraction_range: tuple[float, float] = (0.0, 0.0)
    janus: bool = False
    second_a_A: float | None = None

    @property
    def mixed(self) -> bool:
        """True for S/Se alloys and Janus layers (two chalcogens)."""
        return self.second_chalcogen is not None

    def lattice_constant_A(self, second_fraction: float = 0.0) -> float:
        """Lattice constant at a fraction of the second chalcogen (Vegard's law between the two
        end members; Janus layers: the mean of the two)."""
        if self.second_a_A is None:
            return self.a_A
        if self.janus:
            return 0.5 * (self.a_A + self.second_a_A)
        return (1.0 - second_fraction) * self.a_A + second_fraction * self.second_a_A

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
    # S/Se alloys M(S1-xSex)2: every chalcogen atom is Se with probability x, x drawn per image
    # in the range; a(x) by Vegard's law between the end members.
    "WSSe": Material("WSSe", "W", "S", 3.18, "Se", (0.1, 0.9), False, 3.28),
    "MoSSe": Material("MoSSe", "Mo", "S", 3.16, "Se", (0.1, 0.9), False, 3.29),
    # Janus layers: one face all S, the other all Se (every column is S + Se; which face meets
    # the beam first is drawn per image). a ~ mean of the end members (MoSSe 3.22 A, WSSe 3.23 A).
    "WSSe_janus": Material("WSSe_janus", "W", "S", 3.18, "Se", (0.5, 0.5), True, 3.28),
    "MoSSe_janus": Material("MoSSe_janus", "Mo", "S", 3.16, "Se", (0.5, 0.5), True, 3.29),
}
#: The pure host lattices (one metal, one chalcogen).
PURE_MATERIALS: tuple[str, ...] = ("WS2", "MoS2", "WSe2", "MoSe2")


def get_material(name: str) -> Material:
    """Look up a material by formula; raise ``ValueError`` naming the key and the choices."""
    try:
        return MATERIALS[name]
    except KeyError:
        raise ValueError(
            f"material={name!r} is not known; choose one of {sorted(MATERIALS)}"
        ) from None
