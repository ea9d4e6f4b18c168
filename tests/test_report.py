"""report.html: one self-contained file (no external resources) with legend, counts, plots, warnings."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from stem2d.viz.report import write_report
from stem2d.viz.style import class_style
from tests.viz_run import make_run


def test_report_is_self_contained_and_complete(tmp_path):
    run = make_run(tmp_path)
    frames = {0: np.full((80, 64, 3), 90, np.uint8)}
    path = write_report(run, overlay_frames=frames)
    text = path.read_text()
    assert path == run / "report.html"
    # every image is inlined; every link is relative to the run folder (no server, no network)
    assert re.findall(r'src="(?!data:)', text) == []
    assert "http://" not in text and "https://" not in text and "<script" not in text
    assert text.count("data:image/jpeg;base64,") == 1 and text.count("data:image/png;base64,") == 1
    for expected in ("mo_dopant", "Mo on a W site", "both S of a column missing", class_style("s_vacancy").hex,
                     "metadata pixel size off by 12 %", "too few tracks for diffusion", "href='detections.csv'",
                     "0.25"):
        assert expected in text, expected
    assert "pristine</b>" not in text  # pristine is not a defect class in the legend


def test_report_reads_the_summary_of_a_finished_run(tmp_path):
    run = make_run(tmp_path)
    assert "stem2d run: run" in write_report(run).read_text()
    with pytest.raises(FileNotFoundError, match="summary.json"):
        write_report(tmp_path)


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="no chromium (apt-get install -y chromium)")
def test_report_renders_in_a_headless_browser(tmp_path):
    from PIL import Image

    run = make_run(tmp_path)
    rng = np.random.default_rng(0)
    write_report(run, overlay_frames={0: rng.integers(0, 255, (300, 256, 3), dtype=np.uint8)})
    shot = tmp_path / "shot.png"
    subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1100,1600", f"--screenshot={shot}", (run / "report.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    img = np.asarray(Image.open(shot).convert("RGB")).astype(float)
    assert img.shape[:2] == (1600, 1100)
    assert img.std() > 20  # text, tables and pictures, not a blank page
    # the class colour of the legend's s_vacancy marker is on the page
    assert (np.abs(img - class_style("s_vacancy").rgb).sum(axis=2) < 30).sum() > 20
