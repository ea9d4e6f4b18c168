"""Hardening: reproducibility, recovery from a killed run, and odd or corrupt inputs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from stem2d.io.readers import read_movie
from stem2d.pipeline.train import train
from tests.train_helpers import ROOT, TINY, compose_train

USER_ERRORS = (ValueError, FileNotFoundError)


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())["metrics"]


@pytest.mark.slow  # two training runs: ~25 s of CPU (the default suite stays under 4 min on 2 cores)
def test_same_seed_gives_identical_metrics(tmp_path):
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        train(compose_train(out, ["trainer.max_epochs=1", "callbacks.progress_bar.refresh_rate=0", "seed=7", *TINY]))
        runs.append(_metrics(out))
    assert runs[0] == runs[1]
    assert "test/acc" in runs[0]


def _train_cmd(log_dir: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "train.py", "trainer.max_epochs=3", "callbacks.progress_bar.refresh_rate=0",
            "callbacks.early_stopping=null", "seed=11", "trainer.precision=32-true", f"hydra.run.dir={log_dir}",
            *TINY, "data.n_test_samples=60", *extra]


@pytest.mark.slow
def test_killed_training_resumes_to_the_same_metrics(tmp_path):
    full = tmp_path / "full"
    subprocess.run(_train_cmd(full, []), cwd=ROOT, check=True, capture_output=True, timeout=900)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(killed, []), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    first_epoch = killed / "checkpoints" / "epoch_000.ckpt"
    while not first_epoch.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "metrics.json").exists()  # nothing that looks finished
    resumed = tmp_path / "resumed"
    subprocess.run(_train_cmd(resumed, [f"ckpt_path={killed / 'checkpoints' / 'last.ckpt'}"]), cwd=ROOT,
                   check=True, capture_output=True, timeout=900)
    a, b = _metrics(full), _metrics(resumed)
    for key in ("val/acc_best", "test/acc"):
        assert abs(a[key] - b[key]) <= 0.1, (key, a[key], b[key])


def _valid_files(tmp: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    stack = rng.poisson(30, size=(2, 80, 80)).astype(np.uint16)
    files = [tmp / "a.npy", tmp / "b.tif", tmp / "c.npz", tmp / "d.h5"]
    np.save(files[0], stack)
    tifffile.imwrite(files[1], stack)
    np.savez(files[2], frames=stack)
    import h5py

    with h5py.File(files[3], "w") as f:
        f["data"] = stack
    return files


@pytest.mark.parametrize("seed", range(12))
def test_fuzz_readers_truncated_and_mangled_files(tmp_path, seed):
    """Every corrupt file ends in a valid movie or a clear error naming the file, never anything else."""
    rng = np.random.default_rng(seed)
    for good in _valid_files(tmp_path):
        data = bytearray(good.read_bytes())
        bad = tmp_path / f"bad_{seed}{good.suffix}"
        cut = int(rng.integers(0, len(data)))
        if rng.random() < 0.5:
            data = data[:cut]
        else:
            for i in rng.integers(0, len(data), size=8):
                data[i] = int(rng.integers(0, 256))
        bad.write_bytes(bytes(data))
        try:
            movie = read_movie(bad)
            frames = [np.asarray(f) for f in movie.frames]
        except USER_ERRORS as err:
            assert bad.name in str(err)
        else:
            assert all(f.ndim == 2 and np.isfinite(f).all() for f in frames)


@pytest.mark.parametrize("array, fragment", [
    (np.zeros((0, 80, 80), np.float32), "empty|no frames"),
    (np.zeros(10, np.float32), "shape|dimension|2D|1D"),
    (np.zeros((2, 2, 2, 80, 80), np.float32), "4D|5D|dimension|shape"),
    (np.full((1, 80, 80), np.inf, np.float32), "inf|finite|NaN"),
    (np.ones((1, 8, 8), np.float32), "small|64"),
    ((np.ones((1, 80, 80)) * 1j).astype(np.complex64), "complex|dtype|real"),
])
def test_odd_arrays_are_named(tmp_path, array, fragment):
    path = tmp_path / "odd.npy"
    np.save(path, array)
    with pytest.raises(USER_ERRORS, match=f"(?i)({fragment})"):
        movie = read_movie(path)
        [np.asarray(f) for f in movie.frames]


def test_huge_and_constant_values_read_fine(tmp_path):
    path = tmp_path / "huge.npy"
    np.save(path, np.full((1, 80, 80), 3e38, np.float32))
    movie = read_movie(path)
    assert np.isfinite(np.asarray(movie.frames[0])).all()


def test_config_typo_names_the_key(tmp_path):
    proc = subprocess.run([sys.executable, "infer.py", "detector.treshold=0.3", f"hydra.run.dir={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "treshold" in proc.stderr
    assert not (tmp_path / "summary.json").exists()
