"""What :func:`stem2d.evolution.evolve` returns: :class:`EvolutionResult` and the files it writes."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from stem2d.evolution import analysis, plots
from stem2d.output.files import atomic_write_text
from stem2d.output.plain import rounded, to_plain

__all__ = ["EvolutionResult"]

log = logging.getLogger(__name__)


@dataclass
class EvolutionResult:
    """Everything :func:`evolve` found. Positions are px; ``row``/``col`` of ``tracks`` are in input
    frame pixels, ``row_corrected``/``col_corrected`` in frame-0 sample coordinates (drift removed)."""

    tracks: pd.DataFrame
    drift: np.ndarray | None
    counts: pd.DataFrame
    diffusion: dict
    transitions: dict
    lifetimes: dict
    creation: dict
    pixel_size_A: float
    frame_shape: tuple[int, int]
    n_frames: int
    params: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def sample_tracks(self) -> pd.DataFrame:
        """Tracks with ``row``/``col`` replaced by the drift-corrected positions."""
        keep = [c for c in self.tracks.columns if c not in ("row_corrected", "col_corrected")]
        return self.tracks[keep].assign(row=self.tracks["row_corrected"], col=self.tracks["col_corrected"])

    def figures(self) -> dict:
        """Matplotlib figures by name (``counts, broom, occupancy, transitions, msd``)."""
        return plots.figures(self)

    def to_summary(self) -> dict:
        """JSON-serialisable summary (numbers, lists, strings; None where not estimated)."""
        d, tr, cr = self.diffusion, self.transitions, self.creation
        counts = {}
        for name, grp in self.counts.groupby("class", sort=False):
            counts[name] = {
                "total_detections": grp["count"].sum(), "mean_per_frame": grp["count"].mean(),
                "mean_density_per_nm2": grp["density_per_nm2"].mean(),
                "count_first_frame": grp["count"].iloc[0], "count_last_frame": grp["count"].iloc[-1],
            }
        summary = {
            "pixel_size_A": self.pixel_size_A, "frame_shape": list(self.frame_shape), "n_frames": self.n_frames,
            "frame_area_nm2": analysis.frame_area_nm2(self.frame_shape, self.pixel_size_A),
            "params": self.params,
            "n_detections": len(self.tracks), "n_tracks": self.tracks["track"].nunique(),
            "drift_px": None if self.drift is None else {
                "final": self.drift[-1].tolist(), "max_abs": np.abs(self.drift).max(axis=0).tolist(),
                "max_step": np.abs(np.diff(self.drift, axis=0, prepend=0.0)).max(axis=0).tolist(),
            },
            "counts": counts,
            "diffusion": {**{k: v for k, v in d.items() if k != "msd"}, "msd": d["msd"].to_dict(orient="list")},
            "transitions": {
                "classes": tr["classes"], "counts": tr["counts"].to_numpy().tolist(),
                "probabilities": tr["probabilities"].to_numpy().tolist(),
                "n_transitions": tr["n_transitions"].to_dict(), "note": tr["note"],
            },
            "lifetimes": self.lifetimes["summary"].to_dict(orient="records"),
            "creation": {k: v for k, v in cr.items() if k != "per_frame"},
            "notes": self.notes,
        }
        return to_plain(summary)

    def write(self, out_dir: str | os.PathLike, *, skip_figures: tuple[str, ...] = ()) -> dict[str, Path]:
        """Write tables, figures and ``evolution.json`` (last) into ``out_dir``; returns the paths.

        Every file goes to a temporary name first and is renamed when complete. ``skip_figures``
        names figures not to write (the movie pipeline writes ``counts`` as the run's counts.png).
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "evolution.json").unlink(missing_ok=True)  # a stale summary must not vouch for new files
        paths = {
            "tracks": _write_csv(self.tracks, out / "tracks.csv"),
            "transitions": _write_csv(_transitions_long(self.transitions), out / "transitions.csv"),
            "counts": _write_csv(self.counts, out / "counts.csv"),
            "msd": _write_csv(self.diffusion["msd"], out / "msd.csv"),
        }
        if self.drift is not None:
            drift = pd.DataFrame({"frame": np.arange(len(self.drift)), "drift_row_px": self.drift[:, 0],
                                  "drift_col_px": self.drift[:, 1]})
            paths["drift"] = _write_csv(drift, out / "drift.csv")
        paths.update({f"png_{k}": v for k, v in plots.save_all(self, out, skip=skip_figures).items()})
        text = json.dumps(rounded(self.to_summary()), indent=2, allow_nan=False)
        paths["summary"] = _write_text(text, out / "evolution.json")
        log.info("evolution outputs written to %s", out)
        return paths


def _transitions_long(trans: dict) -> pd.DataFrame:
    """One row per (from, to) class pair: ``from, to, count, probability, n_from``."""
    counts, probs, n = trans["counts"], trans["probabilities"], trans["n_transitions"]
    rows = [(a, b, counts.at[a, b], probs.at[a, b], n[a]) for a in counts.index for b in counts.columns]
    return pd.DataFrame(rows, columns=["from", "to", "count", "probability", "n_from"])


def _write_text(text: str, path: Path) -> Path:
    return atomic_write_text(path, text)


def _write_csv(df: pd.DataFrame, path: Path) -> Path:
    return _write_text(df.to_csv(index=False), path)
