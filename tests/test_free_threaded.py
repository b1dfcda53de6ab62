"""Free-threaded CPython (3.14t): ``threads`` is parallel where the GIL is off, and partally keeps
it off.

Whether the GIL is on is read at run time (``partally._machine.gil_enabled``); the backend's
``gil_bound`` follows it, and the calibration, the calibration cache's machine key and the bench
read those. The first tests switch the answer in this process on any build; the tests marked
``free_threaded`` need a free-threaded build and skip elsewhere (CI has none).
"""

import subprocess
import sys

import pytest

import partally
from partally._machine import gil_enabled
from partally.auto.cache import machine_key
from partally.auto.calibration import _dominated
from partally.auto.models import Model
from partally.backends import get
from partally.bench.report import machine
from partally.workloads import resolve


@pytest.fixture(params=[True, False], ids=["gil", "no-gil"])
def gil(request, monkeypatch):
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: request.param, raising=False)
    return request.param


def test_threads_share_the_gil_exactly_while_it_is_on(gil):
    assert gil_enabled() is gil
    assert get("threads").gil_bound is gil
    assert get("processes").gil_bound is False
    assert get("python").gil_bound is False


def test_calibration_counts_threads_on_every_core_without_the_gil(gil):
    # a compiled backend 10x the Python loop: threads cannot win, on one core or on two
    models = {"python": Model((10, 10**6), (1e-6, 1.0)), "numba": Model((10, 10**6), (1e-7, 0.1))}
    why = _dominated("threads", models, resolve("pi"), 2, get("threads").gil_bound, 10**6)
    assert why is not None
    assert ("on 1 core(s)" if gil else "on 2 core(s)") in why


def test_the_machine_key_and_the_bench_say_whether_the_gil_is_on(gil):
    assert machine_key()["python"].endswith(" free-threaded") is not gil
    assert machine()["gil_enabled"] is gil


NO_GIL = "needs a free-threaded CPython (3.14t) with the GIL off"


@pytest.mark.free_threaded
@pytest.mark.skipif(gil_enabled(), reason=NO_GIL)
def test_partally_and_its_extension_keep_the_gil_off():
    # an extension not declared free-threading safe would switch the GIL on at its import
    code = (
        "import sys, partally, partally._native\n"
        "assert partally.compute(10**5, backend='native', workload='pi') == 78607\n"
        "assert partally.compute(10**5, backend='threads', workload='pi', workers=2) == 78607\n"
        "print(sys._is_gil_enabled())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False"], done.stderr


@pytest.mark.free_threaded
@pytest.mark.skipif(gil_enabled(), reason=NO_GIL)
def test_threads_is_a_parallel_backend_without_the_gil():
    assert get("threads").gil_bound is False
    assert partally.compute(300_000, backend="threads", workload="primes", workers=2) == 25997
