"""Reductions against exact references written here (Python ints, fractions.Fraction, an IEEE
total order from the bits), for random element functions built from + - * / and sqrt, on the
Python backends with several workers and piece sizes.

The element functions follow IEEE 754 where Python would raise: x / 0 is +-inf or NaN, sqrt of a
negative number is NaN (overflow already gives inf in Python). Their values span 1e-300 to
1e300, subnormals, -0.0, NaN and +-inf, and cancel (1e16 + 1 - 1e16).
"""

from __future__ import annotations

import math
import struct
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import partally
from partally.backends import get
from partally.backends import processes as processes_module
from partally.backends import threads as threads_module
from partally.workloads import reductions as reductions_module

BACKENDS = ("python", "threads", "processes")


# --- exact references ----------------------------------------------------------------------------


def float_sum(values: list[float]) -> float:
    """DESIGN's sum of floats: NaN and infinities by the rules, else the exact sum rounded once."""
    if any(v != v for v in values) or (math.inf in values and -math.inf in values):
        return math.nan
    if math.inf in values or -math.inf in values:
        return math.inf if math.inf in values else -math.inf
    return rounded(sum(map(Fraction, values), Fraction(0)))


def float_mean(values: list[float]) -> float:
    if any(v != v for v in values) or (math.inf in values and -math.inf in values):
        return math.nan
    if math.inf in values or -math.inf in values:
        return math.inf if math.inf in values else -math.inf
    return rounded(sum(map(Fraction, values), Fraction(0)) / len(values))


def rounded(exact: Fraction) -> float:
    """``exact`` to the nearest float64, ties to even, +-inf past the range (by hand: no float
    division of big integers that might itself be what is tested)."""
    if exact == 0:
        return 0.0
    sign, magnitude = (-1.0 if exact < 0 else 1.0), abs(exact)
    exponent = magnitude.numerator.bit_length() - magnitude.denominator.bit_length()
    if Fraction(2) ** exponent > magnitude:
        exponent -= 1  # now 2**exponent <= magnitude < 2**(exponent + 1)
    ulp_exponent = max(exponent, -1022) - 52
    scaled = magnitude / Fraction(2) ** ulp_exponent
    whole, rest = divmod(scaled.numerator, scaled.denominator)
    if 2 * rest > scaled.denominator or (2 * rest == scaled.denominator and whole % 2):
        whole += 1
    if whole * Fraction(2) ** ulp_exponent >= Fraction(2) ** 1024:
        return sign * math.inf
    return sign * math.ldexp(float(whole), ulp_exponent)


def total_order_key(value: float) -> int:
    bits = struct.unpack("<q", struct.pack("<d", value))[0]
    return bits if bits >= 0 else bits ^ 0x7FFF_FFFF_FFFF_FFFF


def extreme(values: list, lowest: bool) -> tuple:
    """(value, index): any NaN first (the smallest i with NaN), else by total order, ties to the
    smallest index."""
    for index, value in enumerate(values):
        if isinstance(value, float) and value != value:
            return value, index
    key = (lambda v: v) if isinstance(values[0], int) else total_order_key
    best = 0
    for index, value in enumerate(values):
        if (key(value) < key(values[best])) if lowest else (key(value) > key(values[best])):
            best = index
    return values[best], best


def identical(a: object, b: object) -> bool:
    """Bit for bit (NaN equals NaN), item by item for tuples."""
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(map(identical, a, b))
    if isinstance(a, float) and isinstance(b, float):
        return (a != a and b != b) or struct.pack("<d", a) == struct.pack("<d", b)
    return type(a) is type(b) and a == b


# --- random element functions --------------------------------------------------------------------


def ieee_div(a: float, b: float) -> float:
    if b == 0.0:
        if a == 0.0 or a != a:
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def ieee_sqrt(a: float) -> float:
    return math.nan if a < 0.0 else math.sqrt(a)


def evaluate(tree: tuple, i: int, table: tuple[float, ...]) -> float:
    kind = tree[0]
    if kind == "const":
        return tree[1]
    if kind == "table":  # the table's values, walked by i
        return table[(i * tree[1]) % len(table)]
    if kind == "index":
        return float(i % 1000) * tree[1]
    if kind == "sqrt":
        return ieee_sqrt(evaluate(tree[1], i, table))
    a, b = evaluate(tree[1], i, table), evaluate(tree[2], i, table)
    if kind == "+":
        return a + b
    if kind == "-":
        return a - b
    if kind == "*":
        return a * b
    return ieee_div(a, b)


SPECIAL = st.sampled_from(
    [0.0, -0.0, 1.0, -1.0, 1e16, -1e16, 1e300, -1e300, 1e-300, 5e-324, -5e-324, 2.2250738585072014e-308,
     1.7976931348623157e308, math.inf, -math.inf, math.nan]
)
FLOATS = st.one_of(
    SPECIAL,
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=1e-300, max_value=1e300),
    st.floats(min_value=-1e300, max_value=-1e-300),
)
LEAVES = st.one_of(
    st.tuples(st.just("const"), FLOATS),
    st.tuples(st.just("table"), st.integers(1, 7)),
    st.tuples(st.just("index"), FLOATS),
)
TREES = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.tuples(st.just("sqrt"), inner),
        st.tuples(st.sampled_from(["+", "-", "*", "/"]), inner, inner),
    ),
    max_leaves=5,
)


