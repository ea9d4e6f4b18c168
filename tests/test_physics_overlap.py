"""Column-strength ratio ranges of the site classes under the training physics (bench section 6)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from stem2d.bench.physics_overlap import column_ratios, confused_pairs, overlap
from stem2d.materials import get_material
from stem2d.sim.physics import PhysicsRanges

RANGES = PhysicsRanges()
#: Everything fixed at one point: the plain Z^1.7 model with c = 1 and a linear detector.
FIXED = replace(RANGES, z_exponent=(1.7, 1.7), species_factor=(1.0, 1.0), second_atom_factor=(1.0, 1.0),
                detector_gamma=(1.0, 1.0))


def test_single_vacancy_spans_the_channelling_range():
    r = column_ratios(get_material("WS2"), ranges=RANGES, n_draws=400, rng=0)
    (c_lo, c_hi), (g_lo, g_hi) = RANGES.second_atom_factor, RANGES.detector_gamma
    lo, hi = (1 / (1 + c_hi)) ** g_hi, (1 / (1 + c_lo)) ** g_lo  # one atom of two, after the detector
    v = r["chalcogen_single_vacancy"]
    assert v.site == "X" and v.values.min() >= lo - 1e-9 and v.values.max() <= hi + 1e-9
    assert v.range[0] < 0.45 and v.range[1] > 0.58  # the draws fill the band
    m = r["metal_lighter"]
    assert m.site == "M" and m.values.min() >= RANGES.light_metal_ratio[0] ** g_hi - 1e-9
    assert r["pristine"].range == (1.0, 1.0) and r["chalcogen_double_vacancy"].range == (0.0, 0.0)
    assert "metal_heavier" not in r and "chalcogen_lighter" not in r  # WS2 has neither


def test_fixed_physics_separates_what_the_ranges_merge():
    """MoSe2: one Se missing, S on Se and Mo on a Se2 site overlap under the training ranges, and are
    single numbers (0.5, 0.64 and 0.72 of a Se2 column) under one fixed Z^1.7 physics."""
    mose2 = get_material("MoSe2")
    wide = column_ratios(mose2, ranges=RANGES, n_draws=400, rng=1)
    vac, light, anti = wide["chalcogen_single_vacancy"], wide["chalcogen_lighter"], wide["antisite"]
    assert overlap(vac, light) > 0.2 and overlap(light, anti) > 0.9
    assert anti.range[0] < 1.0 < anti.range[1]  # Mo on Se2 can be as bright as a full Se2 column
    fixed = column_ratios(mose2, ranges=FIXED, n_draws=20, rng=1)
    np.testing.assert_allclose(fixed["chalcogen_single_vacancy"].values, 0.5)
    np.testing.assert_allclose(fixed["chalcogen_lighter"].values, (1 + (16 / 34) ** 1.7) / 2)
    assert overlap(fixed["chalcogen_single_vacancy"], fixed["chalcogen_lighter"]) == 0.0
    # other sites are told apart by position, whatever their brightness
    assert overlap(wide["metal_vacancy"], wide["chalcogen_double_vacancy"]) is None
    assert overlap(wide["pristine"], vac) == 0.0  # pristine (1) is never as dark as one atom of two


def test_alloy_ratios_cover_every_column_composition():
    r = column_ratios(get_material("WSSe"), ranges=RANGES, n_draws=200, rng=2)
    assert "chalcogen_heavier" not in r  # Se on S is the alloy itself
    # one atom missing from S+Se (Se left, seen first) can be nearly as bright as the full column
    assert r["chalcogen_single_vacancy"].range[1] > 0.9


@pytest.mark.parametrize("seed", [0, 1])
def test_confused_pairs_counts_and_fractions(seed):
    gen = np.random.default_rng(seed)
    labels = np.repeat([0, 1, 2], 10)
    pred = labels.copy()
    pred[:4] = 1  # 4 of class 0 called 1
    pred[10:12] = 2  # 2 of class 1 called 2
    order = gen.permutation(len(labels))
    pairs = confused_pairs(pred[order], labels[order], top=3)
    assert pairs == [(0, 1, 4, 0.4), (1, 2, 2, 0.2)]
    assert confused_pairs(labels, labels, top=3) == []


def test_sublattices_look_alike_across_the_family_not_in_ws2():
    """The model is not told the material: MoSe2's Se2 columns outshine Mo as WSe2's W outshines Se2."""
    from stem2d.bench.physics_overlap import sublattice_contrast, sublattices_alike

    c = {m: sublattice_contrast(get_material(m), ranges=RANGES, n_draws=300, rng=3) for m in ("WS2", "WSe2", "MoSe2")}
    assert c["WS2"].max() < 0.5 and c["MoSe2"].min() > 0.9  # metal brighter in WS2, Se2 brighter in MoSe2
    family = list(c.values())
    assert sublattices_alike(c["WS2"], family) == 0.0
    assert sublattices_alike(c["MoSe2"], family) > 0.9 and sublattices_alike(c["WSe2"], family) > 0.5
    assert sublattices_alike(c["MoSe2"], [c["MoSe2"]]) < 0.05  # within MoSe2 alone they (nearly) never swap
