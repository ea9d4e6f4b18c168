"""Entry scripts answer --help and --cfg without importing torch or Lightning (fast start)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "lightning", "stem2d.pipeline")


@pytest.mark.parametrize("argv", [["train.py", "--help"], ["infer.py", "--help"],
                                  ["train.py", "--cfg", "job"], ["sweep.py", "--cfg", "job"]])
def test_quick_commands_import_no_heavy_module(argv):
    proc = subprocess.run([sys.executable, "-X", "importtime", *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    heavy = sorted(m for m in imported if m.split(".")[0] in HEAVY or m.startswith(HEAVY))
    assert not heavy, heavy[:10]


def test_a_bad_value_is_refused_before_torch_is_imported(tmp_path):
    proc = subprocess.run([sys.executable, "-X", "importtime", "train.py", "model.optimizer.lr=1000",
                           f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert "model.optimizer.lr=1000" in proc.stderr + proc.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert not any(m.split(".")[0] in ("torch", "lightning") for m in imported)
