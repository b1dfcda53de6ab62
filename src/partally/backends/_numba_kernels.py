"""Numba CPU kernels: a workload's Python predicate compiled and inlined into a ``prange`` loop.

Imported only by the ``numba`` backend, on first use (importing numba costs about half a second).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit, prange

from partally.workloads import Workload


def make_counter(element: Callable, index_type: type) -> Callable:
    """A parallel kernel ``count(lo, hi, seed, chunks)`` counting where ``element(i, seed)`` holds.

    ``element`` is a compiled predicate, inlined into the loop; i and seed are passed as
    ``index_type`` (``np.uint64`` or ``np.int64``), never mixed (Numba would promote to float64).
    """

    @njit(parallel=True, cache=True, nogil=True)
    def count(lo, hi, seed, chunks):  # pragma: no cover - compiled
        # Chunk bounds are computed serially: bound arithmetic inside the prange body, with the
        # unsigned loop index, miscounted ranges that cross 2**31 (numba 0.68).
        step, extra = divmod(hi - lo, chunks)
        bounds = np.empty(chunks + 1, np.int64)
        bounds[0] = lo
        for c in range(chunks):
            bounds[c + 1] = bounds[c] + step + (1 if c < extra else 0)
        total = np.uint64(0)
        for c in prange(chunks):
            s = np.uint64(0)
            for i in range(bounds[c], bounds[c + 1]):  # `count`'s loop: LLVM folds it to b - a
                if element(index_type(i), seed):
                    s += np.uint64(1)
            total += s
        return total

    return count


def kernel(workload: Workload) -> tuple[Callable, type]:
    """``workload``'s compiled kernel and the integer type it takes i and seed in."""
    index_type = np.uint64 if workload.unsigned else np.int64
    element = njit(inline="always")(workload.element(index_type, njit))
    return make_counter(element, index_type), index_type
