"""``python -m stem2d.bench --quick``: every section runs and every table cell is computed.

The checkpoints are tiny untrained networks written to tmp_path (the bundled weights may not
exist yet, and numbers of trained models are not what is tested here): the classifier's bias
makes it call every tile ``mo_dopant``, so the pipeline finds defects and every code path runs.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from stem2d.bench import quick_config
from stem2d.bench.__main__ import main
from stem2d.bench.report import NOT_AVAILABLE, UNDEFINED
from stem2d.classes import DEFAULT_CLASSES
from stem2d.models.nets import CamNet, SeedCNN
from stem2d.models.unet import UNet

HEADINGS = ("## 1. Tile classifiers", "## 2. Pipeline", "## 3. Defect evolution", "## 4. Speed")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _classifier_ckpt(path: Path, net: torch.nn.Module) -> Path:
    with torch.no_grad():
        net.head.bias.zero_()
        net.head.bias[DEFAULT_CLASSES.index("mo_dopant")] = 10.0
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
                "hyper_parameters": {"class_names": list(DEFAULT_CLASSES), "tile_size_px": 64, "pixel_size_A": 0.3},
                "stem2d": {"net": net.spec()}}, path)
    return path


def _unet_ckpt(path: Path) -> Path:
    net = UNet(channels=(4, 8, 16))
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}, "hyper_parameters": {},
                "stem2d": {"net": net.spec()}}, path)
    return path


@pytest.fixture()
def fake_ckpts(tmp_path):
    torch.manual_seed(0)
    return {"--classifier-ckpt": _classifier_ckpt(tmp_path / "cam.ckpt", CamNet(len(DEFAULT_CLASSES))),
            "--seed-cnn-ckpt": _classifier_ckpt(tmp_path / "seed.ckpt", SeedCNN(len(DEFAULT_CLASSES))),
            "--unet-ckpt": _unet_ckpt(tmp_path / "unet.ckpt"), "--unet-mx2-ckpt": _unet_ckpt(tmp_path / "unet_mx2.ckpt")}


def _tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Markdown tables as (header, rows) of stripped cells."""
    tables, block = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append([c.strip() for c in line.strip().strip("|").split(" | ")])
        elif block:
            tables.append((block[0], block[2:]))
            assert set("".join(block[1])) <= {"-", "|"}, f"no separator under {block[0]}"
            block = []
    return tables


def _column(table, name: str) -> list[float]:
    header, rows = table
    i = header.index(name)
    return [float(r[i]) for r in rows if r[i] != UNDEFINED]


@pytest.mark.slow  # the whole benchmark at quick settings: ~30 s of CPU (the default suite stays under 4 min on 2 cores)
def test_quick_benchmark_writes_complete_report(tmp_path, fake_ckpts):
    out = tmp_path / "docs"
    argv = ["--quick", "--out", str(out), "--seed", "3"]
    for flag, path in fake_ckpts.items():
        argv += [flag, str(path)]
    assert main(argv) == 0
    text = (out / "results.md").read_text()
    positions = [text.find(h) for h in HEADINGS]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), "sections missing or out of order"
    assert re.search(r"total wall time \d+\.\d s", text) and f"torch {torch.__version__}" in text
    tables = _tables(text)
    assert len(tables) >= 12
    for header, rows in tables:
        assert rows, f"empty table {header}"
        for row in rows:
            assert len(row) == len(header), f"row {row} does not fit header {header}"
            for cell in row:
                assert cell and cell.lower() not in {"none", "nan", "todo", "?", NOT_AVAILABLE}, (header, row)
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(figures) >= 5
    for name in figures:
        assert (out / name).read_bytes()[:8] == PNG_MAGIC, name
    by_first = {h[0] + "/" + h[-1]: (h, r) for h, r in tables}
    modes = next(t for k, t in by_first.items() if k.startswith("noise mode/"))
    assert all(0.0 <= v <= 1.0 for v in _column(modes, "cam_cnn accuracy") + _column(modes, "seed_cnn macro-F1"))
    # the biased classifier calls every tile mo_dopant: accuracy is the mo_dopant share (1 of 5 classes)
    assert _column(modes, "cam_cnn accuracy")[-1] == pytest.approx(0.2)
    pixel = next(t for k, t in by_first.items() if k.startswith("movie seed/"))
    assert all(abs(e) < 2.0 for e in _column(pixel, "error (%)"))  # measured vs true, same movie
    tracking = next(t for k, t in by_first.items() if k.startswith("input/true drift"))
    assert _column(tracking, "link recovery")[0] >= 0.75  # truth + 0.2 A noise links almost perfectly


def test_missing_checkpoints_are_reported_not_available(tmp_path):
    out = tmp_path / "docs"
    missing = str(tmp_path / "missing.ckpt")
    argv = ["--quick", "--out", str(out), "--sections", "classifier", "pipeline", "evolution",
            "--classifier-ckpt", missing, "--seed-cnn-ckpt", missing, "--unet-ckpt", missing]
    assert main(argv) == 0
    text = (out / "results.md").read_text()
    assert text.count(f"**{NOT_AVAILABLE}**") == 3 and "missing.ckpt" in text  # classifier, pipeline, evolution
    assert HEADINGS[3] not in text
    tracking = next(t for t in _tables(text) if t[0][0] == "input" and t[0][-1].startswith("true drift"))
    truth_row, pipeline_row = tracking[1]
    assert NOT_AVAILABLE not in truth_row and set(pipeline_row[1:]) == {NOT_AVAILABLE}  # truth needs no model


def test_bad_settings_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="conf_dir"):
        quick_config(conf_dir=tmp_path)
    with pytest.raises(SystemExit):
        main(["--sections", "nonsense", "--out", str(tmp_path)])


def test_frame_scoring_counts_only_the_interior():
    """physics_frames.score: a site just outside the scored region may still absorb its detection
    (no false positive), but neither counts as a true site."""
    from stem2d.bench.physics_frames import score

    sites = np.array([[50.0, 50.0], [2.0, 50.0], [70.0, 70.0]])
    pred = np.array([[50.5, 50.0], [3.0, 50.0], [20.0, 20.0]])
    tp, n_pred, n_true, hit = score(pred, sites, (100, 100), max_dist_px=3.0, edge_px=6)
    assert (tp, n_pred, n_true) == (1, 2, 2) and hit.tolist() == [True, False, False]
