
import numpy as np
import pytest

from stem2d.predict.overlay import OverlayRenderer, insert_cams, render_overlay, to_uint8_gray
from stem2d.viz import draw as vdraw
from stem2d.viz.style import REGION_COLOURS, class_style

NAMES = ["pristine", "mo_dopant", "s_vacancy", "w_vacancy", "w_dopant"]


def test_insert_cams_places_peak_at_position():
    cam = np.zeros((64, 64), dtype=np.float32)
    cam[32, 32] = 1.0
    heat = insert_cams((200, 300), np.array([[50.0, 120.0]]), cam[None])
    assert heat.shape == (200, 300) and heat.dtype == np.float32
    assert np.unravel_index(heat.argmax(), heat.shape) == (50, 120)
    assert heat.max() <= 1.0 and heat.min() >= 0.0


def test_insert_cams_overlap_blends_and_clips_at_border():
    cams = np.ones((2, 64, 64), dtype=np.float32)
    heat = insert_cams((100, 100), np.array([[10.0, 10.0], [20.0, 20.0]]), cams)
    # constant CAMs blend to a constant where windows carry full weight
    assert heat[15, 15] == np.float32(1.0) or abs(heat[15, 15] - 1.0) < 1e-6
    assert heat[99, 99] == 0.0
    assert np.all(insert_cams((10, 10), np.zeros((0, 2)), np.zeros((0, 64, 64))) == 0)


def _frame(size=128):
    return np.random.default_rng(0).poisson(50, size=(size, size)).astype(np.float32)


def test_overlay_is_the_frame_over_a_footer_with_class_markers():
    frame = _frame()
    out = render_overlay(frame, np.zeros_like(frame), np.array([[64.0, 64.0]]), [1], NAMES, pixel_size_A=0.25)
    assert out.dtype == np.uint8 and out.shape[1:] == (128, 3) and out.shape[0] > 128
    radius = 2.4 / 0.25  # markers are 2.4 A in radius
    ring = [tuple(px) for px in out[64, 64 + int(radius) - 2: 64 + int(radius) + 2]]
    assert class_style("mo_dopant").rgb in ring
    gray = to_uint8_gray(frame)
    top = out[:128]
    far = np.ones((128, 128), bool)
    far[40:90, 40:90] = False
    assert np.array_equal(top[far], np.repeat(gray[far][:, None], 3, axis=1))  # data untouched off the marker
    none = render_overlay(frame, np.zeros_like(frame), np.array([[64.0, 64.0]]), [0], NAMES)
    assert np.array_equal(none[:128, :, 0], none[:128, :, 1])  # pristine is not drawn


def test_heat_is_translucent_and_only_above_the_floor():
    frame = _frame()
    heat = np.zeros_like(frame)
    heat[:, 64:] = 1.0
    heat[:, 32:64] = 0.2  # below the 0.3 floor
    out = OverlayRenderer(NAMES).render(frame, heat, np.zeros((0, 2)), [])[:128]
    gray = to_uint8_gray(frame).astype(float)
    assert np.array_equal(out[:, :64, 0], out[:, :64, 2])  # not tinted
    tinted = out[:, 64:].astype(float)
    assert not np.array_equal(tinted[..., 0], tinted[..., 2])
    # at most 40 % colour: the lattice contrast survives (each channel follows the grey level)
    for ch in range(3):
        assert np.corrcoef(tinted[..., ch].ravel(), gray[:, 64:].ravel())[0, 1] > 0.95


def test_region_outlines_and_legend_entries():
    frame = _frame()
    hole = np.zeros(frame.shape, bool)
    hole[20:60, 20:60] = True
    r = OverlayRenderer(NAMES, pixel_size_A=0.25, n_frames=10, dose_per_frame=1e4, region_names=["hole"])
    out = r.render(frame, None, np.zeros((0, 2)), [], index=3, regions={"hole": hole})
    edge = [tuple(px) == REGION_COLOURS["hole"] for px in out[20, 20:60]]
    assert 10 < sum(edge) < 35  # a dashed outline
    assert tuple(out[40, 40]) != REGION_COLOURS["hole"]
    plain = r.render(frame, None, np.zeros((0, 2)), [], index=3)
    assert out.shape == plain.shape  # every frame of a movie has the same size
    without = OverlayRenderer(NAMES, pixel_size_A=0.25).render(frame, None, np.zeros((0, 2)), [])
    assert out.shape[0] > without.shape[0]  # a legend row for the region


