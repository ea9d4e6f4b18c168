"""Invariants of the CAM networks: shapes, CAM = sum_k w[c,k] A_k, logits = mean(CAM) + bias."""

import pytest
import torch

from stem2d.models.nets import CamNet, SeedCNN, build_net, centre_weights

NETS = [
    pytest.param(lambda: CamNet(5), (16, 16), id="CamNet"),
    pytest.param(lambda: CamNet(3, channels=(8, 16, 32, 64), convs_per_block=1), (8, 8), id="CamNet-4blocks"),
    pytest.param(lambda: SeedCNN(5), (8, 8), id="SeedCNN"),
]


@pytest.fixture
def x():
    return torch.randn(4, 1, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(("make", "feat_hw"), NETS)
def test_shapes(make, feat_hw, x):
    net = make().eval()
    n_classes = net.head.out_features
    assert net(x).shape == (4, n_classes)
    assert net.features(x).shape[-2:] == feat_hw
    assert net.cam(x).shape == (4, 64, 64)
    assert net.cam(x, upsample=False).shape == (4, *feat_hw)
    assert net.cam(x).dtype == torch.float32


@pytest.mark.parametrize(("make", "feat_hw"), NETS)
def test_cam_is_weighted_sum_of_feature_maps(make, feat_hw, x):
    net = make().eval()
    with torch.no_grad():
        feats = net.features(x)
        logits = net(x)
        for c in range(net.head.out_features):
            expected = torch.einsum("k,bkhw->bhw", net.head.weight[c], feats)
            cam = net.cam(x, c, upsample=False)
            torch.testing.assert_close(cam, expected, rtol=1e-5, atol=1e-5)
            # GAP is linear: the mean of the CAM plus the bias is the logit.
            torch.testing.assert_close(cam.mean(dim=(1, 2)) + net.head.bias[c], logits[:, c], rtol=1e-4, atol=1e-4)


def test_default_class_is_the_prediction(x):
    net = CamNet(5).eval()
    with torch.no_grad():
        logits, cam = net.forward_with_cam(x)
        pred = logits.argmax(1)
        per_class = torch.stack([net.cam(x, int(p))[i] for i, p in enumerate(pred)])
        torch.testing.assert_close(cam, per_class)
        torch.testing.assert_close(net.cam(x, pred), per_class)


@pytest.mark.parametrize("make", [lambda: CamNet(4, channels=(8, 16)), lambda: SeedCNN(4, kernel_size=5)])
def test_spec_rebuilds_the_same_network(make, x):
    net = make().eval()
    twin = build_net(net.spec()).eval()
    twin.load_state_dict(net.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(twin(x), net(x))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="num_classes=1"):
        CamNet(1)
    with pytest.raises(ValueError, match="channels"):
        SeedCNN(3, channels=())
    with pytest.raises(ValueError, match="'Unet'"):
        build_net({"name": "Unet", "num_classes": 3})


def test_gradients_reach_every_parameter(x):
    net = CamNet(3, dropout=0.2)
    net(x).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_centre_pooled_logit_is_the_weighted_cam(x):
    """With Gaussian pooling, logit_c = sum_xy g(x, y) CAM_c(x, y) + b_c and g sums to 1."""
    net = CamNet(4, pool_sigma_px=8.0).eval()
    g = centre_weights((16, 16), 2.0)
    assert float(g.sum()) == pytest.approx(1.0)
    assert g[7:9, 7:9].min() == g.max() and g[0, 0] < 1e-3 * g.max()
    with torch.no_grad():
        logits = net(x)
        for c in range(4):
            cam = net.cam(x, c, upsample=False)
            torch.testing.assert_close((cam * g).sum(dim=(1, 2)) + net.head.bias[c], logits[:, c],
                                       rtol=1e-4, atol=1e-4)
    twin = build_net(net.spec()).eval()
    twin.load_state_dict(net.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(twin(x), logits)


def test_centre_pooling_ignores_a_change_at_the_border(x):
    """A change in a tile corner moves a GAP logit much more than a centre-pooled one."""
    torch.manual_seed(0)
    gap = CamNet(3).eval()
    centred = CamNet(3, pool_sigma_px=6.0).eval()
    centred.load_state_dict(gap.state_dict())
    y = x.clone()
    y[:, :, :12, :12] += 5.0
    with torch.no_grad():
        d_gap = (gap(y) - gap(x)).abs().max()
        d_centred = (centred(y) - centred(x)).abs().max()
    assert d_centred < 0.01 * d_gap


def test_pool_sigma_must_be_positive():
    with pytest.raises(ValueError, match="pool_sigma_px=0"):
        CamNet(3, pool_sigma_px=0)


def test_training_after_inference_in_one_process():
    """The cached pooling weights made under inference_mode (classify) must not break training later."""
    centre_weights.cache_clear()
    net = CamNet(num_classes=3, pool_sigma_px=4.0)
    x = torch.randn(2, 1, 64, 64)
    with torch.inference_mode():
        net(x)
    loss = net(x).sum()
    loss.backward()
    assert all(p.grad is not None for p in net.head.parameters())
