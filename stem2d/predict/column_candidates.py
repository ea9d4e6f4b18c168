"""Columns as defect candidates: a column whose intensity is far from its sublattice's is a site to
classify, as a microscopist would pick it by eye.

:class:`ColumnCache` quantifies each (canonical) frame once for every step that needs it (the
detector here, the evidence of :mod:`stem2d.predict.evidence`); :func:`column_candidates` picks
the outlying columns; :func:`with_column_candidates` adds them to another detector's candidates.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from stem2d.lattice.columns import ColumnQuantification, quantify_columns
from stem2d.materials import Material

__all__ = ["ColumnCache", "column_candidates", "with_column_candidates"]

log = logging.getLogger(__name__)


#: Largest frame (pixels) quantified in the worker thread beside the detector's map (2048 x 2048).
MAX_PARALLEL_PX = 2048 * 2048


class ColumnCache:
    """``cache(frame) -> ColumnQuantification | None``, computed once per frame object.

    None when no lattice is found (logged once). The last ``size`` frames are kept by identity,
    so the detector and the evidence step of one frame share one quantification, also when the
    movie loop maps the next frames ahead in another thread (:mod:`stem2d.predict.prefetch`): with
    one frame queued ahead, the frame in the evidence step, the queued one and the one being
    mapped make 3 (each holds frame-sized coordinate maps: ~250 MB at 3200 x 3200 px).

    :meth:`start` quantifies a frame in a worker thread of the cache's own, so the movie loop
    runs it beside the U-Net map of the same frame (on 2 cores the column work, the costliest
    step, no longer waits for the map); a later ``cache(frame)`` waits for that result.

    The frames of a movie share one lattice: each frame's lattice fit starts from the basis of
    the frame handed to the cache before it (``basis_hint`` of
    :func:`~stem2d.lattice.columns.fit_lattice`, which skips the Bragg search unless the hint
    does not fit). The hint follows the order of the calls, not which thread finishes first,
    so the results do not depend on timing.
    """

    def __init__(self, *, material: Material, pixel_size_A: float, size: int = 3):
        self.material, self.pixel_size_A = material, float(pixel_size_A)
        self.size = max(1, int(size))
        self._entries: list[tuple[np.ndarray, Future]] = []
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._warned = False
        # the basis the next frame starts from: that of the frame handed in last (its fit's, or
        # the hint it got when it has none)
        self._basis: Future | None = None

    def start(self, frame: np.ndarray) -> None:
        """Begin quantifying ``frame`` in the worker thread (no-op if known, and for frames over
        :data:`MAX_PARALLEL_PX` pixels: those are quantified when asked, so the quantification's
        frame-sized temporaries do not add to the U-Net's)."""
        if np.size(frame) > MAX_PARALLEL_PX:
            return
        with self._lock:
            if any(known is frame for known, _ in self._entries):
                return
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stem2d-columns")
            hint, basis = self._next_basis()
            future = self._pool.submit(self._quantify, frame, hint, basis)
            future.add_done_callback(lambda f: f.cancelled() and _pass_on(hint, basis))
            self._remember(frame, future)

    def __call__(self, frame: np.ndarray) -> ColumnQuantification | None:
        with self._lock:
            future = next((f for known, f in self._entries if known is frame), None)
        if future is not None:
            return future.result()  # waits while the worker is still on it
        with self._lock:
            links = self._next_basis()
        value = self._quantify(frame, *links)
        done: Future = Future()
        done.set_result(value)
        with self._lock:
            self._remember(frame, done)
        return value

    def close(self) -> None:
        """Stop the worker thread (after the frame it is on)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _remember(self, frame: np.ndarray, future: Future) -> None:
        self._entries = [*self._entries, (frame, future)][-self.size:]

    def _next_basis(self) -> tuple[Future | None, Future]:
        """(the hint of the frame handed in now, where its basis goes); call under the lock."""
        hint, self._basis = self._basis, Future()
        return hint, self._basis

    def _quantify(self, frame: np.ndarray, hint: Future | None, basis: Future) -> ColumnQuantification | None:
        guess = None
        try:
            guess = None if hint is None else hint.result()
            quant = quantify_columns(frame, material=self.material, pixel_size_A=self.pixel_size_A,
                                     basis_hint=guess)
            guess = quant.lattice.basis
            return quant
        except ValueError as err:
            if not self._warned:
                log.warning("column quantification failed (%s): detections get no column evidence", err)
                self._warned = True
            return None
        finally:  # always set: the next frame waits for it
            basis.set_result(guess)


def _pass_on(hint: Future | None, basis: Future) -> None:
    """A frame cancelled before it was quantified (:meth:`ColumnCache.close`) hands its hint on."""
    if hint is None:
        basis.set_result(None)
    else:
        hint.add_done_callback(lambda h: basis.set_result(h.result()))


def column_candidates(quant: ColumnQuantification | None, *, z_threshold: float = 4.0,
                      adatom_z: float = 5.0, min_fit_quality: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Metal and chalcogen columns with ``|z| >= z_threshold`` and hollows with ``z >= adatom_z``.

    ``z`` is the robust z-score of :func:`~stem2d.lattice.columns.quantify_columns` (spread of the
    sublattice over the frame), so the false-alarm rate of intact columns is that of a Gaussian
    tail: ~6e-5 per column at 4 (0.1 per 2,000 columns). Sites whose neighbourhood does not look
    like lattice (``fit_quality < min_fit_quality``: holes, amorphous patches) are skipped.

    Returns
    -------
    points : ndarray, (N, 2), frame pixels of the quantified frame; scores : ndarray, (N,),
    ``min(1, |z| / (2 z_threshold))``.
    """
    if quant is None or len(quant.table) == 0:
        return np.zeros((0, 2)), np.zeros(0)
    t = quant.table
    z = t["z"].to_numpy()
    hollow = (t["sublattice"] == "hollow").to_numpy()
    pick = np.where(hollow, z >= adatom_z, np.abs(z) >= z_threshold)
    pick &= t["fit_quality"].to_numpy() >= min_fit_quality
    pick &= np.isfinite(z)
    points = t.loc[pick, ["row", "col"]].to_numpy()
    return points, np.minimum(1.0, np.abs(z[pick]) / (2 * z_threshold))


def with_column_candidates(
    detector: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    cache: ColumnCache,
    *,
    merge_dist_px: float,
    z_threshold: float = 4.0,
    adatom_z: float = 5.0,
) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """A detector proposing ``detector``'s candidates plus the outlying columns farther than
    ``merge_dist_px`` from all of them."""

    def combined(canon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        points, scores = detector(canon)
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        extra, extra_scores = column_candidates(cache(canon), z_threshold=z_threshold, adatom_z=adatom_z)
        if len(extra) and len(points):
            d = np.hypot(*(extra[:, None, :] - points[None, :, :]).transpose(2, 0, 1)).min(axis=1)
            keep = d > merge_dist_px
            extra, extra_scores = extra[keep], extra_scores[keep]
        return np.concatenate([points, extra]), np.concatenate([scores, extra_scores])

    return combined
