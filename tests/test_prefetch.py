"""prefetched(): the front half of a frame loop one item ahead in a thread."""

import threading
import time

import pytest

from stem2d.predict.prefetch import prefetched


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_results_in_order_and_same_as_plain_loop(depth):
    assert list(prefetched(lambda x: x * x, range(20), depth=depth)) == [x * x for x in range(20)]


def test_work_runs_ahead_in_another_thread():
    threads, started = [], []

    def fn(x):
        threads.append(threading.get_ident())
        started.append(x)
        return x

    it = prefetched(fn, range(5), depth=1)
    assert next(it) == 0
    time.sleep(0.2)
    assert started[:2] == [0, 1]           # item 1 was computed while the caller held item 0
    assert set(threads) != {threading.get_ident()}
    assert list(it) == [1, 2, 3, 4]


def test_error_is_raised_at_its_item():
    def fn(x):
        if x == 3:
            raise ValueError("frame 3 is broken")
        return x

    got = []
    with pytest.raises(ValueError, match="frame 3"):
        for x in prefetched(fn, range(10), depth=2):
            got.append(x)
    assert got == [0, 1, 2]


def test_stopping_early_stops_the_thread():
    calls = []
    it = prefetched(lambda x: calls.append(x) or x, range(1000), depth=1)
    for x in it:
        if x == 2:
            break
    it.close()
    assert not any(t.name == "stem2d-prefetch" for t in threading.enumerate())
    assert len(calls) <= 5
    with pytest.raises(ValueError, match="depth"):
        list(prefetched(lambda x: x, range(3), depth=-1))
