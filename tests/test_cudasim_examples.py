"""The reduction examples (examples/option_price.py, square_total.py, grid_search.py) on
numba-cuda's CUDA simulator, against plain loops and Fractions written here.

Like tests/test_cudasim.py, it needs NUMBA_ENABLE_CUDASIM=1 before numba is imported, so
tests/test_cudasim_process.py runs it in its own pytest process:

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -m cudasim tests/test_cudasim_examples.py
"""

from __future__ import annotations

import importlib.util
import os
import sys
from fractions import Fraction
from pathlib import Path

import pytest

pytestmark = pytest.mark.cudasim

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1" or importlib.util.find_spec("numba_cuda") is None:
    pytest.skip(
        "needs numba-cuda and its simulator: NUMBA_ENABLE_CUDASIM=1 python -m pytest -m cudasim "
        "tests/test_cudasim_examples.py",
        allow_module_level=True,
    )

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the examples

from examples.grid_search import SIDE, rosenbrock  # noqa: E402
from examples.option_price import call_payoff  # noqa: E402
from examples.square_total import square  # noqa: E402
from partally.backends import get  # noqa: E402

numba_cuda = get("numba-cuda")
SHAPE = {"workers": 1, "blocks": 2, "threads": 32}  # the simulator runs ~1000 elements a second


def finished(workload, lo, hi, seed):
    partial = numba_cuda.run(workload, lo, hi, seed=seed, **SHAPE)
    return workload.reduction.finish(partial, hi - lo)


def test_the_monte_carlo_mean():
    lo, hi, seed = 2**40, 2**40 + 200, 2**64 - 3
    values = [call_payoff.function(i, seed) for i in range(lo, hi)]
    assert finished(call_payoff, lo, hi, seed) == float(sum(map(Fraction, values)) / (hi - lo))


def test_the_square_total_past_2_63():
    lo, hi = 3 * 10**9 - 300, 3 * 10**9
    got = finished(square, lo, hi, 0)
    assert got == sum(i * i for i in range(lo, hi)) and got > 2**63


def test_the_grid_search_with_its_index():
    lo, hi = 3000 * SIDE + 2900, 3000 * SIDE + 3100  # the row of y = 1, around x = 1
    values = [rosenbrock.function(i, 0) for i in range(lo, hi)]
    found = finished(rosenbrock, lo, hi, 0)
    assert found == (min(values), lo + values.index(min(values))) == (0.0, 3000 * SIDE + 3000)
