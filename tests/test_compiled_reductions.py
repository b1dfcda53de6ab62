"""Every reduction on the numba backend equals an exact reference written with Python ints and
fractions (tests/exact_reference.py), whatever the workers and the slice sizes; the kernels'
rows are read exactly, and no word overflows past 2**63."""

from __future__ import annotations

import dataclasses
import importlib.util
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import partally
from partally.backends import _exact_rows, get

import exact_reference as ref

pytestmark = pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="needs numba")

numba = get("numba")


def _workload(function, reduce, returns=None, cpu_slice=None, limit=2**63 - 1):
    made = partally.workload(function, reduce=reduce, returns=returns, limit=limit)
    return made if cpu_slice is None else dataclasses.replace(made, cpu_slice=cpu_slice)


def _run(workload, lo, hi, workers=2, seed=0):
    partial = numba.run(workload, lo, hi, workers=workers, seed=seed)
    return workload.reduction.finish(partial, hi - lo)


def _expected(function, reduce, lo, hi, seed):
    xs = ref.values(function, lo, hi, seed)
    if reduce in ("min", "max"):
        return ref.extreme(xs, lo, reduce)
    if isinstance(xs[0], float):
        return ref.float_sum(xs) if reduce == "sum" else ref.float_mean(xs)
    return sum(xs) if reduce == "sum" else float(sum(xs) / len(xs))


@pytest.fixture(autouse=True)
def _numba_here():
    if numba.unavailable():
        pytest.skip(numba.unavailable())


FLOAT_CASES = [ref.mixed, ref.mixed_finite, ref.cancelling, ref.signed_zeros]


@pytest.mark.parametrize("function", FLOAT_CASES, ids=lambda f: f.__name__)
@pytest.mark.parametrize("reduce", ["sum", "mean", "min", "max"])
@pytest.mark.parametrize("workers, cpu_slice", [(1, 2**16), (2, 7), (3, 1000)])
def test_float_reductions_are_exact(function, reduce, workers, cpu_slice):
    workload = _workload(function, reduce, float, cpu_slice)
    lo, hi, seed = 13, 3013, 5
    got = _run(workload, lo, hi, workers, seed)
    assert ref.same(got, _expected(function, reduce, lo, hi, seed)), (got, reduce)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    function=st.sampled_from([ref.mixed, ref.mixed_finite]),
    reduce=st.sampled_from(["sum", "mean", "min", "max"]),
    lo=st.integers(0, 5000),
    size=st.integers(1, 3000),
    seed=st.integers(0, 2**31 - 1),
    workers=st.integers(1, 3),
    cpu_slice=st.sampled_from([1, 5, 64, 2**16]),
)
def test_any_float_range_any_split(function, reduce, lo, size, seed, workers, cpu_slice):
    workload = _workload(function, reduce, float, cpu_slice)
    got = _run(workload, lo, lo + size, workers, seed)
    assert ref.same(got, _expected(function, reduce, lo, lo + size, seed)), (got, reduce)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    reduce=st.sampled_from(["sum", "mean"]),
    lo=st.integers(0, 5000),
    size=st.integers(1, 3000),
    seed=st.integers(0, 2**31 - 1),
    workers=st.integers(1, 3),
    cpu_slice=st.sampled_from([1, 300, 2**16]),
)
def test_windows_of_values_are_exact(reduce, lo, size, seed, workers, cpu_slice):
    # Windows that span up to 12 binades: taken whole (<= 10) or value by value (more).
    workload = _workload(ref.windowed, reduce, float, cpu_slice)
    got = _run(workload, lo, lo + size, workers, seed)
    assert ref.same(got, _expected(ref.windowed, reduce, lo, lo + size, seed)), got


@pytest.mark.parametrize("function", [ref.big_ints, ref.ties], ids=lambda f: f.__name__)
@pytest.mark.parametrize("reduce", ["sum", "mean", "min", "max"])
@pytest.mark.parametrize("workers, cpu_slice", [(1, 2**16), (2, 3), (3, 977)])
def test_int_reductions_are_exact(function, reduce, workers, cpu_slice):
    # ties' i * 7 wraps past i = 2**63 / 7 on numba, which the trust sample would refuse
    workload = _workload(function, reduce, int, cpu_slice, limit=2**60)
    lo, hi, seed = 0, 2500, 7
    got = _run(workload, lo, hi, workers, seed)
    expected = _expected(function, reduce, lo, hi, seed)
    if reduce == "mean":  # the exact ratio rounded once
        xs = ref.values(function, lo, hi, seed)
        expected = sum(xs) / len(xs)
    assert ref.same(got, expected), (got, expected)


def test_an_int_sum_past_2_63_is_a_python_int():
    workload = _workload(lambda i, seed: 9223372036854775807, "sum", int)
    assert _run(workload, 0, 10**5) == (2**63 - 1) * 10**5
    workload = _workload(lambda i, seed: -9223372036854775807 - 1, "sum", int)
    assert _run(workload, 0, 10**5) == -(2**63) * 10**5


