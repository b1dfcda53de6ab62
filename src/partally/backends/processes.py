"""``processes``: a process pool over chunks of the pure-Python loop (the guide's multiprocessing).

One pool is started on first use and kept: a warm pool answers a small call in well under a
millisecond, a new one costs tens of milliseconds. Workers ignore SIGINT, so Ctrl-C reaches only
this process, which then kills the pool: no worker outlives an interrupted run or the interpreter,
and a worker whose parent is killed outright exits within half a second.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from partally.backends._common import split_range
from partally.backends.base import Backend
from partally.workloads import Workload

_TASKS_PER_WORKER = 4  # a little slack for uneven chunks (primes)
_MIN_TASK = 10_000  # elements: a task's round trip costs ~0.3 ms, 10**4 pure-Python steps more


def _start_worker(parent: int) -> None:
    """In each worker: leave Ctrl-C to the parent, and exit when the parent is gone (killed)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_without, args=(parent,), daemon=True).start()


def _exit_without(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _count_task(workload: Workload, lo: int, hi: int, seed: int) -> int:
    return workload.count_range(lo, hi, seed)


_main_lock = threading.Lock()


@contextlib.contextmanager
def _main_script_hidden() -> Iterator[None]:
    """Keep spawned workers from re-running the parent's main script.

    A spawned worker imports the parent's ``__main__`` (by ``__spec__`` or ``__file__``) before it
    takes a task: that fails for a script piped into ``python -`` and, in a script without an
    ``if __name__ == "__main__":`` guard, starts the whole script again in every worker. Workers
    need nothing from it (user workloads travel by value, with cloudpickle), and they start on
    ``submit``: submitting inside this context hides both.
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    with _main_lock:
        saved = {name: vars(main)[name] for name in ("__file__", "__spec__") if name in vars(main)}
        vars(main).pop("__file__", None)
        if "__spec__" in saved:
            main.__spec__ = None
        try:
            yield
        finally:
            for name, value in saved.items():
                setattr(main, name, value)


class ProcessesBackend(Backend):
    name = "processes"
    family = "Python"
    runs_python = True
    uses_workers = True
    has_startup = True

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._pool_workers = 0
        self._lock = threading.RLock()
        atexit.register(self.close, kill=True)

    @property
    def started(self) -> bool:
        return self._pool is not None

    def _get_pool(self, workers: int) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None or self._pool_workers != workers:
                self.close()
                # spawn: safe beside threads (Numba's, the caller's); the pool is kept, so its
                # start-up cost is paid once.
                context = multiprocessing.get_context("spawn")
                self._pool = ProcessPoolExecutor(
                    workers, mp_context=context, initializer=_start_worker, initargs=(os.getpid(),)
                )
                self._pool_workers = workers
            return self._pool

    def worker_pids(self) -> list[int]:
        """Process ids of the live pool's workers (empty when no pool is running)."""
        pool = self._pool
        return [] if pool is None else sorted(pool._processes)  # noqa: SLF001

    def close(self, kill: bool = False) -> None:
        """Stop the pool (at once, killing its workers, if ``kill``); the next call starts one."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is None:
            return
        if kill:
            processes = list(pool._processes.values())  # noqa: SLF001
            pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.kill()
            for process in processes:
                process.join()
        pool.shutdown(wait=True, cancel_futures=True)

    def count(self, workload: Workload, lo: int, hi: int, *, workers: int, seed: int) -> int:
        parts = min(workers * _TASKS_PER_WORKER, -(-(hi - lo) // _MIN_TASK))
        pieces = split_range(lo, hi, parts)
        if not pieces:
            return 0
        pool = self._get_pool(workers)
        try:
            with _main_script_hidden():
                futures = [pool.submit(_count_task, workload, a, b, seed) for a, b in pieces]
            return sum(future.result() for future in futures)
        except BrokenProcessPool as exc:
            self.close(kill=True)
            raise RuntimeError(
                "a worker process of the 'processes' backend died; run again"
            ) from exc
        except BaseException:  # Ctrl-C or an error: no partial sum, no worker left running
            self.close(kill=True)
            raise
