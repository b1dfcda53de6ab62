"""The backend base class: the small face every backend has, and what it declares it can do."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar

from partally._machine import cores, cpu_device, gil_enabled
from partally._settings import text
from partally.workloads import Workload

Made = TypeVar("Made")
Progress = Callable[[int, int], None]  # progress(done, total): elements of [lo, hi) finished
_LIVE: weakref.WeakSet[Backend] = weakref.WeakSet()  # every backend object, for os.fork


def _after_fork_in_child() -> None:
    for backend in list(_LIVE):
        backend.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class PerWorkload(Generic[Made]):
    """What a backend makes once per workload (a compiled kernel), kept for later calls.

    Kept by ``Workload.key`` (its name and a hash of its code): new function objects with the
    same code, a lambda made in a loop, reuse what the first one made.
    """

    def __init__(self, make: Callable[[Workload], Made]) -> None:
        self._make = make
        self._made: dict[str, Made] = {}
        self._lock = threading.Lock()

    def __call__(self, workload: Workload) -> Made:
        try:
            return self._made[workload.key]
        except KeyError:
            with self._lock:  # made once, even when several threads ask at once
                if workload.key not in self._made:
                    self._made[workload.key] = self._make(workload)
                return self._made[workload.key]

    def __bool__(self) -> bool:
        return bool(self._made)


class Backend:
    """One way to run a workload over a range.

    A backend says whether it can run here (``unavailable``), whether it can run a given workload
    and its reduction (``supports``), what it runs on (``device``), and runs it (``run``: the
    partial of ``workload.reduction`` over [lo, hi), which the caller merges and finishes). The
    class attributes declare its capabilities; the dispatcher, the calibration and the bench
    read them.
    """

    name: ClassVar[str]
    family: ClassVar[str] = ""  # the code path it runs ("Python", "Numba", "C++"); "" never votes
    runs_python: ClassVar[bool] = False  # runs the workload's pure-Python loop
    compiled: ClassVar[bool] = False  # compiles the workload (so `count` folds to hi - lo)
    python_threads: ClassVar[bool] = False  # its workers are Python threads of this process
    uses_workers: ClassVar[bool] = False  # whether ``workers`` changes anything
    has_startup: ClassVar[bool] = False  # a one-time start per process: JIT, pool, context
    gpu: ClassVar[bool] = False  # runs on a GPU
    remote: ClassVar[bool] = False  # runs on a cluster: auto times and picks it only if configured
    args_travel: ClassVar[str] = ""  # how a call's args reach its workers; "": it takes none
    setting: ClassVar[str] = ""  # remote: the environment variable that names its cluster

    def __new__(cls, *args: object, **kwargs: object) -> Backend:
        made = super().__new__(cls)
        _LIVE.add(made)  # told when the process forks
        return made

    @property
    def gil_bound(self) -> bool:
        """Whether its workers take turns on this process's GIL: Python threads while the GIL is
        on. On a free-threaded build with the GIL off they run in parallel, and the calibration,
        ``explain`` and the bench treat the backend as a parallel one."""
        return self.python_threads and gil_enabled()

    def unavailable(self) -> str | None:
        """Why it cannot run here, in words a user can act on; None if it can. Never raises."""
        return None

    def supports(self, workload: Workload, n: int | None = None) -> str | None:
        """Why it cannot run ``workload`` (over [0, n), when n is given: a compiled backend
        trusts a user function per range); None if it can. Never raises."""
        return None

    def refusal(self, workload: Workload, n: int | None = None) -> str | None:
        """Why it cannot run ``workload`` here (over [0, n)): not available here, or not for
        this workload (or its args)."""
        return self.unavailable() or self.args_refusal(workload) or self.supports(workload, n)

    def args_refusal(self, workload: Workload) -> str | None:
        """Why it cannot take ``workload``'s args, or None."""
        if workload.args and not self.args_travel:
            return (
                "it does not take args (the function's data) yet; run it on python, threads, "
                "processes, numba or ray"
            )
        return None

    def configured(self) -> bool:
        """Whether what it runs on is named in the environment (a remote backend's ``setting``,
        its cluster's address); a local backend always is."""
        return not self.setting or text(self.setting) is not None

    def device(self) -> str:
        """What it runs on, e.g. ``'CPU: AMD EPYC (2 cores)'``."""
        return cpu_device()

    @property
    def started(self) -> bool:
        """Whether its one-time start has happened in this process."""
        return True

    def default_workers(self) -> int:
        """The ``workers`` of a call that names none: every core this process may use."""
        return cores()

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
        """The partial of ``workload.reduction`` over [lo, hi), with up to ``workers`` workers.

        ``progress(done, total)``, when given, is called in the caller's thread as pieces finish:
        ``done`` elements of the ``total`` = hi - lo are finished (it ends at total).
        """
        raise NotImplementedError

    def count(self, workload: Workload, lo: int, hi: int, **options: Any) -> int:
        """How many i in [lo, hi) a count workload holds for: ``run``'s partial, which is the
        count (``ValueError`` for a workload that reduces otherwise)."""
        if workload.reduce != "count":
            raise ValueError(
                f"count() runs count workloads; {workload.name!r} has reduce={workload.reduce!r}: "
                "use run() and workload.reduction.finish()"
            )
        return self.run(workload, lo, hi, **options)

    def close(self) -> None:
        """Release what it holds (pools, clusters); the next ``run`` starts them again."""

    def after_fork_in_child(self) -> None:
        """In a child made by ``os.fork()``: drop what does not survive fork (pools, threads,
        locks held by threads that are gone); the next ``run`` starts afresh or refuses."""

    def __repr__(self) -> str:
        return f"<backend {self.name!r}>"
