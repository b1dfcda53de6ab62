"""The three built-in workloads, each a per-element predicate written once, and nothing else.

Definitions: docs/definitions.md, "The built-in workloads". Each ``make_*`` factory takes the
integer type to compute in: ``int`` for the pure-Python backends (arbitrary precision, masked to
64 bits), or ``numpy.uint64`` for Numba and numba-cuda, which then compile the very same function
with wrapping 64-bit unsigned arithmetic (never mixing signed and unsigned, which Numba would turn
into float64).
"""

from __future__ import annotations

from typing import Callable

from partally.workloads.base import Workload, as_is

PRIMES_LIMIT = 2**32  # primes is exact for n <= 2**32 (Miller-Rabin bases 2, 7, 61)

_SMALL_PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61)


def make_pi_hit(u64: Callable[[int], int], jit: Callable = as_is) -> Callable[[int, int], int]:
    """Return ``pi_hit(i, seed) -> 0 | 1``: splitmix64's point for index i in the quarter circle."""
    mask64 = u64(2**64 - 1)
    golden = u64(0x9E3779B97F4A7C15)
    mix1 = u64(0xBF58476D1CE4E5B9)
    mix2 = u64(0x94D049BB133111EB)
    one = u64(1)
    s27, s30, s31, s32 = u64(27), u64(30), u64(31), u64(32)
    low31 = u64(0x7FFFFFFF)
    radius2 = u64(2**62)
    zero = u64(0)

    def pi_hit(i, seed):
        z = (seed + (i + one) * golden) & mask64
        z = ((z ^ (z >> s30)) * mix1) & mask64
        z = ((z ^ (z >> s27)) * mix2) & mask64
        z = z ^ (z >> s31)
        x = z & low31
        y = (z >> s32) & low31
        return one if x * x + y * y < radius2 else zero

    return pi_hit


def make_is_prime(u64: Callable[[int], int], jit: Callable = as_is) -> Callable[[int, int], int]:
    """Return ``is_prime(i, seed) -> 0 | 1`` for 0 <= i < 2**32 (``seed`` is not used).

    Trial division by the primes up to 61, then deterministic Miller-Rabin with bases 2, 7, 61 in
    32-bit Montgomery arithmetic (R = 2**32): no 64-bit division inside the exponentiation.
    ``jit`` compiles the helper it calls (``numba.njit`` for Numba).
    """
    zero, one, two = u64(0), u64(1), u64(2)
    # Trial division in 32 bits (i < 2**32): compiled (Numba), odd p divides i iff
    # i * p**-1 mod 2**32 <= (2**32 - 1) // p, a multiply and a compare instead of a 64-bit divide;
    # Python ints keep `%`, one operation there. Below 64, a bit mask of the primes answers.
    by_inverse = u64 is not int
    odd = tuple(u64(p) for p in _SMALL_PRIMES[1:])
    inverses = [pow(p, -1, 2**32) for p in _SMALL_PRIMES[1:]]
    limits = [(2**32 - 1) // p for p in _SMALL_PRIMES[1:]]
    if by_inverse:  # constant arrays: a loop over a tuple compiles to a switch on the index
        import numpy as np

        inverses = np.array(inverses, dtype=np.uint64)
        limits = np.array(limits, dtype=np.uint64)
    below_64 = u64(sum(1 << p for p in _SMALL_PRIMES))
    s64 = u64(64)
    trial_limit = u64(67 * 67)
    mask32 = u64(2**32 - 1)
    mask64 = u64(2**64 - 1)
    s32 = u64(32)
    bases = (u64(2), u64(7), u64(61))

    @jit
    def reduce(t, n, n_inv):
        # (t - q*n) / R with q = t * n**-1 mod R: exact, in (-n, n), for t < n * R.
        q = ((t & mask32) * n_inv) & mask32
        t_hi = t >> s32
        qn_hi = (q * n) >> s32
        return t_hi - qn_hi if t_hi >= qn_hi else t_hi + n - qn_hi

    def is_prime(i, seed):
        if i < s64:
            return (below_64 >> i) & one
        if (i & one) == zero:
            return zero
        if by_inverse:
            for k in range(len(inverses)):
                if (i * inverses[k]) & mask32 <= limits[k]:
                    return zero
        else:
            for p in odd:
                if i % p == zero:
                    return zero
        if i < trial_limit:
            return one
        n = i
        n_inv = n  # Newton's iteration: 3, 6, 12, 24, 48 correct bits of n**-1 mod 2**32
        for _ in range(4):
            n_inv = (n_inv * ((two - n * n_inv) & mask32)) & mask32
        r2 = ((mask64 - n + one) & mask64) % n  # R**2 mod n = 2**64 mod n
        m_one = reduce(r2, n, n_inv)
        m_minus_one = n - m_one
        d = n - one
        s = 0
        while (d & one) == zero:
            d = d >> one
            s += 1
        for base in bases:
            b = reduce(base * r2, n, n_inv)
            x = m_one
            e = d
            while e != zero:
                if (e & one) != zero:
                    x = reduce(x * b, n, n_inv)
                b = reduce(b * b, n, n_inv)
                e = e >> one
            if x == m_one or x == m_minus_one:
                continue
            composite = True
            for _ in range(s - 1):
                x = reduce(x * x, n, n_inv)
                if x == m_minus_one:
                    composite = False
                    break
            if composite:
                return zero
        return one

    return is_prime


def make_one(u64: Callable[[int], int], jit: Callable = as_is) -> Callable[[int, int], int]:
    """Return ``one(i, seed) -> 1``: ``count``'s predicate, for the compiled backends."""
    one = u64(1)

    def always(i, seed):
        return one

    return always


def _by_name(workload: Workload) -> tuple:
    """A built-in pickled by name: the receiving process has the same built-ins."""
    return get, (workload.name,)


def _guide_loop(lo: int, hi: int, seed: int) -> int:
    result = 0
    for _ in range(lo, hi):  # the guide's loop
        result += 1
    return result


COUNT = Workload(
    name="count",
    description="count every i in [0, n) (the guide's loop)",
    element=make_one,
    folds=True,
    cpu_slice=2**62,
    gpu_slice=2**62,
    task_min=2**62,
    python_cost_s=5e-8,
    native_kernel="count",
    cuda_kernel="partally_count",
    builtin=True,
    pickled=_by_name,
    python_loop=_guide_loop,
)
PRIMES = Workload(
    name="primes",
    description="count the primes below n",
    element=make_is_prime,
    limit=PRIMES_LIMIT,
    known={10**6: 78498, 10**7: 664579, 10**8: 5761455, 10**9: 50847534, 2**32: 203280221},
    cpu_slice=2**22,
    gpu_slice=2**28,
    task_min=2**17,
    python_cost_s=4e-6,
    native_kernel="primes",
    cuda_kernel="partally_primes",
    builtin=True,
    pickled=_by_name,
)
# pi at 10**7 was counted by the pure-Python loop, numba and native, which agreed.
PI = Workload(
    name="pi",
    description="count the random points in the quarter circle (seed 0)",
    element=make_pi_hit,
    known={10**5: 78607, 10**6: 785806, 10**7: 7854179},
    cpu_slice=2**27,
    gpu_slice=2**33,
    task_min=2**24,
    python_cost_s=1.2e-6,
    native_kernel="pi",
    cuda_kernel="partally_pi",
    builtin=True,
    pickled=_by_name,
)

BUILTINS: dict[str, Workload] = {w.name: w for w in (COUNT, PRIMES, PI)}


def get(name: str) -> Workload:
    """The built-in workload called ``name``."""
    return BUILTINS[name]
