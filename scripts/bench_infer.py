"""End-to-end speed of ``python infer.py`` (:func:`stem2d.pipeline.infer.run_movie`).

Usage::

    python scripts/bench_infer.py                                  # 20 frames, 512 x 512, 0.25 A/px, video on
    python scripts/bench_infer.py --frames 100 --pixel-size-A 0.166 --video off
    python scripts/bench_infer.py --source synthetic --threads 2 --json bench.json

The run goes through the same Hydra config as ``infer.py`` (``conf/infer.yaml`` composed with
overrides, as the tests do), so every default of the command line applies. By default
(``--source file``) the synthetic movie is first rendered to a float32 TIFF with its truth
(timed apart, cached in ``--cache``), and the pipeline then reads it like any movie: the
``read`` stage is file I/O. ``--source synthetic`` renders the frames lazily inside the run,
so ``read`` holds the simulator's rendering time (as in a bare ``python infer.py``).

Reported: seconds per frame of every stage that ``summary.json`` records (``timings_s``; the
``analyse/*`` sub-stages split the per-frame analysis), the pipeline's frames/s as
``summary.json`` defines it (per-frame stages, without set-up, the scoring baseline and the
post-movie work), the wall time of the whole ``run_movie`` call (everything, including model
loading, the baseline detector when truth exists, scoring and evolution), peak RSS of this
process and the load average before and after (the machine may be shared: compare runs only
under similar load).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench_infer")


def _synthetic_overrides(args: argparse.Namespace) -> list[str]:
    return [f"synthetic.n_frames={args.frames}", f"synthetic.pixel_size_A={args.pixel_size_A}",
            f"synthetic.dose_e_per_A2={args.dose}", f"synthetic.frame_shape=[{args.size},{args.size}]",
            f"seed={args.seed}"]


def _movie_file(args: argparse.Namespace) -> tuple[Path, float]:
    """Render the synthetic movie to a cached TIFF (with truth); return its path and the render time."""
    from stem2d.bench.movies import synthetic_movie
    from stem2d.sim.movie_cli import write_movie

    name = f"movie_s{args.seed}_n{args.frames}_px{args.pixel_size_A}_d{args.dose:g}_{args.size}.tif"
    path = Path(args.cache) / name
    if path.is_file():
        return path, 0.0
    start = time.perf_counter()
    movie = synthetic_movie(ROOT / "conf", _synthetic_overrides(args), run_dir=Path(tempfile.mkdtemp()))
    write_movie(movie, path)
    return path, time.perf_counter() - start


def run(args: argparse.Namespace) -> dict:
    """Run the pipeline once and return the measurements."""
    import torch

    from stem2d.pipeline.infer import run_movie
    from stem2d.pipeline.utils import compose_job

    overrides = _synthetic_overrides(args) + [
        f"outputs.video={args.video == 'on'}", f"outputs.evolution={args.evolution == 'on'}",
        "outputs.tensorboard=false", "outputs.progress=false", *args.override]
    if args.threads:
        overrides.append(f"threads={args.threads}")
    render_s = None
    if args.source == "file":
        path, render_s = _movie_file(args)
        overrides.append(f"movie={path}")
    out = Path(args.out or tempfile.mkdtemp(prefix="bench_infer_"))
    cfg = compose_job("infer", overrides, run_dir=out, conf_dir=ROOT / "conf")
    load_before = os.getloadavg()
    start = time.perf_counter()
    summary = run_movie(cfg)
    wall = time.perf_counter() - start
    load_after = os.getloadavg()
    n = int(summary["n_frames"])
    timings = summary["timings_s"]
    metrics = summary.get("metrics", {}).get("pipeline", {})
    return {
        "frames": n, "frame_shape": summary["frame_shape"], "pixel_size_A": summary["pixel_size_A"],
        "source": args.source, "video": args.video, "evolution": args.evolution,
        "torch_threads": int(cfg.get("threads") or torch.get_num_threads()), "cpu_count": os.cpu_count(),
        "render_movie_s": render_s,
        "per_frame_s": {k: v / n for k, v in timings.items()},
        "stage_total_s": timings,
        "analyse_steps_s": summary.get("analyse_steps_s", {}),
        "frame_loop_s": summary.get("frame_loop_s"),
        "frames_per_s": summary["frames_per_s"],
        "wall_s": wall, "wall_frames_per_s": n / wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "load_before": load_before, "load_after": load_after,
        "detection_f1": (metrics.get("detection") or {}).get("f1"),
        "class_accuracy": metrics.get("class_accuracy"),
        "run_dir": str(out),
    }


def _report(r: dict) -> str:
    lines = [f"{r['frames']} frames {tuple(r['frame_shape'])} at {r['pixel_size_A']:.4f} A/px, source={r['source']}, "
             f"video={r['video']}, evolution={r['evolution']}, torch threads={r['torch_threads']}/{r['cpu_count']} cores"]
    if r["render_movie_s"]:
        lines.append(f"  rendering the movie to TIFF (not in the run): {r['render_movie_s']:.1f} s")
    lines.append("  stage                 s/frame    total s")
    for stage, total in r["stage_total_s"].items():
        lines.append(f"  {stage:<20} {total / r['frames']:8.4f} {total:10.2f}")
    for step, total in r["analyse_steps_s"].items():
        lines.append(f"    analyse/{step:<11} {total / r['frames']:8.4f} {total:10.2f}")
    if r["frame_loop_s"]:
        lines.append(f"  frame loop wall      {r['frame_loop_s'] / r['frames']:8.4f} {r['frame_loop_s']:10.2f}")
    lines += [f"  pipeline frames/s (summary.json): {r['frames_per_s']:.2f}",
              f"  wall of run_movie: {r['wall_s']:.1f} s ({r['wall_frames_per_s']:.2f} frames/s, everything included)",
              f"  peak RSS: {r['peak_rss_mb']:.0f} MB; load average before {r['load_before'][0]:.2f}, "
              f"after {r['load_after'][0]:.2f} (1 min)",
              f"  detection F1 {r['detection_f1']}, class accuracy {r['class_accuracy']}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--pixel-size-A", type=float, default=0.25)
    parser.add_argument("--dose", type=float, default=5e4, help="e/A^2 per frame")
    parser.add_argument("--size", type=int, default=512, help="frame side, px")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads of the frame loop (infer.yaml `threads`; 0: the config's value)")
    parser.add_argument("--video", choices=("on", "off"), default="on")
    parser.add_argument("--evolution", choices=("on", "off"), default="on")
    parser.add_argument("--source", choices=("file", "synthetic"), default="file")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "stem2d_bench_infer"),
                        help="folder of rendered movies (--source file)")
    parser.add_argument("--out", default=None, help="run folder (default: a fresh temporary folder)")
    parser.add_argument("--json", default=None, help="also write the measurements here")
    parser.add_argument("override", nargs="*", help="extra Hydra overrides, e.g. score.baseline=null")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    result = run(args)
    print(_report(result))  # noqa: T201 - a command-line report
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
