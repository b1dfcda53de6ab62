"""``threads``: a thread pool over chunks of the pure-Python loop.

Serialised by the GIL on standard CPython (the guide's point); parallel on free-threaded builds.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from partally.backends._common import split_range
from partally.backends.base import Backend
from partally.workloads import Workload

_CHUNK = 2**16  # elements per task: a cancelled run stops within one chunk's time


class ThreadsBackend(Backend):
    name = "threads"
    family = "Python"
    runs_python = True
    gil_bound = True
    uses_workers = True

    def __init__(self) -> None:
        self._pools: dict[int, ThreadPoolExecutor] = {}
        self._lock = threading.Lock()

    def _pool(self, workers: int) -> ThreadPoolExecutor:
        """The pool for this many workers, kept for later calls; a pool of another size is retired."""
        with self._lock:
            if workers not in self._pools:
                for old in self._pools.values():
                    old.shutdown(wait=False, cancel_futures=True)
                self._pools.clear()
                self._pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="partally")
            return self._pools[workers]

    def count(self, workload: Workload, lo: int, hi: int, *, workers: int, seed: int) -> int:
        if hi - lo <= _CHUNK or workers == 1:
            return workload.count_range(lo, hi, seed)
        pieces = split_range(lo, hi, max(workers, -(-(hi - lo) // _CHUNK)))
        pool = self._pool(workers)
        futures = [pool.submit(workload.count_range, a, b, seed) for a, b in pieces]
        try:
            return sum(future.result() for future in futures)
        finally:
            for future in futures:
                future.cancel()

    def close(self) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.shutdown(wait=False, cancel_futures=True)
            self._pools.clear()
