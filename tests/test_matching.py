import numpy as np
import pandas as pd
import pytest

from stem2d.predict.scoring import match_points, score_detections


def test_match_points_hungarian_beats_greedy():
    # greedy nearest-first would pair pred 0 with truth 0 and leave pred 1 unmatched
    pred = np.array([[0.0, 1.0], [0.0, -0.2]])
    truth = np.array([[0.0, 0.0], [0.0, 2.0]])
    pi, ti = match_points(pred, truth, max_dist=1.1)
    assert sorted(zip(pi, ti)) == [(0, 1), (1, 0)]


def test_match_points_respects_max_dist_and_empty():
    pi, ti = match_points(np.array([[0, 0]]), np.array([[3, 0]]), max_dist=2.0)
    assert len(pi) == len(ti) == 0
    pi, ti = match_points(np.zeros((0, 2)), np.array([[3, 0]]), max_dist=2.0)
    assert len(pi) == 0


def test_score_detections_counts():
    rng = np.random.default_rng(0)
    truth = pd.DataFrame({"frame": [0, 0, 1, 1], "row": [10.0, 50, 10, 50], "col": [10.0, 50, 10, 50],
                          "class": ["a", "b", "a", "b"]})
    pred = truth.copy()
    pred[["row", "col"]] += rng.normal(0, 0.2, size=(4, 2))
    pred.loc[3, "class"] = "a"  # one wrong class
    pred = pd.concat([pred, pd.DataFrame({"frame": [1], "row": [90.0], "col": [90.0], "class": ["a"]})])
    s = score_detections(pred, truth, max_dist_px=1.5)
    assert s["detection"]["tp"] == 4
    assert s["detection"]["precision"] == pytest.approx(4 / 5)
    assert s["detection"]["recall"] == 1.0
    assert s["class_accuracy"] == pytest.approx(3 / 4)
    assert s["per_class"]["b"]["recall"] == pytest.approx(1 / 2)
    assert s["per_class"]["a"]["precision"] == pytest.approx(2 / 4)
