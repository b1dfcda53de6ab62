"""Every CPU backend against the independent reference (tests/reference.py), through the registry
and compute()."""

import pytest

from partally.workloads import BUILTINS, resolve
from hypothesis import given
from hypothesis import strategies as st

import partally
from partally.backends import names as backend_names
from partally.backends import get as get_backend
from reference import NAMES, count_range

CPU_BACKENDS = ["python", "threads", "processes", "numba", "native"]
COMPILED = ["numba", "native"]


def available(name):
    reason = get_backend(name).unavailable()
    if reason is not None:
        pytest.skip(f"{name} is not available here: {reason}")
    return get_backend(name)


def test_cpu_backends_are_registered_and_available_here():
    assert set(CPU_BACKENDS) <= set(backend_names())
    infos = {info.name: info for info in partally.backends()}
    for name in CPU_BACKENDS:
        assert infos[name].available, infos[name].reason
        assert infos[name].reason is None
        assert infos[name].device


@pytest.mark.parametrize("name", CPU_BACKENDS)
@given(
    workload=st.sampled_from(NAMES),
    lo=st.integers(min_value=0, max_value=2**32 - 3000),
    size=st.integers(min_value=0, max_value=3000),
    seed=st.integers(min_value=0, max_value=2**64 - 1),
    workers=st.integers(min_value=1, max_value=3),
)
def test_equals_reference_on_random_ranges(name, workload, lo, size, seed, workers):
    backend = available(name)
    expected = count_range(workload, lo, lo + size, seed)
    assert backend.count(resolve(workload), lo, lo + size, workers=workers, seed=seed) == expected


@pytest.mark.parametrize("name", COMPILED)
@given(lo=st.integers(min_value=0, max_value=2**63 - 10**4), seed=st.integers(0, 2**64 - 1))
def test_pi_far_out_in_the_index_range(name, lo, seed):
    backend = available(name)
    hi = lo + 5000
    assert backend.count(BUILTINS["pi"], lo, hi, workers=2, seed=seed) == count_range("pi", lo, hi, seed)


@pytest.mark.parametrize("name", CPU_BACKENDS)
@pytest.mark.parametrize(
    ("workload", "n", "expected"),
    [("count", 0, 0), ("count", 10**5, 10**5), ("primes", 10**5, 9592), ("pi", 10**5, 78607)],
)
def test_known_values_through_compute(name, workload, n, expected):
    available(name)
    assert partally.compute(n, backend=name, workload=workload) == expected


@pytest.mark.parametrize("name", ["processes", *COMPILED])
def test_known_values_at_one_million(name):
    available(name)
    assert partally.compute(10**6, backend=name, workload="primes") == 78498
    assert partally.compute(10**6, backend=name, workload="pi") == 785806


@pytest.mark.parametrize("name", COMPILED)
@pytest.mark.parametrize("workers", [1, 2, 5])
def test_compiled_known_values_at_ten_million(name, workers):
    available(name)
    assert partally.compute(10**7, backend=name, workload="primes", workers=workers) == 664579


@pytest.mark.parametrize("name", COMPILED)
def test_compiled_top_of_primes_range(name):
    backend = available(name)
    lo, hi = 2**32 - 20_000, 2**32
    assert backend.count(BUILTINS["primes"], lo, hi, workers=2, seed=0) == count_range("primes", lo, hi)


@pytest.mark.parametrize("name", COMPILED)
def test_compiled_count_is_exact_for_huge_n(name):
    available(name)
    assert partally.compute(2**63 - 1, backend=name) == 2**63 - 1


def test_auto_matches_reference():
    for workload in NAMES:
        for n in (0, 1, 999, 123_457):
            assert partally.compute(n, workload=workload) == count_range(workload, 0, n)
