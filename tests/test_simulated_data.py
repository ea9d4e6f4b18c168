"""Simulated training data (stem2d.data.simulated): determinism, splits, batches, configs."""

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from stem2d.classes import ClassSet
from stem2d.data.simulated import (
    LazyTileBases,
    Neighbours,
    SimulatedDataModule,
    SimulatedTileDataset,
    make_split,
    simulate_bases,
)
from stem2d.data.splits import SPLITS
from stem2d.materials import get_material

CONF = Path(__file__).resolve().parents[1] / "conf"
WS2 = get_material("WS2")
DEFAULT = ClassSet.from_mapping(None)
SMALL = {"n_bases_per_class": 2, "n_val_bases_per_class": 1, "n_test_bases_per_class": 1,
         "n_train_samples": 40, "n_val_samples": 20, "n_test_samples": 20, "batch_size": 8,
         "num_workers": 0}


@pytest.fixture(scope="module")
def train_set() -> SimulatedTileDataset:
    return make_split(DEFAULT, split="train", seed=11, n_bases_per_class=2, n_samples=30, material=WS2)


def test_sample_is_a_pure_function_of_seed_split_index(train_set):
    again = make_split(DEFAULT, split="train", seed=11, n_bases_per_class=2, n_samples=30, material=WS2)
    for i in (0, 7, 29):
        a, b = train_set[i], again[i]
        for key in a:
            torch.testing.assert_close(a[key], b[key], equal_nan=True)
    assert not torch.equal(train_set[0]["image"], train_set[10]["image"])  # same base, other i
    other_seed = make_split(DEFAULT, split="train", seed=12, n_bases_per_class=2, n_samples=30,
                            material=WS2)
    assert not torch.equal(train_set[3]["image"], other_seed[3]["image"])
    assert len(train_set) == 30
    with pytest.raises(IndexError):
        train_set.sample(30)


def test_items_keep_the_label_of_their_base(train_set):
    bases = train_set.bases
    assert np.bincount(bases.label).tolist() == [2] * len(DEFAULT)
    for i in range(len(train_set)):
        item = train_set[i]
        b = train_set.base_index(i)
        assert item["label"].item() == bases.label[b]
        kind = bases.kind[b]
        assert kind in (DEFAULT.kinds_of(DEFAULT.names[bases.label[b]]) or (None,))
        assert torch.isnan(item["pos"]).all().item() == (kind is None)


def test_no_base_in_two_splits():
    sets = {s: simulate_bases(DEFAULT, material=WS2, n_per_class=2, split=s, seed=5, size_px=104)
            for s in SPLITS}
    ids = {s: set(b.entropy) for s, b in sets.items()}
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"] and not ids["val"] & ids["test"]
    flat = {s: b.clean.reshape(len(b), -1) for s, b in sets.items()}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        for x in flat[a]:
            assert not np.any(np.all(np.isclose(flat[b], x), axis=1))
    assert len({x.tobytes() for x in flat["train"]}) == len(flat["train"])  # each base its own seed


def test_datamodule_batches_contract():
    dm = SimulatedDataModule(seed=1, **SMALL)
    assert dm.class_names == DEFAULT.names
    assert dm.noise_modes == ("dose", "gaussian", "s&p", "poisson", "speckle")
    assert dm.tile_size_px == 64 and dm.pixel_size_A == 0.3
    dm.setup("fit")
    assert set(dm.datasets) == {"train", "val"}
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (8, 1, 64, 64) and batch["image"].dtype == torch.float32
    assert batch["label"].shape == (8,) and batch["label"].dtype == torch.int64
    assert batch["pos"].shape == (8, 2) and batch["pos"].dtype == torch.float32
    assert batch["noise"].dtype == torch.int64
    img = batch["image"].flatten(1)
    torch.testing.assert_close(img.median(dim=1).values, torch.zeros(8), atol=0.05, rtol=0)
    torch.testing.assert_close(img.std(dim=1, unbiased=False), torch.ones(8), atol=1e-3, rtol=0)
    assert ((batch["label"] >= 0) & (batch["label"] < len(DEFAULT))).all()
    assert ((batch["noise"] >= 0) & (batch["noise"] < 5)).all()
    pristine = batch["label"] == DEFAULT.index("pristine")
    assert torch.isnan(batch["pos"][pristine]).all()
    assert ((batch["pos"][~pristine] - 31.5).abs() < 4.0).all()
    assert len(dm.datasets["val"]) == 20 and len(dm.datasets["train"]) == 40
    dm.setup("test")
    assert len(dm.datasets["test"].bases) == len(DEFAULT)


