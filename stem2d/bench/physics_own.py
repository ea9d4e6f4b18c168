"""Benchmark 6, told the material: one site model per host material beside the family model.

The family model is not told the material, and the two sublattices of a honeycomb look alike under
rotation: a MoSe2 Se2 site (brighter than Mo) reads like a WSe2 W site. A model trained on one host
(``experiment=material_cam_cnn``, ``stem2d/weights/cam_cnn_<material>_sites.ckpt``) does not face
that. Both models classify the same held-out tiles: in range, and pooled over the physics and the
processing shifts of section 6 (each shift set an equal share of the tiles).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from stem2d.bench.report import Table
from stem2d.models.loading import bundled_site_classifier_path, load_classifier

HOSTS = ("WS2", "MoS2", "WSe2", "MoSe2")


def _accuracy(r: dict, key: str) -> float:
    return float((r[key] == r["labels"]).mean())


def _worst(pred: np.ndarray, truth: np.ndarray, names: Sequence[str]) -> tuple[float, str]:
    """The lowest class recall among the classes present in ``truth``, and its class name."""
    ok = pred == truth
    recall = {names[c]: ok[truth == c].mean() for c in np.unique(truth)}
    worst = min(recall, key=recall.get)
    return float(recall[worst]), worst


def own_model_table(family, dm, *, n_tiles: int, n_bases: int, bf16: bool, render: Callable,
                    classify: Callable, shifts: Mapping[str, Sequence[dict]]) -> Table | None:
    """Per host material with bundled site weights: family vs own model on the same tiles (material given).

    ``render(dm, materials=, n_tiles=, n_bases=, **shift)`` gives (tiles, labels, materials);
    ``classify(model, tiles, labels, materials, names, bf16=)`` gives the prediction dict. None when
    no host ships its own model.
    """
    names = dm.class_names
    hosts = [m for m in HOSTS if bundled_site_classifier_path(m).is_file()]
    if not hosts:
        return None
    t = Table("**Told the material: one site model per host material** (`cam_cnn_<material>_sites.ckpt`, "
              "`experiment=material_cam_cnn`) beside the family model, both with the material given, on the "
              "same held-out tiles; shift rows pool every set of the tables above (equal shares).",
              ["material", "tiles", "n", "family model", "own model", "own: worst class recall", "worst class"])
    for m in hosts:
        own = load_classifier(bundled_site_classifier_path(m), expected_classes=names)
        groups = {"in range": [{}], **shifts}
        for group, kws in groups.items():
            per = max(1, n_tiles // len(kws))
            parts = [render(dm, materials=[m], n_tiles=per, n_bases=n_bases, **kw) for kw in kws]
            tiles = np.concatenate([p[0] for p in parts])
            labels = np.concatenate([p[1] for p in parts])
            mats = [x for p in parts for x in p[2]]
            fam = classify(family, tiles, labels, mats, names, bf16=bf16)
            mine = classify(own, tiles, labels, mats, names, bf16=bf16)
            t.add(m, group, len(labels), _accuracy(fam, "pred_given"), _accuracy(mine, "pred_given"),
                  *_worst(mine["pred_given"], mine["labels"], names))
    return t


def default_ws2_table(old, dm, *, n_tiles: int, n_bases: int, bf16: bool, render: Callable,
                      shifts: Mapping[str, Sequence[dict]]) -> Table | None:
    """The default WS2 classifier (five names, one image model) against the WS2 site model projected
    onto the same five names, on WS2 tiles whose class has a WS2 name. None without the WS2 site model."""
    from stem2d.classes import ClassSet, condition_on_material, projection_matrix
    from stem2d.materials import get_material
    from stem2d.predict.classify import classify_tiles

    path = bundled_site_classifier_path("WS2")
    if not path.is_file():
        return None
    ws2, names = get_material("WS2"), dm.class_names
    matrix, projected = projection_matrix(names, ClassSet.from_mapping(None), ws2)
    if tuple(old.class_names) != projected[:len(old.class_names)]:
        raise ValueError(f"{old.class_names} are not the default WS2 names {projected}")
    k = len(old.class_names)
    own = load_classifier(path, expected_classes=names)
    t = Table("**The default WS2 classifier on physics it never saw**: `cam_cnn_ws2.ckpt` (trained on one "
              "image model, the five WS2 names) and the WS2 site model projected onto the same names "
              "(`stem2d.classes.projection_matrix`, material given), on the WS2 tiles of the rows above "
              "whose class has a WS2 name (Se on S and adatoms left out).",
              ["tiles", "n", "default cam_cnn_ws2", "WS2 site model, projected", "default: worst class recall",
               "worst class"])
    for group, kws in {"in range": [{}], **shifts}.items():
        per = max(1, n_tiles // len(kws))
        parts = [render(dm, materials=["WS2"], n_tiles=per, n_bases=n_bases, **kw) for kw in kws]
        tiles = np.concatenate([p[0] for p in parts])
        truth = matrix[np.concatenate([p[1] for p in parts])].argmax(axis=1)
        keep = truth < k
        tiles, truth = tiles[keep], truth[keep]
        pred_old = classify_tiles(old, tiles, bf16=bf16).probs.argmax(axis=1)
        given = condition_on_material(classify_tiles(own, tiles, bf16=bf16).probs, names, ws2)
        pred_own = (given @ matrix)[:, :k].argmax(axis=1)
        t.add(group, len(truth), (pred_old == truth).mean(), (pred_own == truth).mean(),
              *_worst(pred_old, truth, old.class_names))
    return t
