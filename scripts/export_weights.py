"""Export the best checkpoint of a training run as slim bundled weights plus a JSON card.

    python train.py experiment=bundle_cam_cnn
    python scripts/export_weights.py outputs/bundle_cam_cnn/runs/<stamp>

writes stem2d/weights/cam_cnn_ws2.ckpt (weights + inference hyper-parameters + net spec) and
stem2d/weights/cam_cnn_ws2.json (how it was made and its test metrics).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path

import lightning
import torch
import yaml

import stem2d
from stem2d.models.loading import bundled_classifier_path, export_checkpoint
from stem2d.output.files import write_json

log = logging.getLogger("export_weights")
DEFAULT_OUT = bundled_classifier_path("WS2")


def _read_yaml(path: Path):
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when inside it (no machine paths in the card)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return path.name


def _without_hydra_paths(command: str | None) -> str | None:
    """The training command without ``hydra.run.dir=...``-style output-folder overrides."""
    if command is None:
        return None
    return " ".join(w for w in command.split() if not w.startswith(("hydra.run.dir=", "hydra.sweep.dir=")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a train.py run folder (holds metrics.json and .hydra/)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"checkpoint to write (default {DEFAULT_OUT})")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    metrics_file = args.run_dir / "metrics.json"
    if not metrics_file.is_file():
        raise SystemExit(f"{metrics_file} does not exist: is {args.run_dir} a finished train.py run folder?")
    summary = json.loads(metrics_file.read_text())
    best = summary.get("best_checkpoint")
    if not best or not Path(best).is_file():
        raise SystemExit(f"{metrics_file}: best_checkpoint {best!r} does not exist")
    config = _read_yaml(args.run_dir / ".hydra" / "config.yaml") or {}
    card = {
        "checkpoint": args.out.name,
        "made_by": "python scripts/export_weights.py " + _shown(args.run_dir),
        "train_command": _without_hydra_paths(summary.get("command")),
        "overrides": _read_yaml(args.run_dir / ".hydra" / "overrides.yaml"),
        "source_checkpoint": Path(best).name,
        "epochs": summary.get("epochs"),
        "wall_time_s": summary.get("wall_time_s"),
        "class_names": summary.get("class_names"),
        "optimized_metric": {summary["optimized_metric"]: summary["value"]},
        "test_metrics": {k: v for k, v in summary["metrics"].items() if k.startswith("test/")},
        "config": {k: config.get(k) for k in ("seed", "model", "data", "trainer")},
        "versions": {"stem2d": stem2d.__version__, "torch": torch.__version__, "lightning": lightning.__version__},
    }
    export_checkpoint(best, args.out, metadata={"card": args.out.with_suffix(".json").name})
    card["sha256"] = hashlib.sha256(args.out.read_bytes()).hexdigest()
    write_json(args.out.with_suffix(".json"), card)
    log.info("wrote %s (%.1f kB) and %s", args.out, args.out.stat().st_size / 1e3, args.out.with_suffix(".json"))


if __name__ == "__main__":
    main()
