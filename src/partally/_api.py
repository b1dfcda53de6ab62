"""The computing core's public face: ``compute`` and ``backends``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from partally import _validate
from partally._errors import BackendUnavailable
from partally.auto import dispatcher
from partally.backends import get as get_backend
from partally.backends import names as backend_names
from partally.workloads import Workload
from partally.workloads.base import running


@dataclass(frozen=True)
class BackendInfo:
    """One backend as ``partally.backends()`` reports it."""

    name: str
    available: bool
    reason: str | None  # why it is not available, None if it is
    device: str  # what it runs on, in words


def backends() -> list[BackendInfo]:
    """Every backend partally knows, whether it can run here, why not, and on what."""
    infos = []
    for name in backend_names():
        backend = get_backend(name)
        reason = backend.unavailable()
        infos.append(BackendInfo(name, reason is None, reason, backend.device()))
    return infos


def compute(
    n: int,
    backend: str = "auto",
    workload: str | Workload | Callable[[int, int], object] = "count",
    *,
    reduce: str | None = None,
    workers: int | None = None,
    seed: int = 0,
    progress: Callable[[int, int], object] | None = None,
    args: tuple[Any, ...] = (),
) -> Any:
    """Reduce v(i) = workload(i, seed) over the integers i in [0, n), on ``backend``; by default
    count the i that satisfy ``workload``.

    ``workload`` is "count" (every i), "primes" (i is prime; n <= 2**32), "pi" (i's
    pseudo-random point falls in the quarter circle; ``seed`` picks the points), or your own
    function ``f(i, seed)`` (plain or made with ``@partally.workload``). ``backend="auto"``
    picks the fastest available backend for this n here; a named backend that cannot run here
    raises ``BackendUnavailable`` with the reason.

    ``reduce`` (default: the workload's own, else ``"count"``): ``"count"`` an int, the number of
    true values; ``"sum"`` the exact sum (an int for int values, for floats the exact sum
    rounded once); ``"mean"`` the exact sum / n rounded once (a float); ``"min"`` / ``"max"`` an
    ``Extremum(value, index)`` (floats in IEEE total order, ties to the smallest i, NaN wins).
    The same on every backend, whatever ``workers``: bit for bit. ``mean``, ``min`` and ``max``
    of n = 0 raise ``ValueError``; a ``reduce`` that contradicts a decorated workload's own is a
    ``ValueError``.

    ``progress(done, total)``, when given, is called in this thread as pieces of the range finish
    (on every backend): ``done`` of the ``total`` = n elements are finished; the last call has
    done == total (a backend that runs the range as one piece calls it once, at the end; none
    for n = 0).

    ``workers`` defaults to every core (on ``ray`` and ``celery``: every CPU of the cluster); on
    the CPU backends (threads, processes, numba) a larger
    value is capped to the cores this process may use, since more would only wait. It limits how
    many of this call's pieces run at once on a pool shared by all calls, so calls from several
    threads, with different ``workers``, each get their exact count.

    ``args`` (a tuple) is your function's data, passed after ``(i, seed)``: NumPy arrays (bool,
    integers, float32/float64; any shape, strided or not, memmaps) and int, float or bool
    scalars; read-only inside the function, and sent once per call, never per task (each
    backend's way: ``partally.explain`` says it). Anything else is a ``TypeError`` before
    anything runs.

    A ``compute`` made from inside a running workload (its function calls ``compute``) runs
    inline, in the calling thread, wherever the Python loop would wait on a pool or cluster that
    the outer call holds (``auto``, python, threads, processes, ray, celery), as joblib runs
    nested parallel calls; numba, native and the GPU backends run as usual.
    """
    chosen = _validate.workload(workload, reduce)
    n = _validate.size(n, chosen)
    backend = _validate.backend(backend)
    workers = _validate.workers(workers)
    seed = _validate.seed(seed)
    progress = _validate.progress(progress)
    chosen = _validate.args(args, chosen, n, seed)
    nested = running()
    if nested and backend == "auto":
        backend = "python"  # no calibration, no pool: the outer call has the cores
    name, timed = (backend, None) if backend != "auto" else dispatcher().dispatch(chosen, n)
    runner = get_backend(name)
    reason = runner.unavailable()
    if reason is not None:
        raise BackendUnavailable(f"backend {name!r} is not available here: {reason}")
    reason = runner.args_refusal(chosen) or runner.supports(chosen, n)
    if reason is not None:
        raise BackendUnavailable(f"backend {name!r} cannot run workload {chosen.name!r}: {reason}")
    workers = workers or runner.default_workers()
    if nested and (runner.runs_python or runner.remote):  # its pool's workers may be waiting here
        return chosen.reduction.finish(chosen.run_range(0, n, seed), n)
    if timed is None:
        partial = runner.run(chosen, 0, n, workers=workers, seed=seed, progress=progress)
    else:  # auto is racing near-tied backends at this n: its calls are the measurements
        began = time.perf_counter()
        partial = runner.run(chosen, 0, n, workers=workers, seed=seed, progress=progress)
        timed(time.perf_counter() - began)
    return chosen.reduction.finish(partial, n)
