"""The reduction examples (examples/option_price.py, square_total.py, grid_search.py) on every
CPU backend that runs Python functions, equal to plain loops and exact arithmetic written here."""

import os
import sys
from fractions import Fraction

import pytest

import partally
from partally.backends import get

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # the examples
from examples.grid_search import SIDE, rosenbrock  # noqa: E402
from examples.option_price import call_payoff  # noqa: E402
from examples.square_total import square  # noqa: E402

CPU_BACKENDS = ["python", "threads", "processes", "numba"]


def runnable(name, workload):
    reason = get(name).refusal(workload)
    if reason is not None:
        pytest.skip(f"{name} cannot run {workload.name}: {reason}")


@pytest.mark.parametrize("name", CPU_BACKENDS)
@pytest.mark.parametrize("workers", [1, 2])
def test_the_monte_carlo_mean_is_the_exact_mean_rounded_once(name, workers):
    runnable(name, call_payoff)
    lo, n, seed = 2**40, 20_000, 2**64 - 3
    values = [call_payoff.function(i, seed) for i in range(lo, lo + n)]
    expected = float(sum(map(Fraction, values)) / n)
    partial = get(name).run(call_payoff, lo, lo + n, workers=workers, seed=seed)
    assert call_payoff.reduction.finish(partial, n) == expected
    got = partally.compute(n, name, call_payoff, workers=workers, seed=1)
    assert got == float(sum(Fraction(call_payoff.function(i, 1)) for i in range(n)) / n)
    assert 5.0 < got < 6.5  # the Bachelier price is 5.727


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_the_square_total_passes_2_63_exactly(name):
    runnable(name, square)
    n = 10**7 if name in ("processes", "numba") else 10**6
    expected = (n - 1) * n * (2 * n - 1) // 6
    assert partally.compute(n, name, square, workers=2) == expected
    lo = 3 * 10**9 - 50_000  # elements near 2**63, a total far past it
    got = get(name).run(square, lo, lo + 50_000, workers=2, seed=0)
    assert got == sum(i * i for i in range(lo, lo + 50_000)) and got > 2**63 * 10**4


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_the_grid_search_finds_the_minimum_and_its_index(name):
    runnable(name, rosenbrock)
    lo, hi = 2990 * SIDE, 3010 * SIDE  # rows around y = 1
    values = [rosenbrock.function(i, 0) for i in range(lo, hi)]
    best = min(values)
    partial = get(name).run(rosenbrock, lo, hi, workers=2, seed=0)
    found = rosenbrock.reduction.finish(partial, hi - lo)
    assert found == (best, lo + values.index(best)) and divmod(found.index, SIDE) == (3000, 3000)
    assert found.value == 0.0
