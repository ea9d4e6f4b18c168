"""Tests of stem2d.evolution.plots: every figure draws real data, empty data gives a 'no data' figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from stem2d.evolution import analysis, evolve, plots


def _texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


@pytest.fixture(scope="module")
def result():
    """Two hopping vacancies and one switching dopant over 8 frames."""
    gen = np.random.default_rng(0)
    rows = []
    for t in range(8):
        rows.append((t, 20.0 + 3 * t, 30.0, "s_vacancy"))
        rows.append((t, 60.0, 20.0 + 2 * t + gen.normal(0, 0.2), "s_vacancy"))
        rows.append((t, 40.0, 70.0, "mo_a" if t % 3 else "mo_b"))
    det = pd.DataFrame(rows, columns=["frame", "row", "col", "class"]).assign(score=0.9)
    return evolve(det, pixel_size_A=0.3, frame_shape=(96, 96), dose_per_frame=500.0, n_boot=20,
                  classes=("s_vacancy", "mo_a", "mo_b"))


def test_figures_draw_the_data(result):
    figs = result.figures()
    assert set(figs) == {"counts", "broom", "occupancy", "transitions", "msd"}
    assert all(isinstance(f, Figure) and f.axes for f in figs.values())
    assert not any("no data" in t for f in figs.values() for t in _texts(f))
    assert len(figs["counts"].axes) == 2  # vs frame and vs accumulated dose
    counts = result.transitions["counts"]
    annotated = _texts(figs["transitions"])
    assert f"({counts.loc['mo_a', 'mo_a']})" in " ".join(annotated)
    msd_ax = figs["msd"].axes[0]
    fit = [line for line in msd_ax.lines if line.get_label().startswith("fit")][0]
    t, y = fit.get_data()
    d, c = result.diffusion["D_A2_per_frame"], result.diffusion["intercept_A2"]
    np.testing.assert_allclose(y, 4 * d * np.asarray(t) + c)
    # the occupancy density (per nm^2, mean over frames) integrates to the mean count per frame
    occupancy = figs["occupancy"].axes[0].images[0].get_array()
    nm_per_px = result.pixel_size_A / 10
    n_svac = (result.tracks["class"] == "s_vacancy").sum()
    assert occupancy.sum() * nm_per_px**2 * result.n_frames == pytest.approx(n_svac, rel=1e-6)
    assert figs["occupancy"].axes[0].get_xlabel() == "x (nm)"


def test_axes_use_whole_frames_and_class_colours(result):
    from stem2d.viz.style import class_style

    figs = result.figures()
    ax = figs["counts"].axes[0]
    assert all(float(t).is_integer() for t in ax.get_xticks())
    line = [ln for ln in ax.lines if ln.get_label() == "s_vacancy"][0]
    assert line.get_color() == class_style("s_vacancy").rgb01
    assert line.get_marker() == class_style("s_vacancy").mpl_marker


def test_save_all_can_skip_a_figure(result, tmp_path):
    paths = plots.save_all(result, tmp_path, skip=("counts",))
    assert "counts" not in paths and not (tmp_path / "evolution_counts.png").exists()


def test_empty_inputs_give_no_data_figures():
    empty = pd.DataFrame({c: [] for c in ["track", "frame", "row", "col", "class", "score"]})
    figs = [
        plots.plot_counts(analysis.counts_per_frame(empty, n_frames=3, frame_area_nm2=1.0)),
        plots.plot_broom(empty, frame_shape=(32, 32)),
        plots.plot_occupancy(empty, frame_shape=(32, 32)),
        plots.plot_transitions(analysis.transitions(empty)),
        plots.plot_msd(analysis.diffusion(empty, pixel_size_A=0.3)),
    ]
    for fig in figs:
        assert any(t.startswith("no data") for t in _texts(fig))


def test_save_all_writes_pngs(result, tmp_path):
    paths = plots.save_all(result, tmp_path / "figs")
    assert len(paths) == 5
    for path in paths.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in (tmp_path / "figs").iterdir() if p.name.startswith(".")]
