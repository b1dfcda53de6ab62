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

from partally.backends._common import cpu_device, split_range
from partally.workloads import count_range

NAME = "processes"
PARALLEL = True
_TASKS_PER_WORKER = 4  # a little slack for uneven chunks (primes)
_MIN_TASK = 10_000  # elements: a task's round trip costs ~0.3 ms, 10**4 pure-Python steps more

_pool: ProcessPoolExecutor | None = None
_pool_workers = 0

device = cpu_device


def unavailable() -> str | None:
    return None


def _start_worker(parent: int) -> None:
    """In each worker: leave Ctrl-C to the parent, and exit when the parent is gone (killed)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_without, args=(parent,), daemon=True).start()


def _exit_without(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _get_pool(workers: int) -> ProcessPoolExecutor:
    global _pool, _pool_workers
    if _pool is None or _pool_workers != workers:
        shutdown()
        # spawn: safe beside threads (Numba's, the caller's); the pool is kept, so its start-up
        # cost is paid once.
        context = multiprocessing.get_context("spawn")
        _pool = ProcessPoolExecutor(
            workers, mp_context=context, initializer=_start_worker, initargs=(os.getpid(),)
        )
        _pool_workers = workers
    return _pool


@contextlib.contextmanager
def _main_script_hidden() -> Iterator[None]:
    """Hide a ``__main__.__file__`` that names no file (a script piped into ``python -``).

    A spawned worker re-runs the parent's main script, and fails on "<stdin>"; workers start on
    ``submit``, so submitting inside this context lets such scripts use the pool.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is None or os.path.isfile(path):
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


def worker_pids() -> list[int]:
    """Process ids of the live pool's workers (empty when no pool is running)."""
    return [] if _pool is None else sorted(_pool._processes)  # noqa: SLF001


def shutdown(kill: bool = False) -> None:
    """Stop the pool (at once, killing its workers, if ``kill``); the next call starts a new one."""
    global _pool
    pool, _pool = _pool, None
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


atexit.register(shutdown, kill=True)


def count(workload: str, lo: int, hi: int, *, workers: int, seed: int) -> int:
    pieces = split_range(lo, hi, min(workers * _TASKS_PER_WORKER, -(-(hi - lo) // _MIN_TASK)))
    if not pieces:
        return 0
    pool = _get_pool(workers)
    try:
        with _main_script_hidden():
            futures = [pool.submit(count_range, workload, a, b, seed) for a, b in pieces]
        return sum(future.result() for future in futures)
    except BrokenProcessPool as exc:
        shutdown(kill=True)
        raise RuntimeError("a worker process of the 'processes' backend died; run again") from exc
    except BaseException:  # Ctrl-C or an error: no partial sum, no worker left running
        shutdown(kill=True)
        raise