def test_extremes_at_the_int64_limits():
    top = _workload(lambda i, seed: 9223372036854775807, "min", int)
    assert _run(top, 5, 100) == (2**63 - 1, 5)
    bottom = _workload(lambda i, seed: -9223372036854775807 - 1, "max", int)
    assert _run(bottom, 5, 100) == (-(2**63), 5)


def test_signed_zeros_and_nan():
    zeros_min = _run(_workload(ref.signed_zeros, "min", float), 0, 100)
    zeros_max = _run(_workload(ref.signed_zeros, "max", float), 0, 100)
    assert ref.same(zeros_min, (-0.0, 1)) and ref.same(zeros_max, (0.0, 0))
    late_nan = _workload(lambda i, seed: math.nan if i % 1000 == 999 else float(i), "max", float)
    assert ref.same(_run(late_nan, 0, 5000, workers=3), (math.nan, 999))
    assert math.isnan(_run(dataclasses.replace(late_nan, reduce="sum"), 0, 5000))
    # A NaN with its sign bit set has the smallest key of all; it still wins only as a NaN.
    negative_nan = _workload(lambda i, seed: -math.nan if i % 700 == 699 else -1e308, "min", float)
    assert ref.same(_run(negative_nan, 0, 5000, workers=2), (math.nan, 699))
    assert ref.same(_run(negative_nan, 0, 699, workers=2), (-1e308, 0))


def test_overflow_rounds_to_infinity_and_mean_stays_finite():
    huge = _workload(lambda i, seed: 1.7976931348623157e308, "sum", float)
    assert _run(huge, 0, 10) == math.inf
    mean = _workload(lambda i, seed: 1.7976931348623157e308, "mean", float)
    assert _run(mean, 0, 10) == 1.7976931348623157e308


def spread(i, seed):
    """1e16 then ones: a sequential float sum loses every one that follows 1e16 (ulp 2)."""
    return 1e16 if i % 1000 == 0 else 1.0


def test_a_plain_float_sum_differs_across_workers_but_not_partally():
    from numba import njit, prange

    element = njit(inline="always")(spread)

    @njit(parallel=True)
    def plain(n, chunks):
        out = np.zeros(chunks)
        for c in prange(chunks):
            s = 0.0
            for i in range(c * n // chunks, (c + 1) * n // chunks):
                s += element(i, 0)
            out[c] = s
        return out.sum()

    n = 30001
    assert len({plain(n, chunks) for chunks in (1, 2, 3, 7)}) > 1
    workload = _workload(spread, "sum", float)
    results = {_run(dataclasses.replace(workload, cpu_slice=s), 0, n, w) for w, s in ((1, 2**16), (2, 7), (3, 999))}
    assert results == {ref.float_sum(ref.values(spread, 0, n, 0))}


def test_a_float_function_is_refused_for_an_int_reduction():
    workload = _workload(lambda i, seed: i * 0.5, "sum", int)
    reason = numba.supports(workload)
    assert reason is not None and "float64" in reason and "int" in reason
    assert numba.supports(_workload(lambda i, seed: i * 0.5, "sum", float)) is None


def test_two_reductions_of_one_function_keep_their_own_kernels():
    def f(i, seed):
        return i % 17 - 8

    total = _workload(f, "sum", int)
    low = _workload(f, "min", int)
    high = _workload(f, "max", int)
    assert _run(total, 0, 170) == sum(i % 17 - 8 for i in range(170))
    assert _run(low, 0, 170) == (-8, 0) and _run(high, 0, 170) == (8, 16)
    assert _run(total, 0, 170) == sum(i % 17 - 8 for i in range(170))


def test_rows_are_read_exactly():
    # Words at their limits: the reading must be done in Python ints.
    rows = np.array([[2**32 - 1, 2**32 - 1, 2**62], [2**32 - 1, 0, -(2**62)]], np.int64)
    assert _exact_rows.int_sum(rows) == (2**32 - 1) * 2 + ((2**32 - 1) << 32)
    limbs = np.zeros((2, _exact_rows.FLOAT_ROW), np.int64)
    limbs[0, 67], limbs[1, 0], limbs[1, _exact_rows.LIMBS] = 3, 1, 2
    assert _exact_rows.float_sum(limbs) == ((3 << (32 * 67)) + 1, 2, 0, 0)
    extremes = np.array([[5, 10, -1], [5, 3, -1], [~7, 4, -1]], np.int64)
    assert _exact_rows.extreme(extremes[:2], "min") == (5, 3)
    assert _exact_rows.extreme(extremes[2:], "max") == (7, 4)
    assert _exact_rows.extreme(np.array([[0, -1, 9], [1, 2, 4]], np.int64), "max") == (2**64, 4)
