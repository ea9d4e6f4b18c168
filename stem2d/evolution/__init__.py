"""Defect evolution over a movie: drift, tracks, diffusion, class transitions, lifetimes, creation.

``evolve(detections, pixel_size_A=..., frame_shape=...)`` runs the whole chain on a detections
table (``frame,row,col,class,score``, px) and returns an :class:`EvolutionResult`, whose
``write(out_dir)`` leaves ``tracks.csv``, ``transitions.csv``, ``counts.csv``, ``msd.csv``,
(``drift.csv``), ``evolution_*.png`` and, last, ``evolution.json``. The pieces live in
:mod:`.run` (``evolve``), :mod:`.result` (``EvolutionResult``), :mod:`.drift`,
:mod:`.tracking`, :mod:`.analysis` and :mod:`.plots`; this module only re-exports.
"""

from stem2d.evolution.drift import correct_positions, estimate_drift
from stem2d.evolution.result import EvolutionResult
from stem2d.evolution.run import evolve
from stem2d.evolution.tracking import link_recovery, link_tracks

__all__ = [
    "EvolutionResult", "evolve", "estimate_drift", "correct_positions", "link_tracks", "link_recovery",
]