def test_lazy_bases_equal_the_eager_ones_and_simulate_only_what_is_used():
    kw = {"material": WS2, "n_per_class": 3, "split": "val", "seed": 5, "size_px": 96,
          "neighbours": Neighbours(0.5, 4.0, 0.6)}
    eager, lazy = simulate_bases(DEFAULT, **kw), LazyTileBases(DEFAULT, **kw)
    assert len(lazy) == len(eager) and lazy.size_px == eager.size_px
    np.testing.assert_array_equal(lazy.label, eager.label)
    assert lazy.kind == eager.kind and lazy.entropy == eager.entropy
    for i in (7, 0, 14):
        np.testing.assert_array_equal(lazy.base(i)[0], eager.clean[i])
        np.testing.assert_array_equal(lazy.base(i)[1], eager.pos[i])
    assert sorted(lazy._cache) == [0, 7, 14]


def test_datamodule_simulates_bases_on_first_use():
    """A one-batch run (debug=fdr) must not simulate all training bases up front."""
    dm = SimulatedDataModule(seed=3, **{**SMALL, "n_bases_per_class": 50, "n_train_samples": 1000})
    dm.setup("fit")
    bases = dm.datasets["train"].bases
    assert len(bases) == 50 * len(DEFAULT) and not bases._cache
    next(iter(dm.train_dataloader()))
    assert 0 < len(bases._cache) <= SMALL["batch_size"]


def test_val_loader_is_identical_with_a_worker():
    dm0 = SimulatedDataModule(seed=2, **SMALL)
    dm1 = SimulatedDataModule(seed=2, **{**SMALL, "num_workers": 1, "persistent_workers": False})
    dm0.setup("validate")
    dm1.setup("validate")
    assert set(dm0.datasets) == {"val"}
    for a, b in zip(dm0.val_dataloader(), dm1.val_dataloader()):
        torch.testing.assert_close(a["image"], b["image"])


@pytest.mark.parametrize("key, value", [
    ("material", "XYZ2"), ("dose_range_e_per_A2", [-10.0, 100.0]), ("pixel_size_A", 0.0),
    ("tile_size_px", 8), ("base_size_px", 70), ("noise_modes", ["blur"]), ("n_train_samples", 0),
    ("probe_fwhm_range_A", [0.0, 1.0]), ("neighbour_density_per_nm2", -0.1),
    ("max_dopant_offset_A", -1.0),
])
def test_bad_config_names_the_key(key, value):
    with pytest.raises(ValueError, match=key):
        SimulatedDataModule(**{key: value})


def test_unknown_class_kind_names_the_class():
    with pytest.raises(ValueError, match="classes.odd"):
        SimulatedDataModule({"pristine": [], "odd": ["Xx_W"]})


@pytest.mark.parametrize("class_set", ["default", "seed_six"])
def test_hydra_config_composes(class_set):
    overrides = ["+data=simulated", f"+classes={class_set}", "+seed=4",
                 *(f"data.{k}={v}" for k, v in SMALL.items())]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(overrides=overrides)
    dm = instantiate(cfg.data)
    expected = ClassSet.from_mapping(cfg.classes)
    assert dm.class_names == expected.names and dm.seed == 4
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (8, 1, 64, 64)
    assert int(batch["label"].max()) < len(expected)


def test_neighbours_change_only_their_own_stream():
    """Neighbours come from a separate seed stream: with density 0 and no dopant offset the bases
    are those of the plain simulation; with neighbours every defect keeps its label and site."""
    kw = {"material": WS2, "n_per_class": 3, "split": "val", "seed": 5, "size_px": 96}
    plain = simulate_bases(DEFAULT, **kw)
    none = simulate_bases(DEFAULT, neighbours=Neighbours(0.0, 4.0, 0.0), **kw)
    crowded = simulate_bases(DEFAULT, neighbours=Neighbours(1.0, 4.0, 0.6), **kw)
    np.testing.assert_array_equal(plain.clean, none.clean)
    np.testing.assert_array_equal(plain.label, crowded.label)
    np.testing.assert_array_equal(plain.pos, crowded.pos)
    changed = np.abs(crowded.clean - plain.clean).max(axis=(1, 2)) > 0.1
    assert changed.mean() > 0.8          # ~8 neighbours per 8.3 nm^2 base at 1 per nm^2
    again = simulate_bases(DEFAULT, neighbours=Neighbours(1.0, 4.0, 0.6), **kw)
    np.testing.assert_array_equal(crowded.clean, again.clean)


def test_neighbour_draw_uses_defect_classes_only():
    draw = Neighbours(2.0, 5.0, 0.5).draw(DEFAULT, area_nm2=10.0, rng=1)
    pristine_free = {k for _, kinds in DEFAULT.kinds for k in kinds}
    assert draw["neighbours"] and set(draw["neighbours"]) <= pristine_free
    assert draw["min_neighbour_distance_A"] == 5.0 and 0.0 <= draw["dopant_offset_A"] <= 0.5
