"""The oracle itself (tests/reference.py): its two methods agree, and DESIGN.md's known values hold.

Nothing here imports partally: these tests check the checker.
"""

import math
import os

import pytest
from helpers import run_python
from hypothesis import given
from hypothesis import strategies as st

import reference
from reference import count_range, is_prime, loop_count, pi_between, pi_hit, primes_between, sieve


def test_reference_imports_nothing_from_partally():
    code = (
        "import sys, reference\n"
        "reference.count_range('pi', 0, 10**4), reference.count_range('primes', 0, 10**4)\n"
        "print(sorted(name for name in sys.modules if name.startswith('partally')))\n"
    )
    folder = os.path.dirname(os.path.abspath(reference.__file__))
    done = run_python(code, env=dict(os.environ, PYTHONPATH=folder))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_sieve_and_miller_rabin_agree_below_30000():
    flags = sieve(30_000)
    assert [bool(f) for f in flags] == [is_prime(i) for i in range(30_000)]
    assert sum(flags[:100]) == 25 and sieve(0) == bytearray() and sieve(1) == bytearray(1)


@pytest.mark.parametrize(
    "n", [0, 1, 2, 3, 4, 25326001, 3215031751, 2147483647, 4294967291, 4294967295, 67 * 67, 61, 7]
)
def test_miller_rabin_on_hard_cases(n):
    """Strong pseudoprimes to some of the bases, the largest primes below 2**31 and 2**32."""
    known = {25326001: False, 3215031751: False, 2147483647: True, 4294967291: True,
             4294967295: False}
    if n in known:
        expected = known[n]
    else:
        expected = n >= 2 and all(n % d for d in range(2, math.isqrt(n) + 1))
    assert is_prime(n) == expected


@given(lo=st.integers(0, 2**32 - 5000), size=st.integers(0, 5000))
def test_segmented_sieve_equals_miller_rabin(lo, size):
    assert primes_between(lo, lo + size) == sum(is_prime(i) for i in range(lo, lo + size))


@given(lo=st.integers(0, 2**63 - 5000), size=st.integers(0, 5000), seed=st.integers(0, 2**64 - 1))
def test_numpy_pi_equals_the_scalar_definition(lo, size, seed):
    assert pi_between(lo, lo + size, seed, block=1000) == sum(
        pi_hit(i, seed) for i in range(lo, lo + size)
    )


def test_known_values_of_design_md():
    assert count_range("primes", 0, 10**6) == 78498
    assert count_range("primes", 0, 10**7) == 664579
    assert count_range("primes", 2**32 - 20_000, 2**32) == sum(
        is_prime(i) for i in range(2**32 - 20_000, 2**32)
    )
    assert sum(pi_hit(i) for i in range(10**5)) == 78607  # the scalar definition
    assert count_range("pi", 0, 10**6) == 785806
    assert count_range("count", 5, 12) == 7 and count_range("pi", 9, 3) == 0


def test_a_workload_is_taken_by_name_and_unknown_ones_are_refused():
    class Named:
        name = "primes"

    assert count_range(Named(), 0, 100) == 25
    with pytest.raises(ValueError, match="expected one of"):
        count_range("fibonacci", 0, 10)
    with pytest.raises(ValueError, match="below 2\\*\\*32"):
        count_range("primes", 0, 2**32 + 1)


def test_loop_count_is_a_plain_loop():
    assert loop_count(lambda i, seed: (i + seed) % 3 == 0, 0, 30, 1) == 10
