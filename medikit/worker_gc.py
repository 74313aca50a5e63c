"""The garbage collector of a serving process, set the same way wherever the API runs:
gunicorn's workers (``post_fork`` in gunicorn.conf.py) and the in-process benchmarks that
measure the API as a worker runs it (bench/bench_api.py)."""

from __future__ import annotations

import gc

from medikit.env import env_int

#: Collections of the youngest generation run after this many new container objects
#: (CPython's default is 700); ``GUNICORN_GC_THRESHOLD``, 0 keeps Python's default.
DEFAULT_THRESHOLD = 50_000


def configured_threshold() -> int:
    return env_int("GUNICORN_GC_THRESHOLD", DEFAULT_THRESHOLD)


def tune(threshold: int) -> None:
    """Freeze what is loaded so far and collect less often (Instagram's recipe for forked
    servers).

    ``gc.freeze()`` moves everything loaded before the fork (the whole application) out of
    the collector's reach: it is never garbage, and scanning it would also dirty the
    memory pages the workers share with the master. A higher first threshold collects less
    often: the search caches hold many thousands of objects, and each full collection
    paused every thread of a worker. Measured on 2 cores (bench/load.py, 150 s mix): mixed
    load p99 557 -> 315 ms and 333 -> 368 req/s (docs/benchmarks.md). In one process
    serving uncached Slot pages, the collector took ~0.9 ms per request with Python's
    defaults and ~0.15 ms with these settings.
    """
    gc.freeze()
    if threshold > 0:
        gc.set_threshold(threshold, 20, 100)
