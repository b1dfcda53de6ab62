"""The reduction pieces and the loops that merge partials, against the independent oracles
(tests/exact_reference.py, tests/reference.py, plain loops written here), in-process and fast.

Each reduction's ``zero``, ``convert``, ``fold``, ``batch``, ``loop``, ``merge``, ``finish`` and
``same`` give DESIGN.md's result by every path: element by element, batch by batch, over any
split merged in any order; the merge loops (``run_bounded``, ``run_on_pool``, ``run_tasks``, a
cluster backend's ``run``) give the same on real thread pools. The built-in predicates are
checked in both integer types (Python ints, NumPy uint64 uncompiled). The mutation run of
issue 21 runs this file first: a mutant that changes a result fails here within a second.
"""

from __future__ import annotations

import math
import random
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from fractions import Fraction

import numpy as np
import pytest

import exact_reference as ref
from exact_reference import same
import reference
from partally import WorkloadError
from partally.backends import _cluster
from partally.backends import get as backend
from partally.backends._common import Tally, iter_range, run_bounded, run_on_pool
from partally.workloads import resolve
from partally.workloads import reductions as red
from partally.workloads.builtin import make_is_prime, make_one, make_pi_hit

INF, NAN, BIG = math.inf, math.nan, 1.7976931348623157e308
HANG_S = 60  # a hang bound only: every wait below ends in milliseconds


# --- the built-in predicates, in both integer types -----------------------------------------


def u64_predicate(make):
    with np.errstate(over="ignore"):
        element = make(np.uint64)
    def predicate(i, seed=0):
        with np.errstate(over="ignore"):
            return int(element(np.uint64(i), np.uint64(seed)))
    return predicate


PRIME_SAMPLE = sorted(
    set(range(0, 5000)) | set(range(2**32 - 400, 2**32)) | set(range(4489 - 5, 4489 + 5))
    | {561, 1105, 1729, 2047, 3277, 4033, 42799, 90751, 916327, 1590751, 6386993, 25326001,
       3215031751, 2147483647, 4294967291, 65537 * 65521, 65521 * 65521, 2**31 + 11}
    | set(random.Random(3).sample(range(2**32), 300))
)


def test_is_prime_in_python_ints_and_uint64_equals_miller_rabin_by_pow():
    want = [int(reference.is_prime(i)) for i in PRIME_SAMPLE]
    python = make_is_prime(int)
    assert [int(python(i, 0)) for i in PRIME_SAMPLE] == want
    u64 = u64_predicate(make_is_prime)
    assert [u64(i) for i in PRIME_SAMPLE] == want


def test_pi_hit_in_python_ints_and_uint64_equals_the_definition():
    rng = random.Random(11)
    points = [(i, 0) for i in range(3000)] + [
        (rng.randrange(2**64), rng.randrange(2**64)) for _ in range(1500)]
    want = [int(reference.pi_hit(i, seed)) for i, seed in points]
    python = make_pi_hit(int)
    assert [int(python(i, seed)) for i, seed in points] == want
    u64 = u64_predicate(make_pi_hit)
    assert [u64(i, seed) for i, seed in points] == want


def test_one_is_one_in_both_types_and_count_counts():
    assert make_one(int)(5, 0) == 1 and type(make_one(int)(5, 0)) is int
    assert u64_predicate(make_one)(2**63, 9) == 1
    assert [resolve("count").run_range(lo, hi) for lo, hi in [(3, 4100), (7, 7), (9, 2)]] == [
        4097, 0, 0]


def test_builtins_run_on_the_python_backend_equal_the_reference():
    python = backend("python")
    for name, lo, hi, seed in [("primes", 0, 6000, 0), ("primes", 2**32 - 3000, 2**32, 0),
                               ("pi", 0, 6000, 5), ("pi", 2**40, 2**40 + 3000, 2**63),
                               ("count", 5, 9000, 0)]:
        got = python.run(resolve(name), lo, hi, workers=1, seed=seed)
        assert got == reference.count_range(name, lo, hi, seed), (name, lo, hi)


# --- the reductions ---------------------------------------------------------------------------


def listed(values):
    """An element function over a list: v(i) = values[i]."""
    return lambda i, seed: values[i]


