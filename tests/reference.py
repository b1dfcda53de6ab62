"""An independent oracle for the tests: the built-in workloads written from docs/definitions.md
alone.

Nothing here imports partally, so a bug in partally's predicates, its loops or its merging cannot
also be in the expected values. Each definition is written the plainest way and, where a count
over a long range needs speed, a second time by another method (a sieve for primes, NumPy's
wrapping uint64 for pi); tests/test_reference.py checks the two against each other and against
docs/definitions.md's known values.

User workloads have no definition but the user's function: ``loop_count`` is a plain loop over it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

M64 = 2**64 - 1
PRIMES_LIMIT = 2**32
NAMES = ("count", "primes", "pi")

# docs/definitions.md, "The built-in workloads": count over [0, n) with seed 0.
KNOWN = {
    "primes": {10**6: 78498, 10**7: 664579, 10**8: 5761455, 10**9: 50847534, 2**32: 203280221},
    "pi": {10**5: 78607, 10**6: 785806},
}
# pi over [0, 3e9) with seed 3 (past 32-bit counters): by this file's NumPy path, 38 s here:
#   cd tests && python -c "import reference; print(reference.pi_between(0, 3 * 10**9, 3))"
PI_3E9_SEED_3 = 2356200278


def pi_hit(i: int, seed: int = 0) -> bool:
    """Whether splitmix64's point for index i (with ``seed``) falls in the quarter circle."""
    z = (seed + (i + 1) * 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    z ^= z >> 31
    x, y = z & 0x7FFFFFFF, (z >> 32) & 0x7FFFFFFF
    return x * x + y * y < 2**62


def is_prime(n: int) -> bool:
    """Miller-Rabin with bases 2, 7, 61 by Python's pow (deterministic below 4,759,123,141)."""
    if n < 2:
        return False
    for p in (2, 7, 61):
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for a in (2, 7, 61):
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def sieve(n: int) -> bytearray:
    """flags[i] == 1 iff i is prime, for 0 <= i < n (Eratosthenes)."""
    flags = bytearray([1]) * n
    flags[:2] = bytes(min(n, 2))
    for p in range(2, math.isqrt(max(n - 1, 0)) + 1):
        if flags[p]:
            flags[p * p :: p] = bytes(len(range(p * p, n, p)))
    return flags


def primes_between(lo: int, hi: int) -> int:
    """The number of primes in [lo, hi), by a segmented sieve (another method than Miller-Rabin)."""
    lo = max(lo, 0)
    if hi <= lo:
        return 0
    base = [p for p, flag in enumerate(sieve(math.isqrt(hi - 1) + 1)) if flag]
    flags = bytearray([1]) * (hi - lo)
    for p in base:
        first = max(p * p, (lo + p - 1) // p * p)
        flags[first - lo :: p] = bytes(len(range(first, hi, p)))
    flags[: max(0, 2 - lo)] = bytes(min(hi - lo, max(0, 2 - lo)))  # 0 and 1 are not prime
    return sum(flags)


def pi_between(lo: int, hi: int, seed: int = 0, block: int = 1 << 20) -> int:
    """The number of pi hits in [lo, hi), by NumPy's uint64 arithmetic (wrapping modulo 2**64)."""
    import numpy as np

    u = np.uint64
    total = 0
    with np.errstate(over="ignore"):
        for start in range(lo, hi, block):
            stop = min(start + block, hi)
            z = np.arange(start + 1, stop + 1, dtype=np.uint64) * u(0x9E3779B97F4A7C15) + u(seed)
            z = (z ^ (z >> u(30))) * u(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> u(27))) * u(0x94D049BB133111EB)
            z ^= z >> u(31)
            x, y = z & u(0x7FFFFFFF), (z >> u(32)) & u(0x7FFFFFFF)
            total += int(np.count_nonzero(x * x + y * y < u(2**62)))
    return total


def count_range(workload: Any, lo: int, hi: int, seed: int = 0) -> int:
    """The count of a built-in workload over [lo, hi) with ``seed``.

    ``workload``: its name, or anything with that ``name`` (a partally Workload).
    """
    name = getattr(workload, "name", workload)
    if name not in NAMES:
        raise ValueError(f"no reference for workload {name!r}: expected one of {NAMES}")
    if hi <= lo:
        return 0
    if name == "count":
        return hi - lo
    if name == "primes":
        if hi > PRIMES_LIMIT:
            raise ValueError(f"primes is defined below 2**32, not up to {hi}")
        if hi - lo <= 2000:
            return sum(is_prime(i) for i in range(lo, hi))
        return primes_between(lo, hi)
    if hi - lo <= 2000:
        return sum(pi_hit(i, seed) for i in range(lo, hi))
    return pi_between(lo, hi, seed)


def loop_count(function: Callable[[int, int], Any], lo: int, hi: int, seed: int = 0) -> int:
    """The number of i in [lo, hi) for which ``function(i, seed)`` is true: a plain loop.

    ``function``: the user's own f(i, seed) (for a partally Workload, pass its ``.function``).
    """
    return sum(1 for i in range(lo, hi) if function(i, seed))
