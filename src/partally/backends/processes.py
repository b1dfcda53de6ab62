"""``processes``: a process pool over chunks of the pure-Python loop (the guide's multiprocessing).

One pool, sized to the cores, is started on first use and kept: a warm pool answers a small call
in well under a millisecond, a new one costs tens of milliseconds. Every call shares it, whatever
its ``workers``: a call keeps at most ``workers`` of its pieces in flight (``workers`` limits the
call's share, never the pool; above the cores it is capped to the cores), submitting the next only
when one is done. Calls from several threads at once each get their exact count; a call whose pool
is closed beneath it (by another call's Ctrl-C, or ``close()``) counts its remaining pieces on the
next pool. Workers ignore SIGINT, so Ctrl-C reaches only this process, which then kills the pool:
no worker outlives an interrupted run or the interpreter, and a worker whose parent is killed
outright exits within half a second. A child made by ``os.fork()`` drops the pool it inherited
(the pool's manager thread does not survive fork, its workers are its parent's) and starts its own.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import multiprocessing.util
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from partally._errors import BackendFailed
from partally._machine import cores
from partally.backends import _shared
from partally.backends._common import Tally, capped_workers, iter_range, run_on_pool
from partally.backends.base import Backend, Progress
from partally.workloads import Workload, data

_TASKS_PER_WORKER = 4  # a little slack for uneven chunks (primes)
_MIN_TASK = 10_000  # elements: a task's round trip costs ~0.3 ms, 10**4 pure-Python steps more
_MAX_TASK = 2**20  # elements: a task ends within about a second (an error stops the call soon)
_INHERITED: list[object] = []  # pools a forked child inherited: kept, never touched, never freed


def _start_worker(parent: int) -> None:
    """In each worker: leave Ctrl-C to the parent, and exit when the parent is gone (killed)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_without, args=(parent,), daemon=True).start()