def test_points_by_class_name_include_unconfirmed_calls():
    frame = _frame()
    r = OverlayRenderer(NAMES, extra_classes=["unknown"])
    out = r.render(frame, None, np.array([[64.0, 64.0], [30.0, 30.0]]), ["unknown", "pristine"])
    assert (out[:128] == class_style("unknown").rgb).all(axis=2).sum() > 10


def test_footer_is_cached_and_texts_are_readable():
    styles = tuple(class_style(n) for n in NAMES[1:])
    a = vdraw.footer(512, styles, (), 0.2, 0.3, "CAM")
    assert vdraw.footer(512, styles, (), 0.2, 0.3, "CAM") is a
    assert a.font_px >= 18  # 13 px or more in the 480 px GIF
    assert vdraw.frame_text(7, n_frames=20, dose_per_frame=5e4) == "frame 7 (of 20) · 4.0·10⁵ e/Å²"
    assert vdraw.nice_length_nm(512, 0.2) == 2.0 and vdraw.nice_length_nm(512, 0.05) == 0.5


@pytest.mark.parametrize("marker_class", ["s_vacancy", "w_dopant", "unknown", "adatom"])
def test_every_marker_shape_draws(marker_class):
    frame = _frame()
    out = render_overlay(frame, None, np.array([[64.0, 64.0]]), [1], ["pristine", marker_class])
    assert (out[:128] == class_style(marker_class).rgb).all(axis=2).sum() > 10


def test_markers_drawn_on_a_crop_equal_those_drawn_on_the_frame():
    """draw_marker_on draws polygon markers on a local crop (Pillow's wide polygon outline masks the
    whole image otherwise): the same pixels, inside the frame and at its edges, but for a rare edge
    pixel of a star (Pillow rounds a shifted self-crossing polygon's edge differently: 5 of 2000
    random stars, at most 0.5 % of their pixels)."""
    from PIL import Image, ImageDraw

    from stem2d.viz import draw as vdraw
    from stem2d.viz.style import class_style

    rng = np.random.default_rng(0)
    for name in ("mo_dopant", "s_vacancy", "w_dopant", "unknown", "adatom"):
        style = class_style(name)
        for _ in range(60):
            base = rng.integers(0, 255, (160, 140, 3), dtype=np.uint8)
            full, crop = Image.fromarray(base.copy()), Image.fromarray(base.copy())
            xy, radius = (float(rng.uniform(-10, 150)), float(rng.uniform(-10, 170))), float(rng.uniform(5, 24))
            vdraw.draw_marker(ImageDraw.Draw(full), xy, style, radius)
            vdraw.draw_marker_on(crop, ImageDraw.Draw(crop), xy, style, radius)
            a, b = np.asarray(full), np.asarray(crop)
            differ = np.any(a != b, axis=2).sum()
            drawn = np.any(a != base, axis=2).sum()
            assert differ == 0 if style.marker != "star" else differ <= 0.01 * max(drawn, 1), (name, xy, radius)


def test_dash_stripes_are_the_diagonal_pattern():
    from stem2d.viz.draw import _stripes, dashed

    for shape, period in (((7, 11), 8), ((16, 5), 3), ((1, 9), 1)):
        rows, cols = np.indices(shape)
        expected = ((rows + cols) // max(1, period // 2)) % 2 == 0
        assert np.array_equal(_stripes(shape, period), expected)
        mask = np.random.default_rng(0).random(shape) < 0.5
        assert np.array_equal(dashed(mask, period), mask & expected)
