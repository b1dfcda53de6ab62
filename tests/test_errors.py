"""Bad input: clear exceptions that say what is accepted."""


import numpy as np
import pytest
from helpers import run_python

import partally
from partally.backends import get as get_backend


@pytest.mark.parametrize("n", [True, 1.0, 1e6, "10", None, [3]])
def test_n_must_be_an_int(n):
    with pytest.raises(TypeError, match="n must be an int"):
        partally.compute(n)


def test_numpy_integers_are_ints():
    assert partally.compute(np.int64(1000), backend="python") == 1000


def test_n_must_not_be_negative():
    with pytest.raises(ValueError, match="n must be >= 0"):
        partally.compute(-1)


def test_n_must_fit_64_bits():
    with pytest.raises(ValueError, match="2\\*\\*63 - 1"):
        partally.compute(2**63)


def test_primes_past_2_to_the_32():
    with pytest.raises(ValueError, match="n <= 2\\*\\*32"):
        partally.compute(2**32 + 1, workload="primes")


def test_unknown_backend_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown backend 'gpu'.*'python'.*'native'"):
        partally.compute(10, backend="gpu")


def test_unknown_workload_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown workload 'fib'.*'count', 'primes', 'pi'"):
        partally.compute(10, workload="fib")


@pytest.mark.parametrize("workers", [0, -2])
def test_workers_must_be_positive(workers):
    with pytest.raises(ValueError, match="workers must be >= 1"):
        partally.compute(10, backend="threads", workers=workers)


@pytest.mark.parametrize("workers", [True, 2.0, "2"])
def test_workers_must_be_an_int(workers):
    with pytest.raises(TypeError, match="workers must be an int"):
        partally.compute(10, workers=workers)


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_seed_range(seed):
    with pytest.raises(ValueError, match="seed must be in"):
        partally.compute(10, workload="pi", seed=seed)


def test_unavailable_backend_raises_with_reason(monkeypatch):
    module = get_backend("native")
    monkeypatch.setattr(module, "unavailable", lambda: "no compiler on this test machine")
    with pytest.raises(partally.BackendUnavailable, match="no compiler on this test machine"):
        partally.compute(10, backend="native")
    assert issubclass(partally.BackendUnavailable, RuntimeError)


def test_backend_failed_is_a_runtime_error_apart_from_the_others():
    assert issubclass(partally.BackendFailed, RuntimeError)
    assert not issubclass(partally.BackendFailed, (partally.BackendUnavailable, partally.WorkloadError))
    assert "BackendFailed" in partally.__all__


def test_missing_extension_is_reported_not_raised():
    """With partally._native poisoned, the package imports and `native` says how to fix it."""
    code = (
        "import sys; sys.modules['partally._native'] = None\n"
        "import partally\n"
        "info = {i.name: i for i in partally.backends()}['native']\n"
        "assert not info.available and 'pip install' in info.reason, info\n"
        "assert partally.compute(5000, workload='pi') == "
        "partally.compute(5000, backend='python', workload='pi')\n"
        "try:\n"
        "    partally.compute(10, backend='native')\n"
        "except partally.BackendUnavailable as exc:\n"
        "    print(exc)\n"
    )
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert "partally._native is not built" in done.stdout