def element_function(tree: tuple, table: tuple[float, ...]):
    def element(i, seed):
        return evaluate(tree, i, table)

    return element


@pytest.fixture(params=[(3, 5, 2), (4096, 2**16, 10_000)], ids=["small pieces", "default pieces"])
def pieces(request, monkeypatch):
    """(python batch, threads chunk, processes minimum task): small, so that a range is many
    pieces merged, or the defaults."""
    batch, chunk, task = request.param
    monkeypatch.setattr(reductions_module, "_BATCH", batch)
    monkeypatch.setattr(threads_module, "_CHUNK", chunk)
    monkeypatch.setattr(processes_module, "_MIN_TASK", task)
    return request.param


def run(backend: str, workload, n: int, workers: int, seed: int = 0):
    partial = get(backend).run(workload, 0, n, workers=workers, seed=seed)
    return workload.reduction.finish(partial, n)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    tree=TREES,
    table=st.lists(FLOATS, min_size=1, max_size=40).map(tuple),
    n=st.integers(1, 300),
    workers=st.integers(1, 3),
)
def test_float_sums_means_and_extremes_are_exact_everywhere(pieces, tree, table, n, workers):
    function = element_function(tree, table)
    values = [function(i, 0) for i in range(n)]
    expected = {
        "sum": float_sum(values),
        "mean": float_mean(values),
        "min": extreme(values, lowest=True),
        "max": extreme(values, lowest=False),
    }
    for reduce, wanted in expected.items():
        workload = partally.workload(function, reduce=reduce, returns=float)
        for backend in BACKENDS:
            got = run(backend, workload, n, workers)
            assert identical(got, wanted), (reduce, backend, got, wanted)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.lists(
        st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([2**63 - 1, -(2**63), 0, 1, -1])),
        min_size=1, max_size=300,
    ),
    workers=st.integers(1, 3),
)
def test_integer_sums_and_extremes_are_exact_past_64_bits(pieces, values, workers):
    table = tuple(values)

    def element(i, seed):
        return table[i]

    n = len(table)
    for reduce, wanted in {
        "sum": sum(table),
        "mean": rounded(Fraction(sum(table), n)),
        "min": extreme(list(table), lowest=True),
        "max": extreme(list(table), lowest=False),
    }.items():
        workload = partally.workload(element, reduce=reduce)
        assert workload.kind == "int"
        for backend in BACKENDS:
            assert identical(run(backend, workload, n, workers), wanted), (reduce, backend)


def test_big_totals_pass_2_63_and_2_64_exactly(pieces):
    def near_max(i, seed):
        return 2**63 - 1 - i % 3

    n = 5000
    expected = sum(2**63 - 1 - i % 3 for i in range(n))
    assert expected > 2**64 * 1000
    for backend in BACKENDS:
        assert run(backend, partally.workload(near_max, reduce="sum"), n, 2) == expected


@pytest.mark.parametrize("reduce", ["min", "max"])
def test_ties_go_to_the_smallest_index_and_nan_wins(pieces, reduce):
    ties = (3.0, 1.0, 5.0, 1.0, 5.0, 0.0, -0.0, 1.0, 5.0)
    nan_late = (*ties, math.nan, 2.0, math.nan)

    for table, wanted in ((ties, (-0.0, 6) if reduce == "min" else (5.0, 2)),
                          (nan_late, (math.nan, 9))):
        def element(i, seed, table=table):
            return table[i]

        workload = partally.workload(element, reduce=reduce)
        for backend in BACKENDS:
            assert identical(run(backend, workload, len(table), 2), wanted), (backend, table)


def test_a_plain_float_sum_changes_with_the_workers_and_partallys_does_not():
    """The hand-written way (each worker sums its share in float, then the shares are added)
    gives different bits for 1, 2, 3 and 4 workers; partally gives one result, the exact one."""

    def spread(i, seed):
        return ((i * 2654435761) % 1000 - 500) * 10.0 ** (i % 7 - 3)

    n = 20_000
    values = [spread(i, 0) for i in range(n)]
    plain = set()
    for workers in (1, 2, 3, 4):
        shares = []
        step = -(-n // workers)
        for start in range(0, n, step):
            share = 0.0
            for value in values[start:start + step]:
                share += value
            shares.append(share)
        total = 0.0
        for share in shares:
            total += share
        plain.add(total)
    assert len(plain) > 1  # the plain float sum depends on how the range was shared
    workload = partally.workload(spread, reduce="sum")
    results = {
        struct.pack("<d", run(backend, workload, n, workers))
        for backend in BACKENDS
        for workers in (1, 2, 3, 4)
    }
    assert results == {struct.pack("<d", float_sum(values))}


def test_the_rounding_reference_agrees_with_known_values():
    """The hand-written rounding itself: halfway cases, subnormals, overflow."""
    assert rounded(Fraction(1) + Fraction(1, 2**53)) == 1.0  # a tie: to even
    assert rounded(Fraction(1) + Fraction(3, 2**53)) == 1.0 + 2**-51
    assert rounded(Fraction(1, 2**1075)) == 0.0  # half the smallest subnormal: to even (zero)
    assert rounded(Fraction(3, 2**1075)) == 5e-324 * 2
    assert rounded(Fraction(2**1024)) == math.inf
    assert rounded(Fraction(2**1024 - 2**970 - 1)) == 1.7976931348623157e308
    assert rounded(Fraction(-1, 3)) == -1 / 3
