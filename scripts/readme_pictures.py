"""Regenerate the README's pictures from one run folder of `make demo` (python infer.py).

    python scripts/readme_pictures.py outputs/infer/runs/<stamp> [--frame 10] [--out docs]

Writes docs/class_styles.png (every shipped class: marker, colour, meaning),
docs/overlay_frame.png (one overlay frame, footer included), docs/evolution_broom.png,
docs/evolution_occupancy.png, docs/report.png (report.html in headless chromium, when chromium is
installed) and docs/napari.png (the run opened in napari, when napari is installed; run under
xvfb-run on a machine without a display).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
from pathlib import Path

import imageio.v2 as imageio

log = logging.getLogger("readme_pictures")


def style_card(out: Path) -> None:
    """docs/class_styles.png: every class of the shipped class sets with its marker and meaning."""
    import numpy as np
    import yaml
    from PIL import Image, ImageDraw

    from stem2d.viz.draw import draw_marker, font
    from stem2d.viz.style import class_style, describe_class

    conf = Path(__file__).resolve().parents[1] / "conf" / "classes"
    sets = {p.stem: yaml.safe_load(p.read_text()) for p in sorted(conf.glob("*.yaml"))}
    order = ["default", "mos2", "sites"] + [k for k in sets if k not in ("default", "mos2", "sites")]
    f, fb, line = font(17), font(18), 28
    rows = [(name, None, None) for name in order if name in sets]
    height = sum(1 + len([c for c in sets[n] if c != "pristine"]) for n, _, _ in rows) * line + 20
    img = Image.new("RGB", (800, height), (24, 24, 24))
    draw = ImageDraw.Draw(img)
    y = 10
    for set_name, _, _ in rows:
        draw.text((12, y), f"classes={set_name}", font=fb, fill=(235, 235, 235))
        y += line
        for cls, kinds in sets[set_name].items():
            if cls == "pristine":
                continue
            draw_marker(draw, (40, y + line / 2), class_style(cls), 8)
            draw.text((62, y + 2), cls, font=f, fill=class_style(cls).rgb)
            draw.text((330, y + 2), describe_class(kinds), font=f, fill=(200, 200, 200))
            y += line
    imageio.imwrite(out / "class_styles.png", np.asarray(img))


def overlay_frame(run: Path, out: Path, frame: int) -> None:
    reader = imageio.get_reader(run / "overlay.mp4")
    try:
        imageio.imwrite(out / "overlay_frame.png", reader.get_data(frame))
    finally:
        reader.close()


def report_shot(run: Path, out: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        log.warning("no chromium: docs/report.png not made (apt-get install -y chromium)")
        return
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1150,1500", f"--screenshot={out / 'report.png'}",
                    (run / "report.html").resolve().as_uri()], check=True, capture_output=True, timeout=120)


def napari_shot(run: Path, out: Path, frame: int) -> None:
    try:
        import napari
        from npe2 import PluginManager, PluginManifest
    except ImportError:
        log.warning("no napari: docs/napari.png not made (pip install 'stem2d[napari]')")
        return
    pm = PluginManager.instance()
    if "stem2d" not in pm._manifests:  # a source checkout that was not pip-installed again
        pm.register(PluginManifest.from_file(Path(__file__).resolve().parents[1] / "stem2d" / "napari" / "napari.yaml"))
    viewer = napari.Viewer(show=True)
    try:
        viewer.window.resize(1300, 820)
        viewer.open(str(run), plugin="stem2d")
        viewer.dims.set_current_step(0, frame)
        try:
            scale_bar = viewer.canvas.overlays.scale_bar  # napari >= 0.9
        except AttributeError:
            scale_bar = viewer.scale_bar
        scale_bar.visible = True
        viewer.reset_view()
        points = [layer for layer in viewer.layers if layer._type_string == "points"]
        if points:
            viewer.layers.selection.active = points[0]
        imageio.imwrite(out / "napari.png", viewer.screenshot(canvas_only=False, flash=False))
    finally:
        viewer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--frame", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    style_card(args.out)
    overlay_frame(args.run, args.out, args.frame)
    for name in ("evolution_broom.png", "evolution_occupancy.png"):
        shutil.copyfile(args.run / "evolution" / name, args.out / name)
    report_shot(args.run, args.out)
    napari_shot(args.run, args.out, args.frame)
    log.info("pictures written to %s", args.out)


if __name__ == "__main__":
    main()
