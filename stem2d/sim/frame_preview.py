"""Preview of the U-Net's training crops: ``python -m stem2d.sim.frame_preview --out docs/unet_frames_preview.png``.

One column per material: a physics-randomised frame crop exactly as
:class:`~stem2d.data.randomized_frames.RandomizedFrameDataset` renders it for training (top,
with its processing type and acquisition pixel size) and its target mask over the noise-free crop
(bottom: a 1 A disk at every defect site; alloy composition carries none).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from stem2d.materials import MATERIALS  # noqa: E402

log = logging.getLogger(__name__)


def render_frame_preview(out: Path, *, seed: int = 0) -> Path:
    """Write the preview PNG (one crop per material, ``val`` split of ``seed``)."""
    from stem2d.data.randomized_frames import RandomizedFrameDataset

    names = list(MATERIALS)
    fig, axes = plt.subplots(2, len(names), figsize=(2.2 * len(names), 4.6), squeeze=False)
    for i, name in enumerate(names):
        ds = RandomizedFrameDataset(split="val", n_samples=1, seed=seed, materials=[name])
        frame, image, mask = ds.sample(0)
        axes[0, i].imshow(image, cmap="gray")
        axes[0, i].set_title(f"{name}\n{frame.processing}, {frame.pixel_size_A:.2f} A/px", fontsize=8)
        axes[1, i].imshow(frame.clean, cmap="gray")
        axes[1, i].imshow(np.ma.masked_where(~mask, mask), cmap="autumn", alpha=0.6)
        axes[1, i].set_title(f"{len(frame.points)} defect sites", fontsize=8)
        for ax in axes[:, i]:
            ax.set_axis_off()
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=70)
    plt.close(fig)
    log.info("wrote %s", out)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("unet_frames_preview.png"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    render_frame_preview(args.out, seed=args.seed)


if __name__ == "__main__":
    main()
