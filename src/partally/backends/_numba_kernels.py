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
    size = hi - lo
    step = size // chunks
    extra = size % chunks
    total = np.uint64(0)
    for c in prange(chunks):
        a = lo + c * step + min(c, extra)
        b = a + step + (1 if c < extra else 0)
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
