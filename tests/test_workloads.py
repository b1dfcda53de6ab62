"""The Python workloads against independent references and DESIGN.md's known values."""

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


@pytest.mark.parametrize(
    "i", [4294967291, 4294967295, 3215031751, 25326001, 2147483647, 4759123141 - 2**32, 67 * 67]
)
def test_is_prime_on_hard_cases(i):
    assert BUILTINS['primes'].predicate(i, 0) == is_prime(i)


@given(st.integers(min_value=0, max_value=2**63 - 1), st.integers(min_value=0, max_value=2**64 - 1))
def test_pi_hit_matches_the_definition(i, seed):
    assert BUILTINS['pi'].predicate(i, seed) == pi_hit(i, seed)


@pytest.mark.parametrize(
    ("workload", "n", "expected"),
    [("count", 12345, 12345), ("primes", 10**5, 9592), ("pi", 10**5, 78607), ("pi", 0, 0)],
)
def test_known_values(workload, n, expected):
    assert resolve(workload).run_range(0, n) == expected


def test_unknown_workload_is_rejected():
    with pytest.raises(ValueError, match="expected one of"):
        resolve("fibonacci")
