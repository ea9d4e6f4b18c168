"""Overlap the two halves of a frame loop on two cores: ``prefetched(fn, items)``.

The movie loop has a front half (read, resample, U-Net map) and a back half (classify, drift,
overlay, video). :func:`prefetched` runs the front half of frame k+1 in a background thread
while the caller does the back half of frame k. torch, numpy's FFT/BLAS, scipy.ndimage and
Pillow release the GIL in their heavy loops, so on an idle 2-core machine a frame costs about
max(front, back) instead of front + back; with ``depth=0`` everything runs in the caller's
thread (the plain loop, e.g. to profile it).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

__all__ = ["prefetched"]

T = TypeVar("T")
R = TypeVar("R")

_DONE = object()


def prefetched(fn: Callable[[T], R], items: Iterable[T], *, depth: int = 1) -> Iterator[R]:
    """``fn(item)`` for every item, in order, computed up to ``depth`` items ahead in a thread.

    Parameters
    ----------
    fn : callable
        The front half of the loop for one item; it runs in one background thread, one item at
        a time and in order (state it keeps between items is safe).
    items : iterable
    depth : int, keyword-only, default 1
        Results computed ahead of the caller (memory: ``depth + 1`` results at most alive);
        0 computes each result in the caller's thread when it is needed.

    Yields
    ------
    ``fn(item)`` in the order of ``items``. An exception raised by ``fn`` is raised here, at
    the item it failed on; if the caller stops early (break, exception, ``close()``) the thread
    stops after the item it is working on.
    """
    if int(depth) < 0:
        raise ValueError(f"depth={depth} must be >= 0")
    if int(depth) == 0:
        for item in items:
            yield fn(item)
        return
    results: queue.Queue = queue.Queue(maxsize=int(depth))
    stop = threading.Event()

    def put(out: tuple) -> None:
        """Queue ``out`` unless the caller has stopped listening."""
        while not stop.is_set():
            try:
                results.put(out, timeout=0.1)
                return
            except queue.Full:
                continue

    def work() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                put((True, fn(item)))
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            put((False, err))
            return
        put((True, _DONE))

    thread = threading.Thread(target=work, name="stem2d-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, value = results.get()
            if not ok:
                raise value
            if value is _DONE:
                return
            yield value
    finally:
        stop.set()
        thread.join()
