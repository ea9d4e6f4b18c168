"""One self-contained ``report.html`` per run: opens in any browser, from any folder, without a server.

Everything is inside the file: the overlay frames (JPEG) and plots (PNG) as base64 data URIs,
the class legend (inline SVG markers in the class colours of :mod:`stem2d.viz.style`), the counts
table, scores against truth when there is truth, warnings, timings and the settings. Links to the
run's own files are relative, so they work where the report sits in its run folder.

``python -m stem2d.viz RUN_DIR`` (re)writes the report of a finished run.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from stem2d.viz.style import class_style, class_styles, describe_class, drawn_classes

log = logging.getLogger(__name__)

#: Plots of a run folder shown in the report, in this order, with their captions.
PLOTS = (
    ("counts.png", "Defects per class in each frame (and vs dose)"),
    ("evolution/evolution_occupancy.png", "Where each class sits, all frames"),
    ("evolution/evolution_broom.png", "Positions through time (drift-corrected)"),
    ("evolution/evolution_transitions.png", "Class changes along tracks"),
    ("evolution/evolution_msd.png", "Mean squared displacement (diffusion)"),
)

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:1100px;padding:16px 24px;
color:#222;background:#fafafa}
h1{font-size:22px;margin:8px 0}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:6px 0}td,th{padding:3px 10px;border-bottom:1px solid #e4e4e4;text-align:left}
th{background:#eee}td.num{text-align:right;font-variant-numeric:tabular-nums}.warn{background:#fff4d6;border-left:4px solid #e6a700;
padding:6px 10px;margin:4px 0}.frames{display:flex;gap:10px;flex-wrap:wrap}.frames figure,.plots figure{margin:0}
figcaption{font-size:13px;color:#555}img{max-width:100%;border:1px solid #ccc;background:#fff}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(440px,1fr));gap:14px}
pre{background:#f0f0f0;padding:8px;overflow:auto;font-size:12px}.muted{color:#666}
"""


def _svg_marker(marker: str, hex_colour: str, size: int = 18) -> str:
    r, c = size * 0.36, size / 2
    stroke = f'fill="none" stroke="{hex_colour}" stroke-width="2.5"'
    shapes = {
        "circle": f'<circle cx="{c}" cy="{c}" r="{r}" {stroke}/>',
        "square": f'<rect x="{c - r}" y="{c - r}" width="{2 * r}" height="{2 * r}" {stroke}/>',
        "diamond": f'<polygon points="{c},{c - r * 1.2} {c + r * 1.2},{c} {c},{c + r * 1.2} {c - r * 1.2},{c}" {stroke}/>',
        "triangle": f'<polygon points="{c},{c - r * 1.2} {c + r * 1.1},{c + r * 0.8} {c - r * 1.1},{c + r * 0.8}" {stroke}/>',
        "star": f'<polygon points="{c},{c - r * 1.2} {c + r * 0.7},{c + r} {c - r * 1.1},{c - r * 0.3} '
                f'{c + r * 1.1},{c - r * 0.3} {c - r * 0.7},{c + r}" {stroke}/>',
        "cross": f'<path d="M{c - r},{c - r}L{c + r},{c + r}M{c - r},{c + r}L{c + r},{c - r}" {stroke}/>',
    }
    return (f'<svg width="{size}" height="{size}" style="vertical-align:middle;background:#333;border-radius:3px">'
            f'{shapes.get(marker, shapes["circle"])}</svg>')


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _jpeg(rgb: np.ndarray, quality: int = 88) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return html.escape(str(value))


def _cell(value) -> str:
    text = str(value)
    numeric = text.replace(",", "").replace(".", "", 1).replace("–", "").strip().isdigit() or text == "–"
    return f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>"