def expected(name, values, lo=0):
    """DESIGN.md's result for ``values`` at lo, lo + 1, ... by the oracles (plain Python)."""
    if name == "count":
        return sum(1 for v in values if v)
    floats = isinstance(values[0], float) if values else False
    values = values if floats else [int(v) for v in values]
    if name == "sum":
        return ref.float_sum(values) if floats else sum(int(v) for v in values)
    if name == "mean":
        return ref.float_mean(values) if floats else float(Fraction(sum(values), len(values)))
    value, index = ref.extreme(values, lo, name)
    return (value, index)


FLOAT_LISTS = [
    [1.0, 2.5, -0.5], [0.1, -0.1], [-0.0, -0.0], [-0.0], [0.0, -0.0, 5e-324], [1.0, INF],
    [-INF, 2.0], [INF, -INF, 1.0], [3.0, NAN, INF], [BIG, BIG], [-BIG, -BIG, 1.0],
    [BIG, -BIG, 1e-300], [1e16, 1.0, -1e16], [5e-324, 5e-324, -1e-300], [2.0, -0.0, 0.0, -3.0],
    [7.5, 7.5, -7.5, -7.5], [0.0, -0.0, -0.0, 0.0], [-1.0, -0.0], [1.0, 0.0],
    list(ref.SPECIALS), list(ref.FINITE),
]
INT_LISTS = [
    [3, -1, 2], [True, False, True], [2**63 - 1, 2**63 - 1, 5], [-(2**63), -(2**63), -1],
    [0], [4, 4, -4, -4], [-5, 7, 7, -5], [np.int64(9), np.int64(-3)],
]
GENERATED = [  # (element function, seed, n, kind)
    (ref.mixed, 3, 5000, "float"), (ref.mixed_finite, 4, 9000, "float"),
    (ref.windowed, 13 * 1000 + 9, 6000, "float"), (ref.windowed, 13 * 1990 + 12, 3000, "float"),
    (ref.cancelling, 0, 5000, "float"), (ref.signed_zeros, 2, 5000, "float"),
    (ref.big_ints, 3, 6000, "int"), (ref.ties, 1, 9000, "int"),
]


def cases():
    for values in FLOAT_LISTS:
        yield listed(values), 0, len(values), "float"
    for values in INT_LISTS:
        yield listed(values), 0, len(values), "int"
    yield from GENERATED


def pieces_at_random(lo, hi, rng):
    """[lo, hi) cut at random places, empty pieces included."""
    cuts = sorted(rng.randrange(lo, hi + 1) for _ in range(rng.randrange(0, 6)))
    ends = [lo, *cuts, hi]
    return list(zip(ends, ends[1:]))


