"""The one class style (stem2d.viz.style): by name, the same in every class set, distinct within a set."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from stem2d.viz.style import KNOWN, MARKERS, OKABE_ITO, class_style, class_styles, describe_kind, drawn_classes, legend_markdown

SHIPPED = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "classes").glob("*.yaml"))


def _class_set(name: str) -> list[str]:
    path = Path(__file__).resolve().parents[1] / "conf" / "classes" / f"{name}.yaml"
    return list(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize("set_name", SHIPPED)
def test_shipped_class_sets_have_distinct_known_styles(set_name):
    names = drawn_classes(_class_set(set_name))
    styles = class_styles(names)
    assert len({(s.rgb, s.marker) for s in styles.values()}) == len(names)
    if len(names) <= len(OKABE_ITO):
        assert len({s.rgb for s in styles.values()}) == len(names)  # colour alone tells them apart
    for s in styles.values():  # every shipped class has its entry in the one table
        assert s.name in KNOWN and s.rgb in OKABE_ITO.values() and s.marker in MARKERS


def test_style_follows_the_name_not_the_index():
    ws2 = class_styles(_class_set("default"))
    mos2 = class_styles(_class_set("mos2"))
    for name in set(ws2) & set(mos2):
        assert ws2[name] == mos2[name] == class_style(name)


def test_unknown_names_get_deterministic_distinct_fallbacks():
    names = ["pristine", "s_vacancy", "mystery_a", "mystery_b", "mystery_c"]
    first, again = class_styles(names), class_styles(list(reversed(names)))
    assert all(first[n] == again[n] for n in names)
    assert class_style("mystery_a") == class_style("mystery_a")
    assert len({s.rgb for s in first.values()}) == len(names)


def test_style_converts_for_each_backend():
    s = class_style("s_vacancy")
    assert s.hex == "#009E73" and s.rgb01 == pytest.approx((0, 158 / 255, 115 / 255))
    assert s.mpl_marker == "s" and s.napari_symbol == "square"


def test_kinds_in_words_and_legend():
    assert describe_kind("Mo_W") == "Mo on a W site"
    assert describe_kind("V_S2") == "both S of a column missing"
    assert describe_kind("Z23_Mo") == "V on an Mo site"
    assert describe_kind("V_W") == "W vacancy"
    assert describe_kind("M_H") == "metal atom on a hollow site"
    table = legend_markdown(["pristine", "s_vacancy"], meanings={"s_vacancy": "S missing"})
    assert "pristine" not in table and "| #009E73 | square | `s_vacancy` | S missing |" in table
