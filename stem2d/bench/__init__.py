"""One-command benchmark: ``python -m stem2d.bench`` writes ``docs/results.md`` and its PNGs.

Sections (:data:`~stem2d.bench.config.SECTIONS`): the tile classifiers on held-out simulated
tiles, the calibration of their probabilities, the movie pipeline on synthetic movies, the defect-evolution analysis against the
generator's truth, speed, the real MoS2 frames against their column labels, and the physics-shift
sections of the family classifier (tiles) and the U-Net detectors (frames).
:func:`run_benchmark` is the library entry point; the command
line is in :mod:`stem2d.bench.__main__`.
"""

from __future__ import annotations

import datetime as _dt
import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from stem2d.bench.config import (
    SECTIONS,
    BenchConfig,
    Checkpoints,
    full_config,
    quick_config,
)
from stem2d.bench.report import Section, machine_line, write_report

__all__ = ["SECTIONS", "BenchConfig", "Checkpoints", "full_config", "quick_config", "run_benchmark"]

log = logging.getLogger(__name__)


def _run_section(name: str, cfg: BenchConfig, ckpts: Checkpoints, out: Path, work: Path) -> Section:
    from stem2d.bench import calibration, classifier, evolution, physics, physics_frames, pipeline, real, speed

    start = time.perf_counter()
    log.info("section %s ...", name)
    if name == "classifier":
        sec = classifier.run(cfg, ckpts, out)
    else:
        module = {"calibration": calibration, "pipeline": pipeline, "evolution": evolution, "speed": speed,
                  "real": real, "physics": physics, "physics_frames": physics_frames}[name]
        folder = work / name
        folder.mkdir(parents=True, exist_ok=True)
        sec = module.run(cfg, ckpts, out, folder)
    sec.wall_s = time.perf_counter() - start
    log.info("section %s done in %.1f s", name, sec.wall_s)
    return sec


def run_benchmark(
    cfg: BenchConfig,
    *,
    out_dir: str | Path = "docs",
    sections: Sequence[str] = SECTIONS,
    checkpoints: Checkpoints | None = None,
    work_dir: str | Path | None = None,
    command: str = "python -m stem2d.bench",
) -> Path:
    """Run the chosen sections and write ``<out_dir>/results.md`` (and its PNGs); returns its path.

    Parameters
    ----------
    cfg : BenchConfig
        Sizes and seed (:func:`full_config` or :func:`quick_config`).
    out_dir : path, keyword-only
        Where ``results.md`` and the ``bench_*.png`` figures go.
    sections : sequence of str, keyword-only
        Subset of :data:`SECTIONS` (always written in that order).
    checkpoints : Checkpoints, keyword-only, optional
        Weights to evaluate (default: the bundled ones); missing files make their parts "not available".
    work_dir : path, keyword-only, optional
        Keep the pipeline run folders here; None uses a temporary folder removed at the end.
    command : str, keyword-only
        The command line written into the report header.
    """
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown or not sections:
        raise ValueError(f"sections={list(sections)}: choose one or more of {list(SECTIONS)}")
    ckpts = checkpoints or Checkpoints()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started, start = _dt.datetime.now(), time.perf_counter()
    machine = machine_line()
    with tempfile.TemporaryDirectory(prefix="stem2d_bench_") as tmp:
        work = Path(work_dir) if work_dir is not None else Path(tmp)
        done = [_run_section(name, cfg, ckpts, out, work) for name in SECTIONS if name in sections]
    return write_report(out / "results.md", done, command=command, machine=machine,
                        wall_s=time.perf_counter() - start, started=started)
