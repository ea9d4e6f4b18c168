"""Preview of the physics ranges: ``python -m stem2d.sim.physics_preview --out docs/physics_preview.png``.

Row by row: each physics range of :class:`~stem2d.sim.physics.PhysicsRanges` at its two ends
(everything else at the middle of its range) on noise-free WS2 tiles of two defects (one S
missing, Mo on W; red circle: the site), then every processing type on one noisy tile, then
the eight materials (pristine, noise-free, middle physics).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import fields, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from stem2d.materials import MATERIALS, get_material  # noqa: E402
from stem2d.sim.augment import AugmentParams, random_acquisition  # noqa: E402
from stem2d.sim.imaging import acquire  # noqa: E402
from stem2d.sim.physics import ImagePhysics, PhysicsRanges  # noqa: E402
from stem2d.sim.processing import PROCESSING_TYPES, ProcessingRanges, process  # noqa: E402
from stem2d.sim.randomized import render_clean  # noqa: E402
from stem2d.sim.scene import build_scene  # noqa: E402

log = logging.getLogger(__name__)
_SHOWN = ("z_exponent", "second_atom_factor", "probe_fwhm_A", "astigmatism", "ring_fraction",
          "tail_fraction", "detector_gamma")
_GEOMETRY = {"matrix": np.eye(2), "shift_px": np.zeros(2), "pixel_size_A": 0.3, "tile_size_px": 64}


def middle_physics(ranges: PhysicsRanges) -> ImagePhysics:
    """Every physics value at the middle of its range (species factors 1)."""
    mid = {f.name: float(np.mean(getattr(ranges, f.name))) for f in fields(ranges)
           if f.name in {g.name for g in fields(ImagePhysics)}}
    return ImagePhysics(**mid)


def _show(ax, image, title, site=True):
    ax.imshow(image, cmap="gray", interpolation="nearest")
    if site:
        ax.plot(31.5, 31.5, "o", ms=12, mfc="none", mec="red", mew=1.0)
    ax.set_title(title, fontsize=6)
    ax.set_xticks([])
    ax.set_yticks([])


def render_physics_preview(out: Path, *, ranges: PhysicsRanges = PhysicsRanges(),
                           processing: ProcessingRanges = ProcessingRanges(), seed: int = 0) -> Path:
    """Write the preview PNG to ``out``; returns ``out``."""
    ws2 = get_material("WS2")
    scenes = {k: build_scene(k, material=ws2, radius_A=23.0, rng=seed, max_offset_A=0.0)
              for k in ("V_X", "Mlight_M")}
    mid = middle_physics(ranges)
    n_rows = len(_SHOWN) + 2
    fig, axes = plt.subplots(n_rows, 8, figsize=(12, 1.6 * n_rows))
    for r, name in enumerate(_SHOWN):
        for e, value in enumerate(getattr(ranges, name)):
            physics = replace(mid, **{name: value})
            for k, (kind, scene) in enumerate(scenes.items()):
                _show(axes[r, 2 * e + k], render_clean(scene, physics, **_GEOMETRY),
                      f"{name}={value:g}\n{kind}")
        for c in range(4, 8):
            axes[r, c].axis("off")
    rng = np.random.default_rng(seed)
    clean = render_clean(scenes["V_X"], mid, **_GEOMETRY)
    counts = acquire(clean, pixel_size_A=0.3, acq=random_acquisition(rng, params=AugmentParams(
        dose_range_e_per_A2=(5e4, 5e4))), rng=rng).astype(np.float64)
    flat = replace(processing, quantize_probability=0.0, clip_probability=0.0)
    for c, kind in enumerate(PROCESSING_TYPES):
        image, _ = process(counts, ranges=flat, pixel_size_A=0.3, rng=seed, kind=kind)
        _show(axes[-2, c], image, f"processing: {kind}\nV_X, 5e4 e/A^2")
    image, _ = process(counts, ranges=replace(flat, quantize_probability=1.0, clip_probability=1.0),
                       pixel_size_A=0.3, rng=seed, kind="none")
    _show(axes[-2, 5], image, "8-bit + clipped")
    for c in (6, 7):
        axes[-2, c].axis("off")
    for c, name in enumerate(MATERIALS):
        scene = build_scene(None, material=get_material(name), radius_A=23.0, rng=seed, site="M")
        x = f" x={scene.second_fraction:.2f}" if get_material(name).mixed else ""
        _show(axes[-1, c], render_clean(scene, mid, **_GEOMETRY), f"{name}{x}", site=False)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    log.info("wrote %s", out)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("physics_preview.png"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    render_physics_preview(args.out, seed=args.seed)


if __name__ == "__main__":
    main()
