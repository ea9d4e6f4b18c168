"""experiment=adapt: pseudo-label rules, the ignore mask in the loss, the pretrained net, a smoke run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import open_dict

from stem2d import MASK_IGNORE
from stem2d.data.pseudo import IGNORE, PseudoLabels, merge_candidates, pseudo_labels, pseudo_mask
from stem2d.models.pixel import PixelPredictor, pretrained_unet
from stem2d.models.unet import UNet
from stem2d.pipeline.utils import compose_job

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_merge_counts_distinct_detectors():
    sites, seen = merge_candidates({"a": np.array([[0.0, 0.0], [0.5, 0.0]]), "b": np.zeros((0, 2)),
                                    "c": np.array([[20.0, 20.0]])}, merge_dist_px=2.0)
    assert sites.tolist() == [[0.25, 0.0], [20.0, 20.0]]
    assert seen.tolist() == [[True, False, False], [False, False, True]]  # two points of one detector: one vote
    assert merge_candidates({}, merge_dist_px=1.0)[0].shape == (0, 2)


def test_pseudo_label_rules():
    cands = {"unet": np.array([[10.0, 10.0], [30.0, 30.0], [50.0, 50.0], [70.0, 70.0], [110.0, 110.0]]),
             "lattice": np.array([[10.5, 10.0], [50.5, 50.0]]), "columns": np.array([[90.0, 90.0], [130.0, 130.0]])}
    prob = {10: 0.99, 30: 0.02, 50: 0.6, 70: 0.5, 90: 0.99, 110: 0.99, 130: 0.01}  # P(defect) by site row

    def p_defect(sites):
        return np.array([prob[int(round(r / 10) * 10)] for r, _ in sites])

    lab = pseudo_labels(cands, p_defect, merge_dist_px=2.0, min_sources=2, p_confident=0.9)
    # two detectors + a confident classifier; an odd column + a confident classifier
    assert lab.positive.round().tolist() == [[10.0, 10.0], [90.0, 90.0]]
    assert lab.negative.tolist() == [[30.0, 30.0]]  # one detector, classifier sure it is pristine
    # agreement without confidence, no confidence, one U-Net call however confident, a column the classifier rejects
    assert sorted(lab.uncertain[:, 0].round().tolist()) == [50.0, 70.0, 110.0, 130.0]
    strict = pseudo_labels(cands, p_defect, merge_dist_px=2.0, sufficient=(), p_confident=0.9)
    assert strict.positive.round().tolist() == [[10.0, 10.0]]
    assert lab.counts()["from_unet"] == 5
    with pytest.raises(ValueError, match="p_confident"):
        pseudo_labels(cands, p_defect, merge_dist_px=2.0, p_confident=0.3)


def test_pseudo_mask_values():
    lab = PseudoLabels(np.array([[8.0, 8.0]]), np.array([[20.0, 20.0]]), np.array([[8.0, 11.0]]))
    mask = pseudo_mask((32, 32), lab, radius_px=2.0, ignore_radius_px=3.0)
    assert IGNORE == MASK_IGNORE and mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1, IGNORE}
    assert mask[8, 8] == 1 and mask[8, 10] == 1      # the positive disk is not overwritten by the ignored one
    assert mask[8, 12] == IGNORE and mask[20, 20] == 0  # negatives are background


def test_ignored_pixels_carry_no_loss_or_metric():
    torch.manual_seed(0)
    model = PixelPredictor(UNet(channels=(4, 8)), loss="bce+dice+focal", pos_weight=3.0)
    x = torch.randn(2, 1, 32, 32)
    y = (torch.rand(2, 1, 32, 32) > 0.9).float()
    with torch.no_grad():
        logits = model(x)
        plain = model.loss(logits, y)
        assert torch.allclose(model.loss(logits, y, torch.ones_like(y)), plain)
        valid = torch.ones_like(y)
        valid[:, :, :8] = 0
        a = model.loss(logits, y * valid, valid)
        b = model.loss(logits, torch.where(valid > 0, y, 1 - y) * valid, valid)  # change only ignored labels
        assert torch.allclose(a, b)
    batch = {"image": x, "mask": torch.where(valid > 0, y, torch.full_like(y, MASK_IGNORE))}
    model._step(batch, "val")  # the 255s must not reach the binary metrics
    assert 0.0 <= float(model.val_metrics.compute()["f1"]) <= 1.0


def test_pretrained_unet_checks_the_config():
    net = pretrained_unet(channels=[8, 16, 32], convs_per_block=2, num_classes=2)
    assert net.training and sum(p.numel() for p in net.parameters()) > 1000
    with pytest.raises(ValueError, match="channels"):
        pretrained_unet(channels=[16, 32, 64])


@pytest.mark.slow
def test_adapt_fast_dev_run_writes_before_and_after(tmp_path):  # ~15 s: pseudo-labels + one step
    from stem2d.pipeline.train import train

    cfg = compose_job("train", [
        "experiment=adapt", "debug=fdr",
        "data.synthetic={frame_shape: [192, 192], pixel_size_A: 0.3, n_frames: 1}",
        "data.tile_size=64", "data.val_fraction=0.35", "data.test_label_method=truth"], run_dir=tmp_path, conf_dir=CONF)
    with open_dict(cfg):
        cfg.paths.log_dir = str(tmp_path)
    train(cfg)
    report = json.loads((tmp_path / "adapt.json").read_text())
    for when in ("before", "after"):
        assert set(report[when]) >= {"pseudo", "truth", "classifier_agreement", "n_detections"}
    assert report["frames"][0]["heldout_rows_canonical"][1] == 192
