"""The Python workloads against independent references and DESIGN.md's known values."""

import functools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from partally.workloads import BUILTINS, resolve
from reference import is_prime, pi_hit, sieve


def test_primes_match_a_sieve_below_20000():
    flags = sieve(20_000)
    assert [BUILTINS['primes'].predicate(i, 0) for i in range(20_000)] == [int(f) for f in flags]


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_is_prime_matches_pow_based_miller_rabin(i):
    assert BUILTINS['primes'].predicate(i, 0) == is_prime(i)


# Strong pseudoprimes, Carmichael numbers, squares past the trial division, the ends of the range,
# and composites that Miller-Rabin with other bases (3, 7, 61; 2, 8, 61; 2, 7, 62) or that stops
# at the first base a number passes (42799) would call prime (found by search below 5e7).
HARD = [0, 1, 2, 3, 4, 61, 63, 64, 65, 67, 4488, 4489, 4491, 71 * 71, 65521 * 65521,
        561, 1105, 1729, 2465, 2821, 6601, 8911, 2047, 3277, 4033, 42799, 90751, 916327, 1590751,
        6386993, 25326001, 3215031751, 2147483647, 4294967291, 4294967295, 4294967279,
        4759123141 - 2**32, 65537 * 65521]


@pytest.mark.parametrize("i", HARD)
def test_is_prime_on_hard_cases(i):
    assert BUILTINS['primes'].predicate(i, 0) == is_prime(i)


@functools.cache
def compiled(name):
    """The built-in's predicate as Numba compiles it (uint64), and a loop that applies it."""
    numba = pytest.importorskip("numba")
    import numpy as np

    predicate = numba.njit(BUILTINS[name].element(np.uint64, numba.njit))

    @numba.njit
    def each(indices, seed):
        out = np.empty(len(indices), np.uint8)
        for k in range(len(indices)):
            out[k] = predicate(indices[k], seed)
        return out

    return lambda indices, seed=0: list(each(np.array(indices, dtype=np.uint64), np.uint64(seed)))


def test_compiled_is_prime_equals_a_sieve_and_the_hard_cases():
    each = compiled("primes")
    below = list(range(200_000))
    assert each(below) == list(sieve(200_000))
    top = list(range(2**32 - 30_000, 2**32))
    assert each(top) == [int(is_prime(i)) for i in top]
    assert each(HARD) == [int(is_prime(i)) for i in HARD]


@given(st.lists(st.integers(0, 2**63 - 1), min_size=1, max_size=50), st.integers(0, 2**64 - 1))
def test_compiled_pi_hit_matches_the_definition(indices, seed):
    assert compiled("pi")(indices, seed) == [int(pi_hit(i, seed)) for i in indices]


@given(st.integers(min_value=0, max_value=2**63 - 1), st.integers(min_value=0, max_value=2**64 - 1))
def test_pi_hit_matches_the_definition(i, seed):
    assert BUILTINS['pi'].predicate(i, seed) == pi_hit(i, seed)


def test_count_counts_every_i_of_any_range():
    count = resolve("count")
    assert [count.run_range(lo, hi) for lo, hi in [(5, 17), (0, 3), (9, 9), (10, 3)]] == [12, 3, 0, 0]
    assert compiled("count")([0, 7, 2**63 - 1]) == [1, 1, 1]


@pytest.mark.parametrize(
    ("workload", "n", "expected"),
    [("count", 12345, 12345), ("primes", 10**5, 9592), ("pi", 10**5, 78607), ("pi", 0, 0)],
)
def test_known_values(workload, n, expected):
    assert resolve(workload).run_range(0, n) == expected


def test_unknown_workload_is_rejected():
    with pytest.raises(ValueError, match="expected one of"):
        resolve("fibonacci")