def _exit_without(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _run_task(workload: Workload, lo: int, hi: int, seed: int) -> Any:
    return workload.run_range(lo, hi, seed)


@contextlib.contextmanager
def _main_script_hidden(lock: threading.Lock) -> Iterator[None]:
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
    with lock:  # one submitter at a time changes __main__
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
    args_travel = (
        "copied once per call into shared memory, attached once per worker process, removed "
        "after the call"
    )
    family = "Python"
    runs_python = True
    uses_workers = True
    has_startup = True

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.RLock()
        self._active = 0  # calls counting now
        self._seen: dict[int, multiprocessing.Process] = {}  # the current pool's workers, by pid
        self._main_lock = threading.Lock()  # one submitter at a time changes __main__
        self._exit_pid = 0  # the process whose multiprocessing exit stops the pool
        atexit.register(self.close, kill=True)

    @property
    def started(self) -> bool:
        return self._pool is not None

    def _get_pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                # spawn: safe beside threads (Numba's, the caller's); the pool is kept, so its
                # start-up cost is paid once. Its workers start as tasks need them.
                context = multiprocessing.get_context("spawn")
                self._pool = ProcessPoolExecutor(
                    cores(), mp_context=context, initializer=_start_worker, initargs=(os.getpid(),)
                )
                self._seen = {}
                if self._exit_pid != os.getpid():
                    # A process started by multiprocessing (any start method) runs no atexit
                    # handlers: at its exit it joins its children, the pool's workers among them,
                    # which would wait for work forever. Its exit runs these finalizers first.
                    multiprocessing.util.Finalize(
                        None, self.close, kwargs={"kill": True}, exitpriority=100
                    )
                    self._exit_pid = os.getpid()
            return self._pool

    def worker_pids(self) -> list[int]:
        """Process ids of the live pool's workers (empty when no pool is running)."""
        pool = self._pool
        return [] if pool is None else sorted(pool._processes)  # noqa: SLF001

    def close(self, kill: bool = False) -> None:
        """Stop the pool (at once, killing its workers, if ``kill``); the next call starts one."""
        with self._lock:
            pool = self._pool
        if pool is not None:
            self._retire(pool, kill)

    def _retire(self, pool: ProcessPoolExecutor, kill: bool) -> None:
        """Stop ``pool`` (not a newer one another call may have started meanwhile)."""
        with self._lock:
            if self._pool is pool:
                self._pool = None
        if kill:
            processes = list(pool._processes.values())  # noqa: SLF001
            pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.kill()
            for process in processes:
                process.join()
        pool.shutdown(wait=True, cancel_futures=True)

    def _submit(self, workload: Workload, seed: int):
        def submit(pool: ProcessPoolExecutor, piece: tuple[int, int]):
            with _main_script_hidden(self._main_lock):  # workers start on submit
                future = pool.submit(_run_task, workload, piece[0], piece[1], seed)
            with contextlib.suppress(RuntimeError):  # changed size meanwhile: seen next time
                self._seen.update(pool._processes or {})  # noqa: SLF001 - to say how one died
            return future

        return submit

    def _died(self, pool: ProcessPoolExecutor) -> str:
        """How the pool's dead worker ended, in words ('' if unknown)."""
        ends = []
        processes = list(self._seen.values())
        deadline = time.monotonic() + 1.0  # the pool's manager thread reaps them meanwhile
        while any(p.exitcode is None for p in processes) and time.monotonic() < deadline:
            time.sleep(0.02)
        for process in processes:
            code = process.exitcode
            if code is not None and code < 0:
                try:
                    ends.append(f"killed by {signal.Signals(-code).name}")
                except ValueError:
                    ends.append(f"killed by signal {-code}")
            elif code:
                ends.append(f"exit code {code}")
        causes = set(ends) - {"killed by SIGTERM"} or set(ends)  # the pool SIGTERMs the others
        return f" ({', '.join(sorted(causes))})" if causes else ""

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
        size = hi - lo
        if size <= 0:
            return workload.reduction.zero()
        if data.arrays(workload.args):  # placed once in shared memory, removed whatever happens
            with _shared.placed(workload.args) as shipped:
                return self._run(workload.bare(shipped), lo, hi, workers, seed, progress)
        return self._run(workload, lo, hi, workers, seed, progress)

    def _run(
        self,
        workload: Workload,
        lo: int,
        hi: int,
        workers: int,
        seed: int,
        progress: Progress | None,
    ) -> Any:
        size = hi - lo
        workers = capped_workers(workers)
        parts = max(workers * _TASKS_PER_WORKER, -(-size // _MAX_TASK))
        parts = min(parts, -(-size // _MIN_TASK))
        used: list[ProcessPoolExecutor] = []

        def acquire() -> ProcessPoolExecutor:
            used.append(self._get_pool())
            return used[-1]

        with self._lock:
            self._active += 1
        try:
            return run_on_pool(
                acquire,
                self._submit(workload, seed),
                lambda pool: pool is not self._pool,  # retired meanwhile: run the rest anew
                iter_range(lo, hi, parts),
                workers,
                workload.reduction,
                Tally(progress, size),
            )
        except BrokenProcessPool as exc:
            died = self._died(used[-1])
            self._retire(used[-1], kill=True)
            raise BackendFailed(
                f"a worker process of the 'processes' backend died{died} while counting "
                f"{workload.name!r}; the pool was stopped and the next call starts a new one: "
                "run again"
            ) from exc
        except BaseException as exc:
            # Ctrl-C: no worker left running. Another error: the pieces still running would go on
            # for a while; stop them too, unless other calls are using the pool.
            if used and (not isinstance(exc, Exception) or self._active == 1):
                self._retire(used[-1], kill=True)
            raise
        finally:
            with self._lock:
                self._active -= 1

    def after_fork_in_child(self) -> None:
        # The inherited pool's manager thread does not exist here and its workers are the
        # parent's: keep it out of reach (never shut down, never collected, so nothing is sent to
        # the parent's workers), and start afresh on first use.
        pool = self._pool
        if pool is not None:
            _INHERITED.append(pool)
            children = getattr(multiprocessing.process, "_children", None)
            for process in (pool._processes or {}).values():  # noqa: SLF001
                if children is not None:
                    children.discard(process)  # so multiprocessing's exit does not wait on them
        self._pool = None
        self._seen = {}
        self._active = 0
        self._lock = threading.RLock()
        self._main_lock = threading.Lock()
