"""One table across the runs of a multirun: ``python infer.py -m movie=a.tif,b.tif``.

Each job writes its own run folder ``<sweep dir>/<job number>/`` (``summary.json`` last, so a
folder without it did not finish). When the multirun ends, :class:`MultirunSummary` (a Hydra
callback, conf/infer.yaml) writes ``<sweep dir>/runs.csv`` with one row per job; the jobs run in
parallel through the launcher (``hydra/launcher: joblib`` locally, ``slurm`` on a cluster).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)

__all__ = ["MultirunSummary", "run_row", "summarize_runs"]

#: Columns of runs.csv before the per-class counts (``count_<class>``).
RUN_COLUMNS = ["job", "status", "movie", "n_frames", "frame_height", "frame_width", "pixel_size_A",
               "mean_defects_per_frame", "frames_per_s", "frame_loop_s", "peak_rss_mb", "run_dir"]


def _overrides(run_dir: Path) -> list[str]:
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    from omegaconf import OmegaConf

    return [str(o) for o in OmegaConf.load(path)]


def run_row(run_dir: str | Path) -> dict[str, Any]:
    """The row of one job folder: its movie, size, speed and defect counts per class.

    ``status`` is ``ok`` when the folder holds ``summary.json`` (written last by a finished
    run), else ``failed`` (the job's log in the folder says why).
    """
    run_dir = Path(run_dir)
    movie = next((o.split("=", 1)[1] for o in _overrides(run_dir) if o.startswith("movie=")), None)
    row: dict[str, Any] = {"job": run_dir.name, "status": "failed", "movie": movie, "run_dir": str(run_dir)}
    path = run_dir / "summary.json"
    if not path.is_file():
        return row
    summary = json.loads(path.read_text())
    shape = summary.get("frame_shape") or [None, None]
    row.update(status="ok", movie=movie or summary.get("source"), n_frames=summary.get("n_frames"),
               frame_height=shape[0], frame_width=shape[1], pixel_size_A=summary.get("pixel_size_A"),
               mean_defects_per_frame=summary.get("mean_defects_per_frame"),
               frames_per_s=summary.get("frames_per_s"), frame_loop_s=summary.get("frame_loop_s"),
               peak_rss_mb=summary.get("peak_rss_mb"))
    for name, count in (summary.get("counts_total") or {}).items():
        row[f"count_{name}"] = count
    return row


def _job_key(path: Path) -> tuple[int, str]:
    return (int(path.name), "") if path.name.isdigit() else (1 << 30, path.name)


def summarize_runs(sweep_dir: str | Path):
    """DataFrame with one :func:`run_row` per job folder of ``sweep_dir`` (numbered folders,
    in job order); an empty table when there are none."""
    import pandas as pd

    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"sweep folder {str(sweep_dir)!r} does not exist")
    jobs = sorted((p for p in sweep_dir.iterdir() if p.is_dir() and (p / ".hydra").is_dir()), key=_job_key)
    table = pd.DataFrame([run_row(p) for p in jobs])
    counts = sorted(c for c in table.columns if c.startswith("count_"))
    return table.reindex(columns=RUN_COLUMNS + counts)


class MultirunSummary(Callback):
    """Hydra callback: ``runs.csv`` in the sweep folder when a multirun ends (see module doc)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from stem2d.output.files import atomic_path

        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            return
        table = summarize_runs(sweep_dir)
        with atomic_path(sweep_dir / "runs.csv") as tmp:
            table.to_csv(tmp, index=False, float_format="%.4g")
        failed = int((table["status"] != "ok").sum()) if len(table) else 0
        log.info("%d run(s), %d failed: %s", len(table), failed, sweep_dir / "runs.csv")
