"""Any exception from Numba's compiler makes `numba` unavailable for that workload, with the
reason; never a raw exception from `compute` (issue: Numba's parfor pass raised AssertionError on
Python 3.12 and 3.13 while inferring a prange reduction)."""

import importlib.util

import pytest

import partally
from partally.backends import _numba_kernels, get
from partally.backends.numba_cpu import NumbaBackend
from partally.workloads import resolve

pytestmark = pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="needs numba")


def test_the_kernel_has_no_reduction_for_numba_to_infer():
    # A scalar `total += s` inside the prange is what Numba 0.68 fails to infer on 3.12+.
    source = _numba_kernels._SOURCE
    body = source[source.index("for c in prange"):source.index("total = np.uint64(0)")]
    assert "total" not in body and "count_chunk(" in body
    chunk = source[source.index("def count_chunk"):source.index("def count(")]
    assert "partials[c] = s" in chunk


@pytest.mark.parametrize("error", [AssertionError("unexpected cycle in lookup()"),
                                   NotImplementedError("no lowering"), RuntimeError("boom\nmore")])
def test_any_compiler_error_is_a_refusal_for_that_workload(monkeypatch, error):
    backend = NumbaBackend()
    if backend.unavailable():
        pytest.skip(backend.unavailable())

    def fail(workload, name):
        raise error

    monkeypatch.setattr(_numba_kernels, "kernel", fail)
    primes = resolve("primes")
    with pytest.raises(partally.BackendUnavailable) as caught:
        backend.count(primes, 0, 1000, workers=1, seed=0)
    first = str(error).splitlines()[0]
    assert type(error).__name__ in str(caught.value) and first in str(caught.value)
    assert "more" not in str(caught.value)  # the first line only
    assert first in backend.supports(primes)  # said from now on, without compiling again
    assert backend.supports(resolve("pi")) is None  # another workload is not poisoned


def test_compute_names_the_reason_and_auto_runs_elsewhere(monkeypatch):
    numba = get("numba")
    if numba.unavailable():
        pytest.skip(numba.unavailable())

    def fail(workload, name):
        raise AssertionError("unexpected cycle in lookup()")

    monkeypatch.setattr(_numba_kernels, "kernel", fail)
    user = partally.workload(lambda i, s: i % 11 == 4, name="eleven_numba_refusal")
    with pytest.raises(partally.BackendUnavailable, match="unexpected cycle"):
        partally.compute(10**4, backend="numba", workload=user)
    assert partally.compute(10**4, workload=user) == sum(1 for i in range(10**4) if i % 11 == 4)


def test_every_cpu_workload_compiles_on_this_python():
    numba = get("numba")
    if numba.unavailable():
        pytest.skip(numba.unavailable())
    for name, expected in (("primes", 78498), ("pi", 785806), ("count", 10**6)):
        assert partally.compute(10**6, backend="numba", workload=name) == expected
