"""Your function over your data: arrays and scalars as ``args``, the same answer on every backend
that takes them, read-only inside the function, sent once per call; anything else refused."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import partally
from partally.auto import use_dispatcher
from partally.auto.cache import CalibrationCache
from partally.auto.dispatcher import Dispatcher
from partally._settings import Settings

TAKE_ARGS = ("python", "threads", "processes", "numba")
REFUSE_ARGS = ("native", "cuda", "celery", "numba-cuda")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from examples.centroids import data as centroid_data  # noqa: E402
from examples.centroids import farthest  # noqa: E402
from examples.mse import data as mse_data  # noqa: E402
from examples.mse import sq_err  # noqa: E402


@pytest.fixture(autouse=True)
def own_dispatcher(tmp_path):
    dispatcher = Dispatcher(cache=CalibrationCache(tmp_path), settings=Settings())
    use_dispatcher(dispatcher)
    yield dispatcher
    use_dispatcher(None)


def _python_mean(values) -> float:
    from fractions import Fraction

    return float(sum(Fraction(float(v)) for v in values) / len(values))


@pytest.mark.parametrize("backend", TAKE_ARGS)
def test_the_exact_mean_squared_error_is_the_same_on_every_backend(backend):
    n = 20_000
    pred, truth = mse_data(n, 0)
    expected = _python_mean((pred - truth) ** 2)
    assert partally.compute(n, backend, sq_err, args=(pred, truth), workers=2) == expected


@pytest.mark.parametrize("backend", TAKE_ARGS)
def test_a_max_over_a_2d_array_gives_its_value_and_index_everywhere(backend):
    n = 5_000
    points, centroids = centroid_data(n, 1)
    d = ((points[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2).min(axis=1)
    got = partally.compute(n, backend, farthest, args=(points, centroids), workers=2)
    assert got.index == int(np.argmax(d))
    assert got.value == farthest.function(got.index, 0, points, centroids)


@pytest.mark.parametrize("backend", TAKE_ARGS)
@pytest.mark.parametrize("dtype", ["bool", "int8", "uint16", "int64", "uint64", "float32", "float64"])
def test_every_dtype_and_a_scalar_count_as_in_python(backend, dtype):
    rng = np.random.default_rng(3)
    values = (rng.random(3000) * 100).astype(dtype)
    threshold = 50 if dtype != "bool" else 0
    counted = partally.compute(3000, backend, lambda i, s, v, t: v[i] > t,
                               args=(values, threshold), workers=2)
    assert counted == int((values > threshold).sum())


@pytest.mark.parametrize("backend", TAKE_ARGS)
def test_strided_fortran_read_only_and_memmapped_arrays_are_read_in_place(backend, tmp_path):
    base = np.arange(6000, dtype=np.int64).reshape(2000, 3)
    fortran = np.asfortranarray(base)
    strided = base[:, 1]  # every third element
    frozen = base.copy()
    frozen.flags.writeable = False
    mapped = np.memmap(tmp_path / "values.bin", dtype=np.int64, mode="w+", shape=(2000, 3))
    mapped[:] = base
    for array in (fortran, frozen, mapped):
        got = partally.compute(2000, backend, lambda i, s, a: a[i, 1] % 7 == 0, args=(array,),
                               workers=2)
        assert got == int((base[:, 1] % 7 == 0).sum())
    got = partally.compute(2000, backend, lambda i, s, a: a[i] % 7 == 0, args=(strided,),
                           workers=2)
    assert got == int((strided % 7 == 0).sum())


@pytest.mark.parametrize("backend", TAKE_ARGS)
def test_arrays_are_read_only_inside_the_function(backend):
    values = np.zeros(100)

    def writes(i, seed, v):
        v[i] = 1.0
        return True

    with pytest.raises((partally.WorkloadError, partally.BackendUnavailable)):
        partally.compute(100, backend, writes, args=(values,), workers=2)
    assert not values.any()


@pytest.mark.parametrize("backend", TAKE_ARGS)
def test_a_read_past_the_end_is_an_error_never_a_number(backend):
    values = np.arange(1000.0)
    with pytest.raises(partally.WorkloadError, match="IndexError at i = 999"):
        partally.compute(1000, backend, lambda i, s, v: v[i + 1] > 3, args=(values,), workers=2)


@pytest.mark.parametrize("backend", REFUSE_ARGS)
def test_a_backend_that_does_not_take_args_says_so(backend):
    with pytest.raises(partally.BackendUnavailable):
        partally.compute(10, backend, lambda i, s, v: v[i] > 0, args=(np.ones(10),))


@pytest.mark.parametrize("bad", [{"a": 1}, "text", b"raw", None, 1 + 2j, [1, "a"], [1.0, 2.0],
                                 np.array(["x"]), np.array([object()]), 2**70])
def test_what_is_not_an_array_or_a_scalar_is_a_type_error_before_anything_runs(bad):
    ran = []

    def f(i, seed, x):
        ran.append(i)
        return True

    with pytest.raises(TypeError, match=r"args\[0\]"):
        partally.compute(10, "python", f, args=(bad,))
    assert not ran


def test_args_must_be_a_tuple_and_fit_the_signature():
    values = np.ones(10)
    with pytest.raises(TypeError, match="tuple"):
        partally.compute(10, "python", lambda i, s, v: True, args=values)
    with pytest.raises(TypeError, match="cannot be called"):
        partally.compute(10, "python", lambda i, s: True, args=(values,))
    with pytest.raises(TypeError, match="built-in"):
        partally.compute(10, "python", "pi", args=(values,))


def test_a_changed_array_gives_the_new_answer_and_threads_get_their_own():
    values = np.arange(10_000.0)
    f = partally.workload(lambda i, s, v, t: v[i] > t, name="over_threshold")
    assert partally.compute(10_000, "numba", f, args=(values, 4999.5)) == 5000
    values[:] = -values  # in place: a new answer on the next call, nothing frozen
    assert partally.compute(10_000, "numba", f, args=(values, -0.5)) == 1
    results = {}

    def one(k):
        data = np.full(10_000, float(k))
        results[k] = partally.compute(10_000, "numba", f, args=(data, 2.5), workers=1)

    threads = [threading.Thread(target=one, args=(k,)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {k: (10_000 if k > 2.5 else 0) for k in range(6)}


def test_auto_runs_a_function_over_data_and_explain_says_how_it_travels():
    n = 50_000
    pred, truth = mse_data(n, 0)
    expected = partally.compute(n, "python", sq_err, args=(pred, truth))
    assert partally.compute(n, workload=sq_err, args=(pred, truth)) == expected
    explanation = partally.explain(n, workload=sq_err, args=(pred, truth))
    assert "2 arrays" in explanation.args and explanation.args in str(explanation)


def test_processes_leave_no_shared_memory_and_print_no_tracker_warning(tmp_path):
    code = textwrap.dedent("""
        import numpy as np, partally
        values = np.arange(200_000.0)
        def big(i, seed, v):
            return v[i] > 1000.0
        def fails(i, seed, v):
            if i == 150_000:
                raise ValueError("boom")
            return True
        if __name__ == "__main__":
            print(partally.compute(200_000, "processes", big, args=(values,), workers=2))
            try:
                partally.compute(200_000, "processes", fails, args=(values,), workers=2)
            except partally.WorkloadError as exc:
                print("error", exc.index)
    """)
    (tmp_path / "main.py").write_text(code)
    before = {f for f in os.listdir("/dev/shm") if f.startswith("partally")}
    done = subprocess.run([sys.executable, "main.py"], capture_output=True, text=True,
                          timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["198999", "error", "150000"]
    assert "resource_tracker" not in done.stderr and "leaked" not in done.stderr, done.stderr
    after = {f for f in os.listdir("/dev/shm") if f.startswith("partally")}
    assert after <= before


def test_the_cli_builds_an_examples_data_and_takes_a_file_path(tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    for workload in ("examples.mse:sq_err", "examples/mse.py:sq_err"):
        done = subprocess.run(
            [sys.executable, "-m", "partally", "compute", "2e4", "--workload", workload,
             "--backend", "numba"], capture_output=True, text=True, timeout=240, cwd=ROOT, env=env,
        )
        assert done.returncode == 0, done.stderr
        pred, truth = mse_data(20_000, 0)
        assert float(done.stdout.split()[-1]) == _python_mean((pred - truth) ** 2)
