"""``numba``: the workloads' Python predicates compiled by Numba, ``prange`` over chunks.

Compiled code is cached on disk, so only the first run on a machine pays for compilation.
"""

from __future__ import annotations

import functools
from types import ModuleType

from partally.backends._common import cpu_device, interruptible_slices

NAME = "numba"
PARALLEL = True
_CHUNKS_PER_WORKER = 4  # static schedule: a little slack for uneven chunks (primes)


@functools.cache
def _kernels() -> ModuleType:
    from partally.backends import _numba_kernels

    return _numba_kernels

device = cpu_device


def unavailable() -> str | None:
    try:
        import numba  # noqa: F401
    except ImportError as exc:
        return f"numba is not installed ({exc}); install it with `pip install numba`"
    return None


def count(workload: str, lo: int, hi: int, *, workers: int, seed: int) -> int:
    import numba
    import numpy as np

    kernels = _kernels()
    numba.set_num_threads(min(workers, numba.config.NUMBA_NUM_THREADS))
    kind, seed64 = kernels.KIND[workload], np.uint64(seed)
    total = 0
    for a, b in interruptible_slices(workload, lo, hi):
        chunks = max(1, min(workers * _CHUNKS_PER_WORKER, b - a))
        total += int(kernels.count_range(kind, a, b, seed64, chunks))
    return total
