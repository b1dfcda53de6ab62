"""What the cluster backends (``ray``, ``celery``) share: the base class, the chunk plan, the task
body that runs on a worker, and one bounded submit/wait/merge loop.

A cluster backend declares that it is remote (``remote``) and whether a cluster is named in the
environment (``configured()``): ``auto`` and the calibration time and choose it only then. Its
adapter connects (``connect()``) and hands back a ``Tasks`` for one count: submit a chunk, wait
for some, read a finished one's result, cancel the rest. Everything else is here.

On a worker, a chunk runs on the fastest CPU kernel the worker has (numba, else native, else the
Python loop) with one thread, and returns that kernel's partial of the workload's reduction; the
driver merges the partials (``workload.reduction.merge``) as they finish, in any order.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from partally.backends import get as get_backend
from partally.backends._common import Tally, iter_range
from partally.backends.base import Backend, Progress
from partally.workloads import Workload

TASKS_PER_CPU = 4  # slack for uneven chunks, slower nodes and retries
LONGEST = 100  # a chunk is at most this many times the workload's task_min (~1 s of one core)
WHOLE_CLUSTER = 2**31  # ``workers`` that the cluster's own size caps
KERNELS = ("numba", "native", "python")  # the order a worker tries them in


# --- on the worker -----------------------------------------------------------------------------


@functools.cache
def worker_kernel(workload: Workload | None = None) -> str:
    """The fastest CPU backend available in this (worker) process that runs ``workload``."""
    for name in KERNELS:
        backend = get_backend(name)
        if (backend.unavailable() if workload is None else backend.refusal(workload)) is None:
            return name
    return "python"


def run_chunk(
    workload: Workload, lo: int, hi: int, seed: int, args: tuple[Any, ...] = ()
) -> Any:
    """One task's body: [lo, hi) on this worker's fastest kernel, on one thread: its partial
    (over ``args``, the call's data as the task received it; the kernel is chosen for the
    workload, never per data)."""
    name = worker_kernel(workload)
    return get_backend(name).run(workload.with_args(args), lo, hi, workers=1, seed=seed)


# --- on the driver -----------------------------------------------------------------------------


def plan(workload: Workload, lo: int, hi: int, cpus: int) -> Iterator[tuple[int, int]]:
    """The chunks [lo, hi) is cut into for ``cpus`` CPUs, one at a time: a few per CPU, none
    shorter than ``task_min`` (~10 ms of one core), none longer than about a second (a chunk
    that Ctrl-C cannot stop, or that a lost worker takes with it, stays short)."""
    size = hi - lo
    most_useful = max(1, size // workload.task_min)
    fewest_short = -(-size // (LONGEST * workload.task_min))
    return iter_range(lo, hi, max(min(cpus * TASKS_PER_CPU, most_useful), fewest_short))


class Tasks(Protocol):
    """One count's hold on a connected cluster: what an adapter implements."""

    def cpus(self) -> int:
        """How many chunks the cluster runs at once (its CPUs, or its worker processes)."""

    def submit(self, workload: Workload, lo: int, hi: int, seed: int) -> Any:
        """Send one chunk; a handle for it."""

    def wait(self, handles: list[Any]) -> tuple[list[Any], list[Any]]:
        """(finished, still running) among ``handles``: at least one finished, or none after a
        short while (about a second) so that the caller gets control back; raises when the
        cluster is lost."""

    def result(self, handle: Any) -> Any:
        """A finished chunk's partial (raises its error)."""

    def cancel(self, handles: list[Any]) -> None:
        """Stop chunks that are queued or running (Ctrl-C or an error): never raises."""

    def release(self, handles: Iterable[Any]) -> None:
        """Forget chunks whose results were read (results the cluster keeps): never raises."""


def run_tasks(
    tasks: Tasks,
    workload: Workload,
    pieces: Iterable[tuple[int, int]],
    in_flight: int,
    seed: int,
    tally: Tally | None = None,
) -> Any:
    """Submit each piece, at most ``in_flight`` at once, and merge their partials as they finish
    (``tally`` is told each piece merged).

    On any exception (Ctrl-C included) the chunks still pending are cancelled; every chunk's
    result is released at the end."""
    reduction = workload.reduction
    pending: list[Any] = []
    finished: list[Any] = []
    sizes: dict[int, int] = {}  # id(handle) -> elements in its piece
    total = reduction.zero()

    def collect() -> None:
        nonlocal total
        done, pending[:] = tasks.wait(pending)
        finished.extend(done)  # all of them, before a result can raise: each one is released
        for handle in done:
            total = reduction.merge(total, tasks.result(handle))
            if tally is not None:
                tally.add(sizes.pop(id(handle), 0))

    try:
        for a, b in pieces:
            while len(pending) >= in_flight:
                collect()
            pending.append(tasks.submit(workload, a, b, seed))
            sizes[id(pending[-1])] = b - a
        while pending:
            collect()
        return total
    finally:
        if pending:
            tasks.cancel(pending)
        tasks.release([*finished, *pending])


class ClusterBackend(Backend):
    """A backend whose chunks run as tasks on other processes or machines (see the module)."""

    remote = True
    uses_workers = True
    has_startup = True

    def unreachable(self) -> str | None:
        """Why the configured cluster cannot take work right now (asked by ``auto`` before it
        chooses this backend; within seconds); None if it can."""
        return None

    def refusal(self, workload: Workload, n: int | None = None) -> str | None:
        found = super().refusal(workload, n)
        if found is None and self.configured():
            found = self.unreachable()
        return found

    def default_workers(self) -> int:
        """Every CPU of the cluster: the caller's own cores do not cap it."""
        return WHOLE_CLUSTER

    def connect(self) -> Tasks:
        """The cluster, connected, for one count (``BackendUnavailable`` within seconds if not)."""
        raise NotImplementedError

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
        if hi <= lo:
            return workload.reduction.zero()
        tasks = self.connect()
        cpus = min(workers, tasks.cpus())
        in_flight = min(workers, cpus * TASKS_PER_CPU)
        pieces = plan(workload, lo, hi, cpus)
        return run_tasks(tasks, workload, pieces, in_flight, seed, Tally(progress, hi - lo))
