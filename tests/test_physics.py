"""Physics-randomised simulation of the MX2 family and the site-based vocabulary."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from stem2d.classes import (
    SITE_CLASS_KINDS,
    SITE_CLASSES,
    ClassSet,
    parse_kind,
    project_probabilities,
    site_label,
    site_map,
)
from stem2d.data.mx2 import MX2DataModule, RandomizedTileDataset, simulate_scenes
from stem2d.materials import ATOMIC_NUMBER, get_material
from stem2d.sim.physics import ImagePhysics, PhysicsRanges, draw_physics
from stem2d.sim.processing import PROCESSING_TYPES, ProcessingRanges, process
from stem2d.sim.randomized import randomized_tile, render_clean
from stem2d.sim.scene import build_scene

SITES = ClassSet.from_mapping(SITE_CLASS_KINDS)
#: Accuracy floor of the bundled family weights on fresh held-out tiles (below the 0.99 target: see docs/physics.md).
FAMILY_ACCURACY_FLOOR = 0.70  # held-out test accuracy of the run: 0.830 (weight card)
EYE = {"matrix": np.eye(2), "shift_px": np.zeros(2), "pixel_size_A": 0.3, "tile_size_px": 64}


def _centre_peak(image: np.ndarray) -> float:
    return float(image[30:34, 30:34].max())


def test_sites_yaml_is_the_vocabulary():
    with open("conf/classes/sites.yaml") as f:
        assert {k: tuple(v) for k, v in yaml.safe_load(f).items()} == SITE_CLASS_KINDS


def test_same_seed_same_tile_and_other_seed_differs():
    scene = build_scene("V_X", material=get_material("WS2"), radius_A=23.0, rng=3)
    a = randomized_tile(scene, rng=7)
    b = randomized_tile(scene, rng=7)
    c = randomized_tile(scene, rng=8)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.processing == b.processing and a.physics == b.physics
    assert not np.allclose(a.image, c.image)


def test_dataset_sample_is_pure_function_of_seed_and_index():
    bases = simulate_scenes(SITES, materials=["WS2", "MoSe2"], n_per_class=1, split="train", seed=2)
    ds = RandomizedTileDataset(bases, n_samples=30, seed=5)
    again = RandomizedTileDataset(simulate_scenes(SITES, materials=["WS2", "MoSe2"], n_per_class=1,
                                                  split="train", seed=2), n_samples=30, seed=5)
    for i in (0, 13, 29):
        np.testing.assert_array_equal(ds[i]["image"].numpy(), again[i]["image"].numpy())
    assert set(bases.label) == set(range(len(SITES)))


@pytest.mark.parametrize("material", ["WS2", "WSe2", "MoS2"])
def test_single_chalcogen_missing_peak_ratio_in_documented_range(material):
    mat = get_material(material)
    ratios = []
    for i in range(16):
        physics = draw_physics(PhysicsRanges(), host_metal=mat.metal, rng=i)
        full = build_scene(None, material=mat, radius_A=23.0, rng=i, max_offset_A=0.0, site="X")
        vac = build_scene("V_X", material=mat, radius_A=23.0, rng=i, max_offset_A=0.0)
        ratios.append(_centre_peak(render_clean(vac, physics, **EYE))
                      / _centre_peak(render_clean(full, physics, **EYE)))
    lo, hi = np.percentile(ratios, [5, 95])
    assert 0.4 <= lo and hi <= 0.85, (lo, hi)
    assert hi - lo > 0.1  # really randomised


def test_lighter_metal_ratio_in_documented_range():
    mat = get_material("WS2")
    ratios = []
    for i in range(16):
        physics = draw_physics(PhysicsRanges(), host_metal="W", rng=i)
        ratios.append(float(physics.column_weights(np.array([[42, 0]]), 74)[0]))
        host = build_scene(None, material=mat, radius_A=23.0, rng=i, max_offset_A=0.0, site="M")
        dop = build_scene("Mo_W", material=mat, radius_A=23.0, rng=i, max_offset_A=0.0)
        peak = _centre_peak(render_clean(dop, physics, **EYE)) / _centre_peak(render_clean(host, physics, **EYE))
        assert 0.3 < peak < 0.65
    assert 0.33 <= min(ratios) and max(ratios) <= 0.55
    assert max(ratios) - min(ratios) > 0.08


def test_channelling_one_atom_counts_one_and_second_counts_c():
    physics = ImagePhysics(z_exponent=1.7, second_atom_factor=0.7)
    w = physics.column_weights(np.array([[16, 16], [0, 16], [16, 0], [74, 0]]), 74)
    s = (16 / 74) ** 1.7
    np.testing.assert_allclose(w, [s * 1.7, s, s, 1.0])


@pytest.mark.parametrize("material,a", [("WS2", 3.18), ("WSe2", 3.28), ("MoS2", 3.16), ("MoSe2", 3.29)])
def test_material_sets_lattice_constant(material, a):
    scene = build_scene(None, material=get_material(material), radius_A=10.0, rng=0,
                        max_offset_A=0.0, site="M")
    metal = scene.pos_A[scene.atoms[:, 0] == ATOMIC_NUMBER[get_material(material).metal]]
    d = np.linalg.norm(metal[:, None] - metal[None], axis=-1)
    d[d == 0] = np.inf
    assert np.isclose(d.min(), a, atol=1e-3)


def test_alloy_composition_and_janus_faces():
    alloy = build_scene(None, material=get_material("WSSe"), radius_A=20.0, rng=1, second_fraction=0.3)
    x = alloy.atoms[alloy.atoms[:, 0] < 40]  # chalcogen columns
    assert abs((x == 34).mean() - 0.3) < 0.08 and alloy.second_fraction == 0.3
    janus = build_scene(None, material=get_material("MoSSe_janus"), radius_A=15.0, rng=2)
    xj = janus.atoms[np.isin(janus.atoms[:, 0], (16, 34))]
    assert (np.sort(xj, axis=1) == [16, 34]).all()


def test_generic_kinds_resolve_per_material():
    assert parse_kind("Mlight_M", get_material("WS2")).occupant_z == 42
    assert parse_kind("Mlight_M", get_material("MoS2")).occupant_z == 23
    assert parse_kind("Xlight_X", get_material("WSe2")).occupant_z == 16
    with pytest.raises(ValueError, match="no Mheavy"):
        parse_kind("Mheavy_M", get_material("WS2"))
    with pytest.raises(ValueError, match="alloy"):
        parse_kind("Xheavy_X", get_material("WSSe"))
    assert site_label("metal_lighter", get_material("WS2")) == "Mo_W"
    assert site_label("chalcogen_lighter", get_material("MoSe2")) == "S_Se"


def test_old_class_sets_map_onto_sites():
    ws2 = site_map(ClassSet.from_mapping(None), get_material("WS2"))
    assert ws2 == {"pristine": ("pristine",), "mo_dopant": ("metal_lighter",),
                   "s_vacancy": ("chalcogen_single_vacancy", "chalcogen_double_vacancy"),
                   "w_vacancy": ("metal_vacancy",), "w_dopant": ("antisite",)}
    with open("conf/classes/mos2.yaml") as f:
        mos2 = site_map(ClassSet.from_mapping(yaml.safe_load(f)), get_material("MoS2"))
    assert mos2["w_dopant"] == ("metal_heavier",) and mos2["v_dopant"] == ("metal_lighter",)
    probs = np.random.default_rng(0).dirichlet(np.ones(len(SITE_CLASSES)), size=4)
    out, names = project_probabilities(probs, SITE_CLASSES, ClassSet.from_mapping(None), get_material("WS2"))
    assert names[:5] == ("pristine", "mo_dopant", "s_vacancy", "w_vacancy", "w_dopant")
    assert "adatom" in names and "chalcogen_heavier" in names
    np.testing.assert_allclose(out.sum(axis=1), 1.0)


@pytest.mark.parametrize("kind", PROCESSING_TYPES)
def test_processing_is_seeded(kind):
    image = np.random.default_rng(0).poisson(40.0, (64, 64)).astype(float)
    a, _ = process(image, ranges=ProcessingRanges(), pixel_size_A=0.3, rng=4, kind=kind)
    b, _ = process(image, ranges=ProcessingRanges(), pixel_size_A=0.3, rng=4, kind=kind)
    np.testing.assert_array_equal(a, b)
    assert a.shape == image.shape and np.isfinite(a).all()


def test_ranges_reject_bad_values():
    with pytest.raises(ValueError, match="z_exponent"):
        PhysicsRanges(z_exponent=(2.0, 1.0))
    with pytest.raises(ValueError, match="unknown keys"):
        PhysicsRanges.from_mapping({"z_exp": [1, 2]})
    with pytest.raises(ValueError, match="types"):
        ProcessingRanges(types=("sharpen",))


def test_datamodule_batches():
    dm = MX2DataModule(materials=["WS2", "WSe2", "MoSSe"], n_bases_per_class=1, n_val_bases_per_class=1,
                       n_test_bases_per_class=1, n_train_samples=8, n_val_samples=8,
                       n_test_samples=8, batch_size=8, num_workers=0, seed=3)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert batch["image"].shape == (8, 1, 64, 64) and batch["label"].max() < len(SITES)
    assert dm.class_names == SITE_CLASSES


def test_bundled_family_weights_accuracy_floor():
    """Fresh held-out tiles of every material (seed never used in training), in-range physics."""
    from stem2d.models.loading import bundled_classifier_path, load_classifier
    from stem2d.predict.classify import classify_tiles

    path = bundled_classifier_path("mx2")  # shipped in stem2d/weights: a missing file fails here
    model = load_classifier(path, expected_classes=SITE_CLASSES)
    bases = simulate_scenes(SITES, materials=["WS2", "MoS2", "WSe2", "MoSe2", "WSSe", "MoSSe_janus"],
                            n_per_class=3, split="test", seed=20_251_206)
    ds = RandomizedTileDataset(bases, n_samples=240, seed=20_251_206,
                               params=MX2DataModule(num_workers=0).params)
    tiles = np.stack([ds.sample(i).image for i in range(len(ds))]).astype(np.float32)
    labels = np.array([bases.label[ds.base_index(i)] for i in range(len(ds))])
    acc = (classify_tiles(model, tiles).labels == labels).mean()
    assert acc >= FAMILY_ACCURACY_FLOOR, acc


#: Floors of the one-material site models on fresh held-out tiles of their material, material given
#: (weight cards' held-out test accuracy: WS2 0.979, MoS2 0.922, WSe2 0.907, MoSe2 0.911; on these 160 tiles
#: 0.956 / 0.906 / 0.900 / 0.913, where the family model gets 0.963 / 0.900 / 0.763 / 0.719).
OWN_MODEL_FLOORS = {"WS2": 0.90, "MoS2": 0.80, "WSe2": 0.80, "MoSe2": 0.80}


@pytest.mark.parametrize("material", sorted(OWN_MODEL_FLOORS))
def test_bundled_one_material_site_models_accuracy_floor(material):
    """Each host's own site model (shipped: a missing file fails) on fresh in-range tiles of it."""
    from stem2d.classes import condition_on_material
    from stem2d.models.loading import bundled_site_classifier_path, load_classifier
    from stem2d.predict.classify import classify_tiles

    model = load_classifier(bundled_site_classifier_path(material), expected_classes=SITE_CLASSES)
    bases = simulate_scenes(SITES, materials=[material], n_per_class=3, split="test", seed=20_251_207,
                            skip_missing=True)
    ds = RandomizedTileDataset(bases, n_samples=160, seed=20_251_207, params=MX2DataModule(num_workers=0).params)
    tiles = np.stack([ds.sample(i).image for i in range(len(ds))]).astype(np.float32)
    labels = np.array([bases.label[ds.base_index(i)] for i in range(len(ds))])
    probs = condition_on_material(classify_tiles(model, tiles).probs, SITE_CLASSES, get_material(material))
    acc = (probs.argmax(axis=1) == labels).mean()
    assert acc >= OWN_MODEL_FLOORS[material], acc