def _table(header: Sequence[str] | None, rows: Sequence[Sequence]) -> str:
    head = "" if header is None else "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _legend(summary: Mapping) -> str:
    names = summary.get("class_names", [])
    kinds = (summary.get("settings") or {}).get("classes") or {}
    totals = summary.get("counts_total", {})
    n_frames = max(int(summary.get("n_frames") or 1), 1)
    rows = []
    for name, st in class_styles(drawn_classes(names)).items():
        meaning = describe_class(kinds.get(name, [])) if isinstance(kinds, Mapping) else ""
        total = int(totals.get(name, 0))
        rows.append([f"{_svg_marker(st.marker, st.hex)} <b>{html.escape(name)}</b>", html.escape(meaning),
                     f"{total:,}", f"{total / n_frames:.1f}"])
    unknown = int(summary.get("unconfirmed_candidates") or 0)
    if unknown and "unknown" not in totals:
        st = class_style("unknown")
        rows.append([f"{_svg_marker(st.marker, st.hex)} <b>unknown</b>", "a candidate site the classifier or the "
                     "column evidence did not confirm (not counted above)", f"{unknown:,}", f"{unknown / n_frames:.1f}"])
    return _table(["class", "what it is", "detections", "per frame"], rows)


def _scores(metrics: Mapping) -> str:
    parts = []
    for key in ("pipeline", "baseline"):
        m = metrics.get(key)
        if not m:
            continue
        det = m["detection"]
        rows = [["all defects (detection)", _fmt(det["precision"]), _fmt(det["recall"]), _fmt(det["f1"]),
                 det["n_true"], det["n_pred"]]]
        for name, c in (m.get("per_class") or {}).items():
            rows.append([html.escape(name), _fmt(c["precision"]), _fmt(c["recall"]), _fmt(c["f1"]),
                         c["n_true"], c["n_pred"]])
        parts.append(f"<p><b>{key}</b> ({html.escape(str(m.get('mode', '')))}): class accuracy on matched "
                     f"defects {_fmt(m.get('class_accuracy'))}, match distance {_fmt(metrics.get('match_dist_A'))} Å</p>"
                     + _table(["", "precision", "recall", "F1", "true", "found"], rows))
    return "".join(parts)


def _warnings(run_dir: Path, summary: Mapping) -> list[str]:
    found = []
    for logfile in sorted(run_dir.glob("*.log")):
        for line in logfile.read_text(errors="replace").splitlines():
            if "[WARNING]" in line or "[ERROR]" in line:
                found.append(line.split("] - ", 1)[-1])
    found += list((summary.get("evolution") or {}).get("notes") or [])
    return found


