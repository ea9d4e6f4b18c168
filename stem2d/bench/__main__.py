"""``python -m stem2d.bench``: measure stem2d and write docs/results.md with its PNGs.

    python -m stem2d.bench                          # full benchmark (about 15-25 min on 2 CPU cores)
    python -m stem2d.bench --quick --out /tmp/b     # tiny smoke run (seconds)
    python -m stem2d.bench --sections classifier speed --seed 7
    python -m stem2d.bench --classifier-ckpt run/checkpoints/last.ckpt --unet-ckpt unet.ckpt
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from stem2d.bench import SECTIONS, Checkpoints, full_config, quick_config, run_benchmark
from stem2d.bench.config import DEFAULT_SEED


def _parser() -> argparse.ArgumentParser:
    defaults = Checkpoints()
    p = argparse.ArgumentParser(prog="python -m stem2d.bench", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("docs"), help="folder for results.md and the PNGs")
    p.add_argument("--quick", action="store_true", help="tiny settings (smoke test, seconds)")
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), metavar="SECTION",
                   help=f"sections to run, of {', '.join(SECTIONS)}")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of every simulated tile and movie")
    p.add_argument("--classifier-ckpt", type=Path, default=defaults.cam_cnn, help="CAM classifier (cam_cnn)")
    p.add_argument("--seed-cnn-ckpt", type=Path, default=defaults.seed_cnn, help="original-study network")
    p.add_argument("--unet-ckpt", type=Path, default=defaults.unet, help="U-Net pixel predictor")
    p.add_argument("--unet-mx2-ckpt", type=Path, default=defaults.unet_mx2,
                   help="physics-randomised MX2 U-Net (section physics_frames, beside --unet-ckpt)")
    p.add_argument("--conf", type=Path, default=None,
                   help="Hydra conf/ folder (None: the conf/ of the source tree stem2d runs from)")
    p.add_argument("--work-dir", type=Path, default=None,
                   help="keep the pipeline run folders here (None: a temporary folder)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.seed < 0:
        raise SystemExit(f"--seed {args.seed}: must be >= 0")
    make = quick_config if args.quick else full_config
    cfg = make(seed=args.seed, conf_dir=args.conf)
    ckpts = Checkpoints(cam_cnn=args.classifier_ckpt, seed_cnn=args.seed_cnn_ckpt, unet=args.unet_ckpt,
                        unet_mx2=args.unet_mx2_ckpt)
    path = run_benchmark(cfg, out_dir=args.out, sections=args.sections, checkpoints=ckpts, work_dir=args.work_dir,
                         command=shlex.join(["python", "-m", "stem2d.bench", *argv]))
    logging.getLogger("stem2d.bench").info("results: %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
