"""Every reduction on a cluster backend, against exact references: element functions that the
tests' own module defines (so they travel by value), with ints past 64 bits in their sum, floats
from 1e-300 to 1e300 with cancellation, -0.0, an infinity and a NaN."""

import dataclasses
from fractions import Fraction

import partally
from partally.backends import get as get_backend
from exact_reference import extreme, float_mean, float_sum, same


def _ints(i, seed):
    """Ints up to 2**63 - 1: their sum passes 64 bits at once."""
    return (i * 7919 + seed) % 10007 * 921_000_000_000_000


def _floats(i, seed):
    """Floats of every size and sign, with cancellation, a -0.0, an inf, and a NaN at i = 1234
    when seed is 1."""
    if i == 77:
        return -0.0
    if seed == 1 and i == 1234:
        return float("nan")
    if seed == 2 and i == 999:
        return float("inf")
    x = (i * 2654435761 % 4294967296) / 4294967296.0 - 0.5
    return x * 1e300 if i % 5 == 0 else x / (i + 1) + 1e16 - 1e16


CASES = [("sum", _ints, 0), ("mean", _ints, 0), ("min", _ints, 0), ("max", _ints, 0),
         ("sum", _floats, 0), ("mean", _floats, 0), ("min", _floats, 0), ("max", _floats, 0),
         ("sum", _floats, 1), ("max", _floats, 1), ("sum", _floats, 2), ("min", _floats, 2)]


def _exact(reduce, function, n, seed):
    """The reduction by exact_reference (Fractions, total order), which imports no partally."""
    values = [function(i, seed) for i in range(n)]
    if function is _ints:
        if reduce == "sum":
            return sum(values)
        if reduce == "mean":
            return float(Fraction(sum(values), n))
    elif reduce in ("sum", "mean"):
        return (float_sum if reduce == "sum" else float_mean)(values)
    return extreme(values, 0, reduce)


def compiled_here(workload) -> None:
    """Numba's kernel for ``workload`` compiled in this process, into the cache folder that the
    workers load it from (where numba can run it)."""
    if get_backend("numba").refusal(workload) is None:
        partally.compute(10, backend="numba", workload=workload)


def check_every_reduction(backend: str, n: int = 3 * 10**5) -> None:
    """Every case on ``backend``, in chunks of at least 10**4, equal to the exact result, with
    progress told up to the whole range.

    Numba's kernel for each case is compiled here first: a worker's first chunk would otherwise
    compile for seconds (past the tests' 5 s visibility timeout on a busy machine: delivered again,
    counted once, but slow)."""
    for reduce, function, seed in CASES:
        workload = dataclasses.replace(partally.workload(function, reduce=reduce), task_min=10**4)
        compiled_here(workload)
        told = []
        got = partally.compute(n, backend=backend, workload=workload, seed=seed,
                               progress=lambda done, total: told.append((done, total)))
        expected = _exact(reduce, function, n, seed)
        assert same(tuple(got) if reduce in ("min", "max") else got, expected), (reduce, seed)
        assert told[-1] == (n, n), (reduce, seed)
    assert _exact("sum", _ints, n, 0) > 2**64  # summed exactly past 64 bits
