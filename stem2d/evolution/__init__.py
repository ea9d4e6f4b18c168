"""Defect evolution over a movie: drift, tracks, diffusion, class transitions, lifetimes, creation.

``evolve(detections, pixel_size_A=..., frame_shape=...)`` runs the whole chain on a detections
table (``frame,row,col,class,score``, px) and returns an :class:`EvolutionResult`, whose
``write(out_dir)`` leaves ``tracks.csv``, ``transitions.csv``, ``counts.csv``, ``msd.csv``,
(``drift.csv``), ``evolution_*.png`` and, last, ``evolution.json``. The pieces live in
:mod:`.run` (``evolve``), :mod:`.result` (``EvolutionResult``), :mod:`.drift`,
:mod:`.tracking`, :mod:`.analysis` and :mod:`.plots`; this module only re-exports.
"""

import importlib

__all__ = [
    "EvolutionResult", "evolve", "estimate_drift", "correct_positions", "link_tracks", "link_recovery",
]
#: Where each re-export lives; loaded on first use, so ``stem2d.evolution.drift`` (the movie loop's
#: streamed drift) does not import trackpy and matplotlib (issue #16: start-up time).
_HOME = {"EvolutionResult": "result", "evolve": "run", "estimate_drift": "drift", "correct_positions": "drift",
         "link_tracks": "tracking", "link_recovery": "tracking"}


def __getattr__(name: str):
    if name in _HOME:
        return getattr(importlib.import_module(f"stem2d.evolution.{_HOME[name]}"), name)
    raise AttributeError(f"module 'stem2d.evolution' has no attribute {name!r}")
