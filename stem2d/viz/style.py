"""The one place that says how each defect class looks: a colour and a marker, by class NAME.

Every output draws classes through this module (the overlay movie, every plot, the napari
layers, report.html and the README legend), so a class has the same colour everywhere and for
any class set: the style follows the name, never the index of the class in its set.

Colours are Okabe & Ito's colour-blind-safe palette (Okabe & Ito 2008, "Color Universal Design"),
without its black (invisible on a dark HAADF background); markers add a second cue (metal-site
defects are circles, chalcogen vacancies squares, chalcogen substitutions triangles, antisites
diamonds, adatoms stars), so two classes of a set that share a colour (the nine-class site
vocabulary has more classes than the palette has colours) never share a marker. Names that
the table does not know get a deterministic fallback from a hash of the name (Paul Tol's muted
palette, any marker); :func:`class_styles` keeps the fallbacks of one class set distinct.

>>> class_style("s_vacancy").hex
'#009E73'
>>> class_style("s_vacancy") == class_style("s_vacancy")  # by name, in any class set
True
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: Okabe-Ito colours (RGB 0..255), black left out.
OKABE_ITO: dict[str, tuple[int, int, int]] = {
    "orange": (230, 159, 0),
    "sky_blue": (86, 180, 233),
    "green": (0, 158, 115),
    "yellow": (240, 228, 66),
    "blue": (0, 114, 178),
    "vermillion": (213, 94, 0),
    "purple": (204, 121, 167),
}
#: Paul Tol's "muted" colours for class names the table does not know.
TOL_MUTED: tuple[tuple[int, int, int], ...] = (
    (204, 102, 119), (51, 34, 136), (221, 204, 119), (17, 119, 51), (136, 204, 238),
    (136, 34, 85), (68, 170, 153), (153, 153, 51), (170, 68, 153),
)
#: Marker shapes, and how matplotlib and napari call them.
MARKERS: dict[str, dict[str, str]] = {
    "circle": {"mpl": "o", "napari": "disc"},
    "square": {"mpl": "s", "napari": "square"},
    "diamond": {"mpl": "D", "napari": "diamond"},
    "triangle": {"mpl": "^", "napari": "triangle_up"},
    "star": {"mpl": "*", "napari": "star"},
    "cross": {"mpl": "X", "napari": "cross"},
}
_C = OKABE_ITO
#: Known class names -> (colour, marker). Same meaning, same style (``mo_dopant`` and ``mo_w``
#: are both Mo on a W site). Within each shipped class set every entry is distinct.
KNOWN: dict[str, tuple[tuple[int, int, int], str]] = {
    # not drawn in the overlay; grey in plots
    "pristine": ((153, 153, 153), "circle"),
    "unknown": ((221, 221, 221), "cross"),       # a candidate site the classifier did not confirm
    # the site vocabulary (conf/classes/sites.yaml); metal site: circles
    "metal_vacancy": (_C["sky_blue"], "circle"),
    "metal_lighter": (_C["orange"], "circle"),
    "metal_heavier": (_C["yellow"], "circle"),
    # chalcogen site: squares (vacancies), triangles (substitutions)
    "chalcogen_single_vacancy": (_C["green"], "square"),
    "chalcogen_double_vacancy": (_C["yellow"], "square"),
    "chalcogen_heavier": (_C["blue"], "triangle"),
    "chalcogen_lighter": (_C["sky_blue"], "triangle"),
    # a metal atom on a chalcogen site: diamonds; off the lattice: star
    "antisite": (_C["vermillion"], "diamond"),
    "adatom": (_C["purple"], "star"),
    # the material-specific sets, styled as their site class where the name has one meaning
    "mo_dopant": (_C["orange"], "circle"),       # Mo on a W site: a lighter metal
    "mo_w": (_C["orange"], "circle"),
    "v_dopant": (_C["orange"], "circle"),        # V on a Mo site: a lighter metal
    "w_vacancy": (_C["sky_blue"], "circle"),
    "mo_vacancy": (_C["sky_blue"], "circle"),
    "v_w": (_C["sky_blue"], "circle"),
    "s_vacancy": (_C["green"], "square"),
    "v_s2": (_C["yellow"], "square"),
    "s_w": (_C["blue"], "triangle"),
    "mo_antisite": (_C["vermillion"], "diamond"),
    "w_s": (_C["vermillion"], "diamond"),
    "w_s2": (_C["purple"], "diamond"),
    # W on an S2 column in the WS2 set but W on a Mo site in the MoS2 set: a style of its own
    "w_dopant": (_C["purple"], "diamond"),
}
#: Outline colours of region masks (overlay, napari, report): neutral tones and Tol's sand and
#: rose, outside the class palette, drawn dashed, so a region never reads as a class marker.
REGION_COLOURS: dict[str, tuple[int, int, int]] = {
    "hole": (255, 255, 255),
    "edge": (150, 150, 150),
    "contamination": (221, 204, 119),
    "amorphous": (204, 102, 119),
}
#: Perceptual colour map of the CAM heat map (overlay, colour bar, napari).
HEAT_COLORMAP = "magma"


@dataclass(frozen=True)
class ClassStyle:
    """How one class is drawn.

    Attributes
    ----------
    name : str
        The class name as it appears in ``detections.csv``.
    rgb : (int, int, int)
        Colour, 0..255.
    marker : str
        A key of :data:`MARKERS`.
    """

    name: str
    rgb: tuple[int, int, int]
    marker: str

    @property
    def hex(self) -> str:
        """``'#RRGGBB'`` (HTML, napari)."""
        return "#{:02X}{:02X}{:02X}".format(*self.rgb)

    @property
    def rgb01(self) -> tuple[float, float, float]:
        """Colour as floats in 0..1 (matplotlib)."""
        return tuple(c / 255.0 for c in self.rgb)

    @property
    def mpl_marker(self) -> str:
        return MARKERS[self.marker]["mpl"]

    @property
    def napari_symbol(self) -> str:
        return MARKERS[self.marker]["napari"]


_FALLBACKS = [(rgb, m) for m in ("circle", "square", "diamond", "triangle", "star") for rgb in TOL_MUTED]


def _fallback_index(name: str) -> int:
    return zlib.crc32(name.encode("utf-8")) % len(_FALLBACKS)


def class_style(name: str) -> ClassStyle:
    """The style of one class name (a known one from :data:`KNOWN`, else the hash fallback)."""
    name = str(name)
    if name in KNOWN:
        rgb, marker = KNOWN[name]
    else:
        rgb, marker = _FALLBACKS[_fallback_index(name)]
    return ClassStyle(name, rgb, marker)


def class_styles(names: Iterable[str]) -> dict[str, ClassStyle]:
    """Styles of a class set by name; fallbacks within the set never repeat a style in the set.

    Known names always get their table entry; an unknown name takes the first free fallback
    from its hash on, so its style depends only on its name unless it collides with another
    class of the same set.
    """
    names = [str(n) for n in dict.fromkeys(map(str, names))]
    styles = {n: class_style(n) for n in names if n in KNOWN}
    used = {(s.rgb, s.marker) for s in styles.values()}
    for n in sorted(set(names) - set(styles)):
        i = _fallback_index(n)
        order = [_FALLBACKS[(i + step) % len(_FALLBACKS)] for step in range(len(_FALLBACKS))]
        colours = {rgb for rgb, _ in used}
        free = [f for f in order if f[0] not in colours] or [f for f in order if f not in used] or order
        rgb, marker = free[0]
        used.add((rgb, marker))
        styles[n] = ClassStyle(n, rgb, marker)
    return {n: styles[n] for n in names}


def drawn_classes(names: Sequence[str]) -> list[str]:
    """The classes that mark defects (``pristine`` is never drawn), in set order."""
    return [str(n) for n in names if str(n) != "pristine"]


def legend_markdown(names: Sequence[str], *, meanings: dict[str, str] | None = None) -> str:
    """A Markdown table ``| colour | marker | class | meaning |`` (README, report)."""
    meanings = meanings or {}
    lines = ["| colour | marker | class | meaning |", "|---|---|---|---|"]
    for name, st in class_styles(drawn_classes(names)).items():
        lines.append(f"| {st.hex} | {st.marker} | `{name}` | {meanings.get(name, '')} |")
    return "\n".join(lines)


def describe_kind(kind: str) -> str:
    """A defect kind in words: ``Mo_W`` -> 'Mo on a W site', ``V_S2`` -> 'both S of a column missing'.

    Kinds follow :mod:`stem2d.classes` (``<occupant>_<host site>``, ``V`` = vacancy, ``Z<n>`` =
    element n, a host ending in 2 = a whole chalcogen column). Unparseable kinds are returned as given.
    """
    from stem2d.materials import ATOMIC_NUMBER

    occupant, sep, host = str(kind).partition("_")
    if not sep or not occupant or not host:
        return str(kind)
    if str(kind) in _GENERIC:  # the site vocabulary (conf/classes/sites.yaml)
        return _GENERIC[str(kind)]
    if occupant.startswith("Z") and occupant[1:].isdigit():
        symbols = {z: s for s, z in ATOMIC_NUMBER.items() if s != "V"}
        z = int(occupant[1:])
        occupant = "V" if z == 23 else symbols.get(z, f"element {z}")
        is_vacancy = False
    else:
        is_vacancy = occupant == "V"
    column = host.endswith("2")
    site = host[:-1] if column else host
    chalcogen = site in _CHALCOGENS
    if is_vacancy:
        if not chalcogen:
            return f"{site} vacancy"
        return f"both {site} of a column missing" if column else f"one {site} of a column missing"
    if chalcogen:
        return f"{occupant} replacing an {site}2 column" if column else f"{occupant} replacing one {site}"
    return f"{occupant} on {_article(site)} {site} site"


_CHALCOGENS = ("S", "Se", "Te")
_GENERIC = {
    "V_M": "metal missing", "Mlight_M": "lighter metal on a metal site", "Mheavy_M": "heavier metal on a metal site",
    "V_X": "one chalcogen of a column missing", "V_X2": "both chalcogens of a column missing",
    "Xheavy_X": "heavier chalcogen replacing one", "Xlight_X": "lighter chalcogen replacing one",
    "M_X2": "metal replacing a chalcogen column", "M_X": "metal replacing one chalcogen",
    "M_H": "metal atom on a hollow site",
}


def _article(word: str) -> str:
    return "an" if word[:1].upper() in "AEFHILMNORSX" else "a"


def describe_class(kinds: Sequence[str]) -> str:
    """The kinds of one class in words, joined by ' or ' ('' for pristine); one chalcogen and
    the whole column of the same occupant read as one phrase.

    >>> describe_class(["V_S", "V_S2"])
    'one or both S of a column missing'
    >>> describe_class(["W_S2", "W_S"])
    'W replacing one S or a whole S2 column'
    """
    kinds = [str(k) for k in kinds]
    pairs = {tuple(k.partition("_")[::2]) for k in kinds}
    if len(kinds) == 2 and len({o for o, _ in pairs}) == 1:
        occupant = next(iter(pairs))[0]
        hosts = sorted(h for _, h in pairs)
        if len(hosts) == 2 and hosts[1] == hosts[0] + "2" and hosts[0] in _CHALCOGENS + ("X",):
            x = hosts[0]
            if occupant == "V":
                return "one or both chalcogens of a column missing" if x == "X" else f"one or both {x} of a column missing"
            return f"{describe_kind(occupant + '_' + x)} or a whole {'column' if x == 'X' else x + '2 column'}"
    return " or ".join(describe_kind(k) for k in kinds)
