"""``numba``: a workload's Python predicate compiled by Numba, ``prange`` over chunks.

Compiled kernels are kept per workload and cached on disk where Numba can (the first run on a
machine pays for compilation, later processes load it).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable

from partally._machine import cores
from partally.backends._common import slices
from partally.backends.base import Backend
from partally._errors import WorkloadError
from partally.workloads import Workload

_CHUNKS_PER_WORKER = 4  # static schedule: a little slack for uneven chunks (primes)


class NumbaBackend(Backend):
    name = "numba"
    family = "Numba"
    compiled = True
    uses_workers = True
    has_startup = True

    def __init__(self) -> None:
        self._kernels: dict[Workload, tuple[Callable, type]] = {}
        self._refused: dict[Workload, str | None] = {}
        self._lock = threading.Lock()

    def unavailable(self) -> str | None:
        try:
            import numba  # noqa: F401
        except ImportError as exc:
            return f"numba is not installed ({exc}); install it with `pip install numba`"
        return None

    def supports(self, workload: Workload) -> str | None:
        """Built-ins compile; a user function is compiled once here to find out (a fraction of a
        second), and a refusal carries the first line of Numba's error."""
        if workload.builtin or self.unavailable() is not None:
            return None
        if workload not in self._refused:
            try:
                with warnings.catch_warnings():  # the refusal below says it all
                    warnings.simplefilter("ignore")
                    self._kernel(workload)  # compiled now, or loaded from the disk cache
            except Exception as exc:  # noqa: BLE001 - any compile error is a refusal
                from partally.backends import _numba_kernels

                self._refused[workload] = _numba_kernels.refusal(exc, workload)
            else:
                self._refused[workload] = None
        return self._refused[workload]

    @property
    def started(self) -> bool:
        return bool(self._kernels)

    def _kernel(self, workload: Workload) -> tuple[Callable, type]:
        found = self._kernels.get(workload)
        if found is None:
            with self._lock:
                from partally.backends import _numba_kernels

                found = self._kernels.setdefault(workload, _numba_kernels.kernel(workload))
        return found

    def count(self, workload: Workload, lo: int, hi: int, *, workers: int, seed: int) -> int:
        import numba

        kernel, index_type = self._kernel(workload)
        numba.set_num_threads(max(1, min(workers, numba.config.NUMBA_NUM_THREADS, cores())))
        seed = index_type(workload.compiled_seed(seed))
        total = 0
        for a, b in slices(lo, hi, workload.cpu_slice):
            chunks = max(1, min(workers * _CHUNKS_PER_WORKER, b - a))
            try:
                total += int(kernel(a, b, seed, chunks))
            except Exception as exc:  # the workload's own function raised, compiled
                raise WorkloadError(
                    workload.name, None, exc, where=f"somewhere in [{a}, {b}) on numba"
                ) from exc
        return total
