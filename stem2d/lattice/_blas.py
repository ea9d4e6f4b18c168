"""One BLAS thread for the lattice fit: its matrix products are small (frame x ~100 waves), and
on a busy 2-core machine a second OpenBLAS thread spins against the other work (1.08 vs 0.25 s per
frame measured under load)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from threadpoolctl import threadpool_limits


@contextlib.contextmanager
def single_thread_blas() -> Iterator[None]:
    """Run the block with one BLAS thread (threadpoolctl), then restore the previous counts."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield
