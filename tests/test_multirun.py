"""Many movies at once: python infer.py -m movie=a.tif,b.tif (local launcher, one table)."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from stem2d.pipeline.multirun import RUN_COLUMNS, summarize_runs

ROOT = Path(__file__).resolve().parents[1]


def _job(sweep: Path, num: int, movie: str, summary: dict | None) -> None:
    run = sweep / str(num)
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(f"- movie={movie}\n- outputs.video=false\n")
    if summary is not None:
        (run / "summary.json").write_text(json.dumps(summary))


def test_summary_table_has_one_row_per_job_in_job_order(tmp_path):
    ok = {"source": "a.tif", "n_frames": 3, "frame_shape": [64, 80], "pixel_size_A": 0.25,
          "mean_defects_per_frame": 2.0, "frames_per_s": 7.5, "frame_loop_s": 0.4, "peak_rss_mb": 600.0,
          "counts_total": {"s_vacancy": 5, "mo_dopant": 1}}
    for num in (10, 2):
        _job(tmp_path, num, f"m{num}.tif", ok)
    _job(tmp_path, 3, "bad.tif", None)          # no summary.json: the run did not finish
    (tmp_path / "multirun.yaml").write_text("")  # not a job folder
    table = summarize_runs(tmp_path)
    assert list(table["job"]) == ["2", "3", "10"]
    assert list(table["status"]) == ["ok", "failed", "ok"]
    assert list(table["movie"]) == ["m2.tif", "bad.tif", "m10.tif"]
    assert list(table.columns) == RUN_COLUMNS + ["count_mo_dopant", "count_s_vacancy"]
    assert table.loc[0, "frame_width"] == 80 and table.loc[2, "count_s_vacancy"] == 5
    assert pd.isna(table.loc[1, "n_frames"])
    with pytest.raises(FileNotFoundError, match="sweep folder"):
        summarize_runs(tmp_path / "missing")


@pytest.mark.slow
def test_two_movies_through_the_local_launcher(tmp_path):
    """Two tiny movies (and a missing one) in parallel: every run folder, one table, the bad
    movie marked failed without stopping the others."""
    from stem2d.sim.movie import MovieConfig, simulate_movie
    from stem2d.sim.movie_cli import write_movie

    paths = []
    for seed in (1, 2):
        movie = simulate_movie(MovieConfig(n_frames=2, frame_shape=(128, 128), pixel_size_A=0.3), rng=seed)
        paths.append(write_movie(movie, tmp_path / f"m{seed}.tif"))
        (tmp_path / f"m{seed}_truth.csv").unlink()   # no scoring: the pipeline alone
    movies = ",".join(str(p) for p in [*paths, tmp_path / "missing.tif"])
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "infer.py"), "-m", f"movie={movies}", f"hydra.sweep.dir={sweep}",
         "hydra.launcher.n_jobs=2", "outputs.video=false", "outputs.evolution=false",
         "outputs.tensorboard=false", "outputs.progress=false"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pd.read_csv(sweep / "runs.csv")
    assert list(table["status"]) == ["ok", "ok", "failed"]
    assert list(table["n_frames"].iloc[:2]) == [2, 2]
    for job in ("0", "1"):
        assert (sweep / job / "detections.csv").is_file()