def _overlay_frames(run_dir: Path, frames: Mapping[int, np.ndarray] | None) -> dict[int, np.ndarray]:
    if frames:
        return dict(frames)
    mp4 = run_dir / "overlay.mp4"
    if not mp4.is_file():
        return {}
    import imageio.v2 as imageio

    out = {}
    reader = imageio.get_reader(mp4)
    try:
        n = reader.count_frames()
        for k in sorted({0, n // 2, n - 1}):
            out[k] = reader.get_data(k)
    finally:
        reader.close()
    return out


def _wide(png: Path) -> str:
    """Figures much wider than tall (two panels, a row of classes) take the whole row."""
    from PIL import Image

    with Image.open(png) as im:
        w, h = im.size
    return ' style="grid-column:1/-1"' if w > 1.6 * h else ""


def build_report(run_dir: str | os.PathLike, summary: Mapping, *, metrics: Mapping | None = None,
                 overlay_frames: Mapping[int, np.ndarray] | None = None) -> str:
    """The HTML text of a run's report.

    Parameters
    ----------
    run_dir : path
        The run folder (plots are read from it: ``counts.png``, ``evolution/*.png``).
    summary : mapping
        The run's summary (as written to ``summary.json``).
    metrics : mapping, optional
        Scores against truth (``metrics.json``); default ``summary["metrics"]``.
    overlay_frames : mapping of int to uint8 (H, W, 3), optional
        Overlay frames by frame number; default: first, middle and last frame of ``overlay.mp4``.
    """
    run_dir = Path(run_dir)
    s = summary
    metrics = metrics if metrics is not None else s.get("metrics")
    esc = html.escape
    px = s.get("pixel_size_A")
    shape = s.get("frame_shape") or [0, 0]
    fov = f"{shape[1] * px / 10:.1f} × {shape[0] * px / 10:.1f} nm" if px else "?"
    head = _table(None, [
        ["movie", esc(str(s.get("source", "")))],
        ["frames", f"{s.get('n_frames')} of {shape[0]} × {shape[1]} px ({fov})"],
        ["pixel size", f"{_fmt(px, 4)} Å (lattice {_fmt(s.get('pixel_size_measured_A'), 4)}, "
                       f"file {_fmt(s.get('pixel_size_metadata_A'), 4)})"],
        ["material, detector", f"{esc(str(s.get('material')))}, {esc(str(s.get('mode')))}"],
        ["defects", f"{sum((s.get('counts_total') or {}).values()):,} "
                    f"({_fmt(s.get('mean_defects_per_frame'))} per frame)"],
        ["speed", f"{_fmt(s.get('frames_per_s'))} frames/s, peak memory {_fmt(s.get('peak_rss_mb'))} MB"],
    ])
    parts = [f"<h1>stem2d run: {esc(run_dir.name)}</h1>", head, "<h2>Classes</h2>", _legend(s)]
    warnings = _warnings(run_dir, s)
    if warnings:
        parts += ["<h2>Warnings</h2>"] + [f'<div class="warn">{esc(w)}</div>' for w in warnings]
    frames = _overlay_frames(run_dir, overlay_frames)
    if frames:
        figs = "".join(f'<figure><img src="{_data_uri(_jpeg(rgb), "image/jpeg")}" width="{min(rgb.shape[1], 520)}">'
                       f"<figcaption>frame {k}</figcaption></figure>" for k, rgb in sorted(frames.items()))
        parts += ["<h2>Overlay</h2><p class='muted'>Markers: the classes above. Colour wash: the CAM, where "
                  "the classifier found the evidence for its class. The whole movie: "
                  "<a href='overlay.mp4'>overlay.mp4</a>, <a href='overlay.gif'>overlay.gif</a>.</p>",
                  f'<div class="frames">{figs}</div>']
    plots = [(p, c) for p, c in PLOTS if (run_dir / p).is_file()]
    if plots:
        figs = "".join(f'<figure{_wide(run_dir / p)}><img src="{_data_uri((run_dir / p).read_bytes(), "image/png")}">'
                       f"<figcaption>{esc(c)} (<a href='{p}'>{p}</a>)</figcaption></figure>" for p, c in plots)
        parts += ["<h2>Plots</h2>", f'<div class="plots">{figs}</div>']
    if metrics:
        parts += ["<h2>Scores against the truth</h2>", _scores(metrics)]
    timings = s.get("timings_s") or {}
    if timings:
        parts += ["<h2>Timings</h2>", _table(["stage", "seconds"], [[esc(k), f"{v:.2f}"] for k, v in timings.items()])]
    files = sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*")
                   if p.is_file() and not p.name.startswith(".") and "tensorboard" not in p.parts)
    parts += ["<h2>Files</h2><p>" + " · ".join(f"<a href='{f}'>{esc(f)}</a>" for f in files) + "</p>",
              "<h2>Settings</h2><details><summary>the composed configuration</summary><pre>"
              + esc(json.dumps(s.get("settings", {}), indent=2)) + "</pre></details>",
              f"<p class='muted'>stem2d {esc(str(s.get('stem2d_version', '')))}</p>"]
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>stem2d "
            f"{esc(run_dir.name)}</title><style>{_CSS}</style></head><body>" + "\n".join(parts) + "</body></html>")


def write_report(run_dir: str | os.PathLike, summary: Mapping | None = None, *, metrics: Mapping | None = None,
                 overlay_frames: Mapping[int, np.ndarray] | None = None) -> Path:
    """Write ``report.html`` into the run folder (atomically) and return its path.

    ``summary`` defaults to the folder's ``summary.json``; see :func:`build_report`.
    """
    from stem2d.output.files import atomic_write_text

    run_dir = Path(run_dir)
    if summary is None:
        path = run_dir / "summary.json"
        if not path.is_file():
            raise FileNotFoundError(f"{str(path)!r}: no summary.json; is {str(run_dir)!r} a finished stem2d run?")
        summary = json.loads(path.read_text())
    return atomic_write_text(run_dir / "report.html", build_report(run_dir, summary, metrics=metrics,
                                                                    overlay_frames=overlay_frames))
