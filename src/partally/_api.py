"""The counting core's public face: ``compute`` and ``backends``."""

from __future__ import annotations

from dataclasses import dataclass

from partally import _dispatch, _validate
from partally.backends import NAMES as BACKEND_NAMES
from partally.backends import get as get_backend
from partally._errors import BackendUnavailable
from partally.backends._common import default_workers


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
    for name in BACKEND_NAMES:
        module = get_backend(name)
        reason = module.unavailable()
        infos.append(BackendInfo(name, reason is None, reason, module.device()))
    return infos


def _resolve(backend: str, workload: str, n: int) -> str:
    if backend != "auto":
        return backend
    return _dispatch.choose(workload, n)


def compute(
    n: int,
    backend: str = "auto",
    workload: str = "count",
    *,
    workers: int | None = None,
    seed: int = 0,
) -> int:
    """Count the integers i in [0, n) that satisfy ``workload``, on ``backend``.

    ``workload`` is "count" (every i), "primes" (i is prime; n <= 2**32) or "pi" (i's
    pseudo-random point falls in the quarter circle; ``seed`` picks the points). ``backend="auto"``
    picks the fastest available backend for this n here; a named backend that cannot run here
    raises ``BackendUnavailable`` with the reason. ``workers`` defaults to every core.
    """
    workload = _validate.workload(workload)
    n = _validate.size(n, workload)
    backend = _validate.backend(backend)
    workers = _validate.workers(workers) or default_workers()
    seed = _validate.seed(seed)
    name = _resolve(backend, workload, n)
    module = get_backend(name)
    reason = module.unavailable()
    if reason is not None:
        raise BackendUnavailable(f"backend {name!r} is not available here: {reason}")
    return module.count(workload, 0, n, workers=workers, seed=seed)
