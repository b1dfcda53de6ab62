"""``threads``: a thread pool over chunks of the pure-Python loop.

Serialised by the GIL on standard CPython (the guide's point); parallel on free-threaded builds.

One pool, sized to the cores, is started on first use and shared by every call, whatever its
``workers``: a call keeps at most ``workers`` of its chunks in flight (so ``workers`` limits the
call's share, never the pool), and submits the next chunk only when one is done, so memory does
not grow with n and Ctrl-C leaves nothing queued. ``workers`` above the cores is capped to the
cores. A child made by ``os.fork()`` drops the pool it inherited (its threads do not survive fork)
and starts its own on first use.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from partally._machine import cores
from typing import Any

from partally.backends._common import Tally, capped_workers, run_on_pool, slices
from partally.backends.base import Backend, Progress
from partally.workloads import Workload
from partally.workloads.base import running

_CHUNK = 2**16  # elements per task: a cancelled run stops within one chunk's time


class ThreadsBackend(Backend):
    name = "threads"
    args_travel = "the caller's arrays themselves, read in place"
    family = "Python"
    runs_python = True
    python_threads = True  # so gil_bound: serialised while the GIL is on
    uses_workers = True

    def __init__(self) -> None:
        self._pool_: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _pool(self) -> ThreadPoolExecutor:
        """The shared pool (one thread per core at most, started as tasks need them)."""
        with self._lock:
            if self._pool_ is None:
                self._pool_ = ThreadPoolExecutor(cores(), thread_name_prefix="partally-threads")
            return self._pool_

    def run(
        self,
        workload: Workload,
        lo: int,
        hi: int,
        *,
        workers: int,
        seed: int,
        progress: Progress | None = None,
    ) -> Any:
        workers = capped_workers(workers)
        if running() or ((hi - lo <= _CHUNK or workers == 1) and progress is None):
            return workload.run_range(lo, hi, seed)  # running(): nested, the pool may be all busy
        return run_on_pool(
            self._pool,
            lambda pool, piece: pool.submit(workload.run_range, piece[0], piece[1], seed),
            lambda pool: pool is not self._pool_,  # closed meanwhile: the rest goes to a new one
            slices(lo, hi, _CHUNK),
            workers,
            workload.reduction,
            Tally(progress, hi - lo),
        )

    def close(self) -> None:
        with self._lock:
            pool, self._pool_ = self._pool_, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def after_fork_in_child(self) -> None:
        # The inherited pool's threads do not exist here, and its lock may have been held by a
        # thread that does not exist either: start afresh (the old pool is dropped, not shut down).
        self._lock = threading.Lock()
        self._pool_ = None