def test_every_path_through_a_reduction_gives_the_oracles_result():
    rng = random.Random(21)
    for function, seed, n, kind in cases():
        values = ref.values(function, 0, n, seed)
        for name in ("count", "sum", "mean", "min", "max"):
            r = red.get(name, kind)
            want = expected(name, values)
            whole = r.finish(r.loop(function, 0, n, seed, "w"), n)
            assert same(whole, want), (name, kind, values[:8], whole, want)
            folded = r.zero()
            for i, v in enumerate(values):
                folded = r.fold(folded, i, v, "w")
            assert same(r.finish(folded, n), want), (name, kind, values[:8])
            pieces = pieces_at_random(0, n, rng)
            partials = [r.loop(function, a, b, seed, "w") for a, b in pieces]
            partials += [r.batch(values[a:b], a, "w") for a, b in pieces]
            partials += [r.zero()]
            rng.shuffle(partials)
            merged = r.zero()
            for p in partials[: len(partials) // 2 + 1]:
                merged = r.merge(merged, p)
            rest = r.zero()
            for p in partials[len(partials) // 2 + 1 :]:
                rest = r.merge(p, rest)
            # each element came twice (loop and batch): over 2n elements
            result = r.finish(r.merge(rest, merged), 2 * n)
            twice = values if name in ("min", "max") else values + values
            assert same(result, expected(name, twice)), (name, kind, pieces)


def test_partials_are_the_documented_exact_objects():
    total = red.get("sum", "float").loop(listed([0.5, INF, NAN, -INF, 1.25]), 0, 5, 0)
    assert total == red.FloatSum(int(Fraction(1.75) * 2**1074), 1, 1, 1)
    assert red.get("mean", "float").zero() == red.FloatSum(0, 0, 0, 0)
    assert type(red.get("mean", "float").zero()) is red.FloatSum
    merged = red.get("sum", "float").merge(red.FloatSum(1, 2, 3, 4), red.FloatSum(10, 20, 30, 40))
    assert merged == (11, 22, 33, 44)
    assert red.get("sum", "int").zero() == 0 and red.get("count", "bool").zero() == 0
    assert red.get("min", "int").zero() is None and red.get("max", "float").zero() is None
    assert red.get("count", "bool").partial(True, 3) == 1
    assert red.get("count", "bool").partial(False, 3) == 0
    assert red.get("max", "int").partial(-7, 4) == red.Extreme(-7, 4)
    assert red.get("min", "float").partial(NAN, 4) == red.Extreme(red.NAN_MIN_KEY, 4)
    assert red.get("max", "float").partial(NAN, 4) == red.Extreme(red.NAN_MAX_KEY, 4)
    assert red.get("sum", "int").loop(listed([2**62] * 5), 0, 5, 0) == 5 * 2**62
    assert red.get("count", "bool").loop(listed([0, 2, "", "x", None]), 1, 5, 0) == 2


def test_results_have_the_documented_types():
    assert type(red.get("sum", "int").finish(6, 3)) is int
    assert type(red.get("mean", "int").finish(6, 3)) is float
    assert type(red.get("count", "bool").finish(6, 3)) is int
    found = red.get("min", "int").finish(red.Extreme(-3, 9), 10)
    assert type(found) is red.Extremum and found == (-3, 9) and type(found.value) is int
    found = red.get("max", "float").finish(red.Extreme(red.float_key(-0.0), 2), 3)
    assert same(found, (-0.0, 2)) and type(found.index) is int
    assert same(red.get("max", "float").finish(red.Extreme(red.NAN_MAX_KEY, 5), 9), (NAN, 5))


@pytest.mark.parametrize("name", ["min", "max"])
@pytest.mark.parametrize("kind", ["int", "float"])
def test_extremes_merge_to_the_smallest_index_among_ties_in_any_order(name, kind):
    r = red.get(name, kind)
    key = (lambda v: v) if kind == "int" else red.float_key
    a, b, c = red.Extreme(key(5), 10), red.Extreme(key(5), 3), red.Extreme(key(6), 1)
    low, high = (a, c) if name == "min" else (c, a)
    assert r.merge(a, b) == b and r.merge(b, a) == b
    assert r.merge(a, c) == low and r.merge(c, a) == low
    assert r.merge(None, a) == a and r.merge(a, None) == a and r.merge(None, None) is None
    assert high != low
    if kind == "float":
        nan = r.partial(NAN, 7)
        assert r.merge(nan, c) == nan and r.merge(c, nan) == nan
        assert r.merge(nan, r.partial(NAN, 2)) == r.partial(NAN, 2)
        assert r.merge(r.partial(-0.0, 4), r.partial(0.0, 1)) == (
            r.partial(-0.0, 4) if name == "min" else r.partial(0.0, 1))


def test_empty_ranges_give_zero_or_raise():
    assert red.get("count", "bool").finish(red.get("count", "bool").zero(), 0) == 0
    assert red.get("sum", "int").finish(red.get("sum", "int").zero(), 0) == 0
    zero_sum = red.get("sum", "float").finish(red.get("sum", "float").zero(), 0)
    assert same(zero_sum, 0.0)
    for name, kind in [("mean", "int"), ("mean", "float"), ("min", "int"), ("max", "float")]:
        r = red.get(name, kind)
        with pytest.raises(ValueError, match=r"^empty range: .* undefined \(n = 0\)$"):
            r.finish(r.zero(), 0)
    with pytest.raises(ValueError, match="^empty range: no element values were reduced$"):
        red.get("min", "int").finish(None, 3)
    assert red.get("sum", "int").batch([], 0, "w") == 0
    assert red.get("min", "int").batch([], 0, "w") is None
    assert red.get("max", "float").batch([], 0, "w") is None
    assert red.get("sum", "float").loop(listed([]), 4, 4, 0) == red.FloatSum(0, 0, 0, 0)


def test_batches_past_4096_elements_and_offsets_keep_the_indices():
    values = [float((i * 7919) % 10007) - 5000.0 for i in range(10_000)]
    values[8191] = -6000.0
    values[9000] = 6000.0
    f = listed(values)
    for name in ("min", "max"):
        r = red.get(name, "float")
        got = r.finish(r.loop(f, 4000, 10_000, 0), 6000)
        assert same(got, expected(name, values[4000:], 4000))
    ints = [(i * 7919) % 10007 for i in range(10_000)]
    for name in ("min", "max", "sum", "mean"):
        r = red.get(name, "int")
        got = r.finish(r.loop(listed(ints), 100, 10_000, 0), 9900)
        assert same(got, expected(name, ints[100:], 100))


def test_conversion_follows_the_element_kind_and_names_i():
    to_int, to_float = red.get("sum", "int"), red.get("min", "float")
    truth = red.get("count", "bool")
    assert to_int.convert(True, 0) == 1 and type(to_int.convert(np.int64(-4), 0)) is int
    assert to_int.convert(2**63 - 1, 0) == 2**63 - 1 and to_int.convert(-(2**63), 0) == -(2**63)
    assert type(to_float.convert(3, 0)) is float and to_float.convert(np.float32(0.5), 0) == 0.5
    assert truth.convert([], 0) is False and truth.convert(3, 0) is True
    bad = [(to_int, 1.0), (to_int, "3"), (to_int, 2**63), (to_int, -(2**63) - 1),
           (to_float, "x"), (to_float, None), (truth, np.array([1, 2]))]
    for r, value in bad:
        with pytest.raises(WorkloadError) as raised:
            r.convert(value, 17, "w")
        assert raised.value.index == 17
    for values, at in [([1, 2, 2**63, 4], 2), ([1, 2.5, 3], 1), ([5, -(2**63) - 1], 1)]:
        for name in ("sum", "min", "max"):
            with pytest.raises(WorkloadError) as raised:
                red.get(name, "int").loop(listed(values), 0, len(values), 0, "w")
            assert (raised.value.workload, raised.value.index) == ("w", at), (name, values)
    messages = {
        2.5: "raised TypeError at i = 5000: an int element value is expected, got 2.5 "
             "(declare returns=float for float values)",
        2**63: "raised OverflowError at i = 5000: element value 9223372036854775808 does not fit "
               "a signed 64-bit integer",
        -(2**63) - 1: "raised OverflowError at i = 5000: element value -9223372036854775809 does "
                      "not fit a signed 64-bit integer",
    }
    for bad, message in messages.items():
        function = lambda i, seed: bad if i == 5000 else i  # noqa: E731
        for name in ("sum", "mean", "min", "max"):
            with pytest.raises(WorkloadError) as raised:
                red.get(name, "int").loop(function, 4000, 9000, 0, "w")
            assert (raised.value.workload, raised.value.index) == ("w", 5000), (name, bad)
            assert str(raised.value) == f"workload 'w' {message}", (name, bad)
    for name in ("sum", "mean", "min", "max"):
        with pytest.raises(WorkloadError) as raised:
            red.get(name, "float").loop(lambda i, s: "x" if i == 5000 else 0.5, 4000, 9000, 0, "w")
        assert (raised.value.workload, raised.value.index) == ("w", 5000)
        assert str(raised.value) == ("workload 'w' raised ValueError at i = 5000: could not "
                                     "convert string to float: 'x'")
    with pytest.raises(WorkloadError) as raised:
        red.get("sum", "float").loop(listed([1.0, 2.0, "x"]), 0, 3, 0, "w")
    assert raised.value.index == 2
    with pytest.raises(WorkloadError) as raised:
        red.get("sum", "float").loop(lambda i, s: 1.0 / (i - 5), 0, 9, 0, "w")
    assert raised.value.index == 5


def test_the_element_kind_is_named_declared_or_inferred():
    for declared, kind in [(int, "int"), (float, "float"), ("int", "int"), ("float", "float"),
                           (None, None)]:
        assert red.check_kind(declared) == kind
    for bad in (bool, complex, "double", 3):
        with pytest.raises(ValueError, match=f"^returns must be int or float .* not {bad!r}$"):
            red.check_kind(bad)
    for value, kind in [(1.5, "float"), (3, "int"), (True, "int"), (np.int64(2), "int"),
                        (np.uint8(2), "int"), (np.float32(2), "float"), ("1", None),
                        (b"1", None), (1j, None), (None, None), ([1], None)]:
        assert red.kind_of(value) == kind, value
    assert red.infer_kind(lambda i, s: 0.5 if (i, s) == (0, 0) else 7, "w", "sum") == "float"
    assert red.infer_kind(lambda i, s: np.int32(0), "w", "max") == "int"
    hint = r"declare it: @partally.workload\(reduce='min', returns=float\) or returns=int$"
    with pytest.raises(ValueError, match=r"^cannot tell whether workload 'w' gives ints or "
                       r"floats: f\(0, 0\) raised ZeroDivisionError: division by zero; " + hint):
        red.infer_kind(lambda i, s: 1 / i, "w", "min")
    with pytest.raises(ValueError, match=r"^workload 'w' gives str values \(f\(0, 0\) = 'a'\); "
                       r"reduce='min' takes ints or floats; " + hint):
        red.infer_kind(lambda i, s: "a", "w", "min")
    names = r"\['count', 'sum', 'mean', 'min', 'max'\]"
    for name in red.NAMES:
        assert red.check_name(name) == name
    with pytest.raises(TypeError, match=rf"^reduce must be one of {names} \(a str\), not int 3$"):
        red.check_name(3)
    with pytest.raises(ValueError, match=rf"^unknown reduce 'median'; expected one of {names}$"):
        red.check_name("median")
    assert red.get("count", "float") == red.get("count", "bool")
    assert (red.get("count", "int").name, red.get("count", "int").kind) == ("count", "bool")
    assert type(red.get("mean", "float")) is red.FloatSumReduction
    with pytest.raises(ValueError, match=r"^reduce='sum' takes element values of kind "
                       r"\['int', 'float'\], not 'bool'$"):
        red.get("sum", "bool")


def failing(where):
    """v(i) = seed + 1 / (i - where): ZeroDivisionError at i = where, TypeError for seed None."""
    return lambda i, seed: seed + 1.0 / (i - where)


def test_errors_name_the_workload_the_cause_and_i_on_every_path():
    for name, kind in [("sum", "float"), ("min", "float"), ("sum", "int"), ("max", "int")]:
        with pytest.raises(WorkloadError) as raised:  # past the first batch, i = 3 fails too
            red.get(name, kind).loop(lambda i, s: s // (i - 3) + 1 // (i - 5000), 4000, 9000, 1,
                                     "w")
        error = raised.value
        assert (error.workload, error.index) == ("w", 5000)
        assert "ZeroDivisionError at i = 5000" in str(error)
    for r in (red.get("count", "bool"), red.get("sum", "float")):
        with pytest.raises(WorkloadError) as raised:
            r.loop(failing(4321), 0, 6000, 2, "w")
        assert (raised.value.workload, raised.value.index) == ("w", 4321)
        assert "raised ZeroDivisionError at i = 4321: float division by zero" in str(raised.value)
    for r, value, cause in [(red.get("count", "bool"), np.array([1, 2]), "ValueError"),
                            (red.get("sum", "int"), 2.5, "TypeError"),
                            (red.get("max", "float"), "x", "ValueError")]:
        with pytest.raises(WorkloadError) as raised:
            r.fold(r.zero(), 17, value, "w")
        assert (raised.value.workload, raised.value.index) == ("w", 17)
        assert f"raised {cause} at i = 17" in str(raised.value)
        with pytest.raises(WorkloadError) as raised:
            r.batch([value, value], 40, "w")
        assert (raised.value.workload, raised.value.index) == ("w", 40)
        with pytest.raises(WorkloadError) as raised:
            r.batch([r.zero() if r.name == "count" else 1, value], 40, "w")
        assert (raised.value.workload, raised.value.index) == ("w", 41)
    calls = []

    def flaky(i, seed):  # raises on its first call only: the retry finds no i
        calls.append(i)
        if len(calls) == 1:
            raise KeyError("once")
        return 1.0

    with pytest.raises(WorkloadError) as raised:
        red.get("sum", "float").loop(flaky, 10, 20, 0, "w")
    error = raised.value
    assert (error.workload, error.index, error.where) == ("w", None, "somewhere in [10, 20)")
    assert str(error) == "workload 'w' raised KeyError somewhere in [10, 20): 'once'"


def test_an_unnamed_workload_is_named_empty_in_errors():
    bad = {"bool": np.array([1, 2]), "int": 2.5, "float": "x"}
    for name, kind in [("count", "bool"), ("sum", "int"), ("min", "int"), ("sum", "float"),
                       ("max", "float")]:
        r = red.get(name, kind)
        calls = [lambda: r.convert(bad[kind], 1), lambda: r.fold(r.zero(), 1, bad[kind]),
                 lambda: r.loop(lambda i, s: bad[kind], 0, 3, 0),
                 lambda: r.loop(lambda i, s: 1 // (i - 1), 0, 3, 0)]
        for call in calls:
            with pytest.raises(WorkloadError) as raised:
                call()
            assert raised.value.workload == "" and raised.value.index in (0, 1)
            assert str(raised.value).startswith("workload '' raised ")


def test_same_is_bitwise_with_nan_equal():
    for r in (red, red.get("sum", "float")):
        assert r.same(NAN, NAN) and r.same(0.0, 0.0) and r.same(-0.0, -0.0)
        assert not r.same(0.0, -0.0) and not r.same(NAN, 1.0) and not r.same(1.0, NAN)
        assert not r.same(1.0, 1.0000000000000002) and not r.same(1, 1.0) and r.same(3, 3)
        assert r.same((NAN, 2), red.Extremum(NAN, 2)) and not r.same((NAN, 2), (NAN, 3))
        assert not r.same((1.0, 2), (1.0, 2, 3)) and not r.same((1.0,), 1.0)


def test_keys_follow_ieee_total_order_and_come_back():
    finite = sorted(set(ref.SPECIALS[:-1]) | {-0.0, 1.5, -2.5, 2.0**-1030, -(2.0**-1030)},
                    key=ref._total_order)
    finite.insert(finite.index(0.0), -0.0)
    keys = [red.float_key(x) for x in finite]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert keys == [ref._total_order(x) for x in finite]
    assert all(ref.same(red.key_float(red.float_key(x)), x) for x in finite)
    assert math.isnan(red.key_float(red.NAN_MIN_KEY)) and math.isnan(red.key_float(red.NAN_MAX_KEY))
    assert red.NAN_MIN_KEY < min(keys) and red.NAN_MAX_KEY > max(keys)


def test_scaled_and_divide_are_exact():
    rng = random.Random(5)
    xs = list(ref.FINITE) + [rng.uniform(-1e9, 1e9) * 2.0 ** rng.randrange(-1070, 960)
                             for _ in range(300)]
    for x in xs:
        assert red.scaled(x) == Fraction(x) * 2**1074
    assert red.divide(1, 3) == 1 / 3 and red.divide(3 << 1074, 1 << 1074) == 3.0
    assert red.divide(10**400, 7) == INF and red.divide(-(10**400), 7) == -INF
    assert red.divide(-1, 10**400) == -0.0


def test_exact_sum_equals_fractions_and_counts_specials():
    rng = random.Random(7)
    for trial in range(40):
        n = rng.choice([1, 2, 17, 900, 5000])
        f = rng.choice([ref.mixed_finite, ref.windowed, ref.cancelling, ref.mixed])
        xs = ref.values(f, 0, n, rng.randrange(2**20))
        finite = [x for x in xs if math.isfinite(x)]
        got = red.exact_sum(xs)
        assert got == (sum((Fraction(x) for x in finite), Fraction(0)) * 2**1074,
                       sum(x != x for x in xs), xs.count(INF), xs.count(-INF)), (trial, n)


def test_exact_sum_keeps_positions_where_only_one_digit_is_left():
    # exact_sum adds 18-bit digits of the significands per position: positions where only the
    # middle or only the high digit is non-zero (alone, or after cancellation) must count
    for xs in ([1.0, -(1.0 + 2.0**-34)], [-1.0, 1.0 + 2.0**-34], [2.0**-1054], [-(2.0**-1054)],
               [2.0**-1038], [2.0**-1038, 2.0**-1054, 5e-324], [3.0, -(3.0 + 2.0**-16)]):
        want = sum((Fraction(x) for x in xs), Fraction(0)) * 2**1074
        assert red.exact_sum(xs) == (want, 0, 0, 0), xs
        r = red.get("sum", "float")
        assert same(r.finish(r.loop(listed(xs), 0, len(xs), 0), len(xs)), ref.float_sum(xs))


# --- the merge loops, on real thread pools -----------------------------------------------------

MERGED = [(ref.mixed_finite, 9, "sum", "float"), (ref.windowed, 13 * 700 + 5, "mean", "float"),
          (ref.mixed, 2, "min", "float"), (ref.signed_zeros, 1, "max", "float"),
          (ref.big_ints, 4, "sum", "int"), (ref.ties, 3, "min", "int"),
          (ref.ties, 3, "max", "int")]
N = 3000


@pytest.mark.parametrize(("function", "seed", "name", "kind"), MERGED)
def test_run_bounded_merges_every_piece_once(function, seed, name, kind):
    r = red.get(name, kind)
    values = ref.values(function, 0, N, seed)
    seen = []
    done: list = []
    tally = Tally(lambda d, t: seen.append((d, t)), N)
    with ThreadPoolExecutor(3) as pool:
        total = run_bounded(lambda p: pool.submit(r.loop, function, *p, seed),
                            iter_range(0, N, 23), 4, r, done, tally)
    assert same(r.finish(total, N), expected(name, values))
    assert sorted(piece for piece, _ in done) == list(iter_range(0, N, 23))
    assert seen[-1] == (N, N) and len(seen) == 23


class RetiredPools:
    """Pools handed out in turn; the first refuses submits after ``refuse_after`` of them
    (shut down, as close() does), the next takes the rest."""

    def __init__(self, refuse_after: int):
        self.pools = [ThreadPoolExecutor(2), ThreadPoolExecutor(2)]
        self.handed = 0
        self.refuse_after = refuse_after
        self.submits = 0

    def acquire(self):
        self.handed += 1
        return self.pools[min(self.handed - 1, 1)]

    def submit(self, pool, piece, function, seed, r):
        self.submits += 1
        if pool is self.pools[0] and self.submits > self.refuse_after:
            pool.shutdown(wait=True, cancel_futures=True)
        return pool.submit(r.loop, function, *piece, seed)

    def retired(self, pool):
        return pool is self.pools[0] and self.submits > self.refuse_after


@pytest.mark.parametrize(("function", "seed", "name", "kind"), MERGED)
@pytest.mark.parametrize("refuse_after", [0, 5, 1000])
def test_run_on_pool_merges_each_piece_once_across_a_retired_pool(function, seed, name, kind,
                                                                   refuse_after):
    r = red.get(name, kind)
    values = ref.values(function, 0, N, seed)
    pools = RetiredPools(refuse_after)
    seen: list = []
    try:
        total = run_on_pool(pools.acquire, lambda pool, p: pools.submit(pool, p, function, seed, r),
                            pools.retired, iter_range(0, N, 19), 3, r,
                            Tally(lambda d, t: seen.append(d), N))
    finally:
        for pool in pools.pools:
            pool.shutdown(wait=True)
    assert same(r.finish(total, N), expected(name, values))
    assert pools.handed == (1 if refuse_after >= 19 else 2)
    assert seen[-1] == N


def python_chunk(workload, lo, hi, seed):
    """A chunk's partial by the python backend (what run_chunk gives where numba is missing)."""
    return backend("python").run(workload, lo, hi, workers=1, seed=seed)


class ThreadTasks:
    """A cluster's Tasks on a thread pool: each chunk's partial by the python backend, as a
    worker without numba gives it; handles are futures."""

    def __init__(self, cpus: int):
        self.pool = ThreadPoolExecutor(cpus)
        self._cpus = cpus
        self.submitted: list[tuple[int, int]] = []
        self.released: list[Future] = []
        self.handles: list[Future] = []
        self.cancelled: list[Future] = []

    def cpus(self):
        return self._cpus

    def submit(self, workload, lo, hi, seed):
        self.submitted.append((lo, hi))
        self.handles.append(self.pool.submit(python_chunk, workload, lo, hi, seed))
        return self.handles[-1]

    def wait(self, handles):
        done, running = wait(handles, timeout=HANG_S, return_when=FIRST_COMPLETED)
        return list(done), [h for h in handles if h in running]

    def result(self, handle):
        return handle.result()

    def cancel(self, handles):
        self.cancelled += handles
        for h in handles:
            h.cancel()

    def release(self, handles):
        self.released += list(handles)


class ThreadCluster(_cluster.ClusterBackend):
    """A cluster backend whose cluster is a thread pool in this process."""

    name = "thread-cluster"

    def __init__(self, cpus: int):
        self.tasks = ThreadTasks(cpus)

    def connect(self):
        return self.tasks



@pytest.mark.parametrize(("function", "seed", "name", "kind"), MERGED)
def test_run_tasks_merges_every_chunk_once(function, seed, name, kind):
    workload = resolve(function, name)
    tasks = ThreadTasks(3)
    seen: list = []
    pieces = list(iter_range(100, 100 + N, 29))
    try:
        total = _cluster.run_tasks(tasks, workload, iter(pieces), 4, seed,
                                   Tally(lambda d, t: seen.append(d), N))
    finally:
        tasks.pool.shutdown(wait=True)
    values = ref.values(function, 100, 100 + N, seed)
    assert same(workload.reduction.finish(total, N), expected(name, values, 100))
    assert tasks.submitted == pieces and not tasks.cancelled
    assert len(tasks.released) == 29 and set(tasks.released) == set(tasks.handles)
    assert seen[-1] == N and len(seen) == 29


def test_run_tasks_cancels_what_is_pending_when_a_chunk_fails():
    workload = resolve(lambda i, seed: "x" if i == 2500 else 1.0, "sum")
    tasks = ThreadTasks(2)
    try:
        with pytest.raises(WorkloadError):
            _cluster.run_tasks(tasks, workload, iter_range(0, N, 30), 30, 0)
    finally:
        tasks.pool.shutdown(wait=True)
    assert len(tasks.submitted) == 30
    # every chunk released, also those that finished in the failing chunk's batch after it
    assert set(tasks.released) == set(tasks.handles)


@pytest.mark.parametrize(("function", "seed", "name", "kind"), MERGED[:3] + MERGED[-2:])
def test_a_cluster_backend_run_merges_to_the_oracles_result(function, seed, name, kind):
    workload = resolve(function, name)
    cluster = ThreadCluster(2)
    try:
        told: list = []
        total = cluster.run(workload, 0, 40_000, workers=8, seed=seed,
                            progress=lambda done, of: told.append((done, of)))
        assert told[-1] == (40_000, 40_000) and len(told) == len(cluster.tasks.submitted)
        assert cluster.run(workload, 9, 9, workers=8, seed=seed) == workload.reduction.zero()
    finally:
        cluster.tasks.pool.shutdown(wait=True)
    assert same(workload.reduction.finish(total, 40_000),
                expected(name, ref.values(function, 0, 40_000, seed)))
    chunks = cluster.tasks.submitted
    assert [lo for lo, _ in chunks] == [0] + [hi for _, hi in chunks[:-1]]
    assert chunks[-1][1] == 40_000


@pytest.mark.parametrize("cpus", [1, 3, 64])
def test_a_cluster_plan_covers_the_range(cpus):
    workload = resolve(ref.mixed, "sum")
    t = workload.task_min
    for lo, hi in [(0, 1), (0, t // 2), (5, 5 + t * 3 + 1), (0, 10**12), (7, 8 + 10**6),
                   (10**12, 10**12 + 5 * t), (0, 1000 * t)]:
        chunks = list(_cluster.plan(workload, lo, hi, cpus))
        assert chunks[0][0] == lo and chunks[-1][1] == hi
        assert all(a < b == c for (a, b), (c, _) in zip(chunks, chunks[1:]))
        assert all(type(a) is int and type(b) is int for a, b in chunks)
        assert len(chunks) <= max(cpus * _cluster.TASKS_PER_CPU, -(-(hi - lo) // (
            _cluster.LONGEST * t)))
        assert max(b - a for a, b in chunks) <= _cluster.LONGEST * t  # about a second at most
        if hi - lo < t:  # none shorter than task_min: one chunk
            assert len(chunks) == 1


@pytest.mark.parametrize(("name", "lo", "hi", "seed"),
                         [("pi", 0, 7000, 3), ("primes", 2**31, 2**31 + 7000, 0)])
def test_run_chunk_gives_the_workers_partial(name, lo, hi, seed):
    assert _cluster.run_chunk(resolve(name), lo, hi, seed) == reference.count_range(
        name, lo, hi, seed)
