"""Prediction never imports Lightning (issue #16: ``python infer.py`` starts in about the time
``import torch`` takes); the plain loaders give the training modules' outputs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch

from stem2d.models.loading import load_classifier, load_pixel_predictor, load_unet, weights_dir

_SCRIPT = """
import sys
import numpy as np
import stem2d.pipeline.infer, stem2d.pipeline.tiles  # the infer.py entry's modules
from stem2d.models.loading import load_classifier, load_unet
from stem2d.predict.classify import classify_tiles
from stem2d.predict.detectors import build_detector
model = load_classifier()
classify_tiles(model, np.random.default_rng(0).poisson(50.0, (2, 64, 64)).astype(np.float32))
load_unet()
build_detector("unet", material="WS2")
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("lightning", "pytorch_lightning", "torchmetrics", "trackpy"))
print(repr(heavy))
"""


def test_loading_and_classifying_import_no_lightning():
    out = subprocess.run([sys.executable, "-c", _SCRIPT], check=True, capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr


def test_plain_modules_match_the_lightning_modules():
    from stem2d.models.classifier import CamClassifier
    from stem2d.models.nets import build_net
    from stem2d.models.unet import for_inference

    path = weights_dir() / "cam_cnn_ws2.ckpt"
    ckpt = torch.load(path, weights_only=True)
    hp = ckpt["hyper_parameters"]
    lit = CamClassifier(build_net(ckpt["stem2d"]["net"]), class_names=hp["class_names"],
                        noise_modes=hp["noise_modes"], channels_last=hp["channels_last"])
    lit.load_state_dict(ckpt["state_dict"])
    plain = load_classifier(path)
    assert plain.class_names == lit.class_names and plain.hparams.tile_size_px == 64
    assert plain.state_dict().keys() == lit.state_dict().keys()
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(4, 1, 64, 64)).astype(np.float32))
    with torch.inference_mode():
        for a, b in zip(plain.eval().forward_with_cam(x), lit.eval().forward_with_cam(x)):
            assert torch.equal(a, b)
        unet_path = weights_dir() / "unet_ws2.ckpt"
        ref = for_inference(load_pixel_predictor(unet_path).net.eval())
        y = torch.from_numpy(np.random.default_rng(2).normal(size=(1, 1, 64, 64)).astype(np.float32))
        assert torch.equal(load_unet(unet_path)(y), ref(y))
