"""Preview of the simulated training data: ``python -m stem2d.sim.preview --out preview.png``.

One row per class: a few clean base tiles (centre 64 x 64 crop), then one augmented sample per
noise mode, each with a red circle at the true defect position.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from stem2d.classes import ClassSet  # noqa: E402
from stem2d.data.simulated import SimulatedTileDataset, simulate_bases  # noqa: E402
from stem2d.materials import get_material  # noqa: E402
from stem2d.models.preprocess import standardize_tiles  # noqa: E402
from stem2d.sim.augment import AugmentParams  # noqa: E402

log = logging.getLogger(__name__)


def _show(ax, image: np.ndarray, pos: np.ndarray, title: str) -> None:
    ax.imshow(standardize_tiles(image), cmap="gray", interpolation="nearest")
    if np.all(np.isfinite(pos)):
        ax.plot(pos[1], pos[0], "o", ms=14, mfc="none", mec="red", mew=1.2)
    ax.set_title(title, fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])


def render_preview(
    out: Path, *, seed: int = 0, classes: ClassSet | None = None, material: str = "WS2",
    n_bases: int = 3, params: AugmentParams = AugmentParams(),
) -> Path:
    """Write the preview PNG to ``out`` and return its path.

    Parameters
    ----------
    out : Path
        PNG file to write (parent folders are created).
    seed : int, keyword-only
        Seed of the training stream (the preview shows training bases and samples).
    classes : ClassSet or None
        Class set (None: the default WS2 classes).
    material : str
    n_bases : int
        Base tiles shown per class.
    params : AugmentParams
    """
    classes = classes or ClassSet.from_mapping(None)
    mat = get_material(material)
    bases = simulate_bases(classes, material=mat, n_per_class=n_bases, split="train", seed=seed,
                           pixel_size_A=params.pixel_size_A)
    data = SimulatedTileDataset(bases, n_samples=len(bases) * len(params.noise_modes), seed=seed,
                                params=params)
    n_cols = n_bases + len(params.noise_modes)
    fig, axes = plt.subplots(len(classes), n_cols, figsize=(1.45 * n_cols, 1.6 * len(classes)),
                             squeeze=False)
    size, tile = bases.clean.shape[-1], params.tile_size_px
    lo = (size - tile) // 2
    for c, name in enumerate(classes.names):
        for j in range(n_bases):
            b = c * n_bases + j
            _show(axes[c, j], bases.clean[b, lo:lo + tile, lo:lo + tile], bases.pos[b] - lo,
                  f"base {bases.kind[b] or 'pristine'}")
        for k, mode in enumerate(params.noise_modes):
            index = k * len(bases) + c * n_bases + k % n_bases  # sample made from a base of class c
            s = data.sample(index, noise=k)
            _show(axes[c, n_bases + k], s.image, s.pos, f"{mode}")
        axes[c, 0].set_ylabel(name, fontsize=9)
    fig.suptitle(f"{mat.name} simulated tiles, seed {seed} (red: true defect site)", fontsize=9)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    log.info("wrote %s", out)
    return out


def main(argv: Sequence[str] | None = None) -> Path:
    """Command line: ``python -m stem2d.sim.preview [--out PNG] [--seed N] [--material WS2]``."""
    parser = argparse.ArgumentParser(prog="python -m stem2d.sim.preview", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("preview.png"), help="PNG to write")
    parser.add_argument("--seed", type=int, default=0, help="seed of the training stream")
    parser.add_argument("--material", default="WS2", help="host monolayer, e.g. WS2, MoS2")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return render_preview(args.out, seed=args.seed, material=args.material)


if __name__ == "__main__":
    main()
