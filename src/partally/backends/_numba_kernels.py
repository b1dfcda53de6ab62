"""Numba CPU kernel: the workloads' Python predicates compiled, ``prange`` over chunks.

Imported only by the ``numba`` backend, on first use (importing numba costs about half a second).
"""

import numpy as np
from numba import njit, prange

from partally.workloads import make_is_prime, make_pi_hit

COUNT, PRIMES, PI = 0, 1, 2
KIND = {"count": COUNT, "primes": PRIMES, "pi": PI}

pi_hit = njit(inline="always")(make_pi_hit(np.uint64))
is_prime = njit(make_is_prime(np.uint64, njit))


@njit(parallel=True, cache=True, nogil=True)
def count_range(kind, lo, hi, seed, chunks):  # pragma: no cover - compiled
    # Chunk bounds are computed serially: bound arithmetic inside the prange body, with the
    # unsigned loop index, miscounted ranges that cross 2**31 (numba 0.68).
    step, extra = divmod(hi - lo, chunks)
    bounds = np.empty(chunks + 1, np.int64)
    bounds[0] = lo
    for c in range(chunks):
        bounds[c + 1] = bounds[c] + step + (1 if c < extra else 0)
    total = np.uint64(0)
    for c in prange(chunks):
        a, b = bounds[c], bounds[c + 1]
        s = np.uint64(0)
        if kind == COUNT:
            for _ in range(a, b):  # the guide's loop; LLVM folds it to b - a
                s += np.uint64(1)
        elif kind == PRIMES:
            for i in range(a, b):
                s += is_prime(np.uint64(i))
        else:
            for i in range(a, b):
                s += pi_hit(np.uint64(i), seed)
        total += s
    return total
