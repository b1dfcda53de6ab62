"""User workloads: the user's own f(i, seed), the same count on every backend that runs it."""

import os
from fractions import Fraction
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import partally
from partally.auto import Dispatcher, use_dispatcher
from partally.auto.cache import CalibrationCache
from partally.backends import get
from partally._settings import Settings
from partally.workloads import BUILTINS
from partally.workloads.user import digest
from reference import loop_count

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # the examples
from examples.collatz import long_collatz  # noqa: E402
from examples.digit_table import prime_digit_sum  # noqa: E402
from examples.hashed import rare_hash  # noqa: E402

EXAMPLES = [long_collatz, rare_hash, prime_digit_sum]
CPU_BACKENDS = ["python", "threads", "processes", "numba"]


def multiple_of_seven_plus(i, seed):
    return i % 7 == seed % 7


def _env(**changes):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    env.update(changes)
    return env


@pytest.fixture(autouse=True)
def own_dispatcher(tmp_path):
    """auto calibrates into a temporary cache, never the user's."""
    dispatcher = Dispatcher(cache=CalibrationCache(tmp_path), settings=Settings())
    use_dispatcher(dispatcher)
    yield dispatcher
    use_dispatcher(None)


@pytest.mark.parametrize("name", CPU_BACKENDS)
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda w: w.name)
@settings(max_examples=8, deadline=None)
@given(
    lo=st.integers(min_value=0, max_value=2**40),
    size=st.integers(min_value=0, max_value=400),
    seed=st.integers(min_value=0, max_value=2**64 - 1),
    workers=st.integers(min_value=1, max_value=3),
)
def test_examples_match_the_python_loop(name, example, lo, size, seed, workers):
    expected = loop_count(example.function, lo, lo + size, seed)
    assert get(name).count(example, lo, lo + size, workers=workers, seed=seed) == expected


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_examples_through_compute(name):
    for example in EXAMPLES:
        expected = loop_count(example.function, 0, 30_000, 7)
        assert partally.compute(30_000, name, example, seed=7) == expected


def test_plain_function_and_decorator_forms():
    assert partally.compute(700, "python", multiple_of_seven_plus, seed=3) == 100
    made = partally.workload(multiple_of_seven_plus, name="sevens")
    assert made.name == "sevens" and partally.compute(700, "numba", made, seed=3) == 100
    named = partally.workload(name="sevens2")(multiple_of_seven_plus)
    assert named.name == "sevens2"
    # a plain function is wrapped once, so its compiled kernel is kept
    from partally.workloads import resolve

    assert resolve(multiple_of_seven_plus) is resolve(multiple_of_seven_plus)


def _sevens_documented(i, seed):
    """Multiples of seven, shifted by the seed."""
    return i % 7 == seed % 7


def test_a_workload_carries_its_functions_names_as_functools_wraps_does():
    import functools
    import inspect
    import pickle

    import cloudpickle
    import numba

    wrapper = functools.wraps(_sevens_documented)(lambda *args: None)
    made = partally.workload(_sevens_documented, name="sevens", reduce="sum")
    for attribute in ("__name__", "__qualname__", "__doc__", "__module__", "__wrapped__"):
        assert getattr(made, attribute) is getattr(wrapper, attribute), attribute
    assert inspect.signature(made) == inspect.signature(_sevens_documented)
    assert made.name == "sevens" and made.__name__ == "_sevens_documented"
    for copy in (pickle.loads(pickle.dumps(made)), cloudpickle.loads(cloudpickle.dumps(made))):
        assert (copy.__name__, copy.__qualname__, copy.__doc__, copy.__module__) == (
            made.__name__, made.__qualname__, made.__doc__, made.__module__)
        assert copy.key == made.key and copy != made  # the same kernels; equal only to itself
        assert copy(14, 0) == made(14, 0) is True
    for backend in ("processes", "numba", "python"):  # by value to the pool; compiled
        assert partally.compute(700, backend, made, seed=3, workers=2) == 100
    jitted = numba.njit(_sevens_documented)
    from_dispatcher = partally.workload(jitted)
    assert from_dispatcher.__wrapped__ is jitted
    assert from_dispatcher.__name__ == jitted.__name__ == "_sevens_documented"
    assert BUILTINS["pi"].function is None and not hasattr(BUILTINS["pi"], "__wrapped__")


def test_a_function_with_more_parameters_takes_them_as_args():
    """f(i, seed, extra) is a workload over args: refused at once only when called without
    them."""
    takes_one = partally.workload(lambda i, seed, extra: i % extra == 0)
    with pytest.raises(TypeError, match="cannot be called"):
        partally.compute(10, workload=takes_one)
    assert partally.compute(10, "python", takes_one, args=(5,)) == 2


@pytest.mark.parametrize(
    "bad",
    [42, "not callable", lambda i: True, lambda: True],
)
def test_bad_functions_are_refused_at_once(bad):
    if isinstance(bad, str):
        with pytest.raises(ValueError, match="unknown workload"):
            partally.compute(10, workload=bad)
        return
    with pytest.raises(TypeError):
        partally.workload(bad)
    with pytest.raises(TypeError):
        partally.compute(10, workload=bad)


def uses_a_dict(i, seed):
    return Fraction(i + seed, 1) > 0  # Numba cannot type Fraction


def test_uncompilable_function_runs_where_it_can():
    with pytest.raises(partally.BackendUnavailable, match="Numba cannot compile 'uses_a_dict'"):
        partally.compute(100, "numba", uses_a_dict, seed=1)
    reason = get("numba").supports(partally.workload(uses_a_dict))
    assert reason.startswith("Numba cannot compile")
    assert partally.compute(100, "python", uses_a_dict, seed=1) == 100
    assert partally.compute(5_000, workload=uses_a_dict, seed=1) == 5_000  # auto: not numba
    with pytest.raises(partally.BackendUnavailable, match="has none"):
        partally.compute(10, "native", uses_a_dict)


def divides_by_zero_at_500(i, seed):
    return 10 // (i - 500) > 0


@pytest.mark.parametrize("name", ["python", "threads", "processes"])
def test_an_exception_names_the_workload_and_the_index(name):
    with pytest.raises(partally.WorkloadError) as caught:
        partally.compute(100_000, name, divides_by_zero_at_500, workers=2)
    assert caught.value.workload == "divides_by_zero_at_500" and caught.value.index == 500
    assert "ZeroDivisionError at i = 500" in str(caught.value)


def test_cache_key_follows_the_code(tmp_path):
    source = "K = {k}\ndef f(i, seed):\n    return i % K == 0\n"
    keys = []
    for k in (3, 3, 5):
        namespace = {}
        exec(compile(source.format(k=k), str(tmp_path / "f.py"), "exec"), namespace)
        keys.append(partally.workload(namespace["f"]).key)
    assert keys[0] == keys[1] != keys[2]


def test_the_digest_is_the_same_in_another_process():
    """The disk cache is keyed by it: a new Python must find what the last one kept."""
    code = (
        "from examples.collatz import long_collatz\n"
        "from partally.workloads.user import digest\n"
        "print(digest(long_collatz.function), long_collatz.key)\n"
    )
    seen = set()
    for hash_seed in ("1", "2"):  # str hashes differ between the two, as between any two runs
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120, env=_env(PYTHONHASHSEED=hash_seed))
        assert done.returncode == 0, done.stderr
        seen.add(tuple(done.stdout.split()))
    assert seen == {(digest(long_collatz.function), long_collatz.key)}


def test_auto_calibrates_a_user_workload_once(own_dispatcher, tmp_path):
    workload = partally.workload(multiple_of_seven_plus)
    assert partally.compute(10**5, workload=workload, seed=1) == 14286
    cached = own_dispatcher.cache.load(workload.key)
    assert cached is not None and "python" in cached.models
    # its own short budget (test_dispatch checks, on a fake clock, that a budget is kept)
    assert workload.calibration_s < BUILTINS["pi"].calibration_s
    again = Dispatcher(cache=CalibrationCache(tmp_path), settings=Settings(), calibrate=_never)
    use_dispatcher(again)
    assert partally.compute(10**5, workload=workload, seed=1) == 14286


def _never(*args, **kwargs):
    raise AssertionError("calibrated again although the function did not change")


SCRIPT = textwrap.dedent(
    """
    import partally

    def odd_square(i, seed):
        return (i * i) % 4 == 1

    print(partally.compute(10**5, "processes", odd_square, workers=2),
          partally.compute(10**5, "numba", odd_square))
    """
)


def test_a_function_in_main_works_in_a_pool_without_a_main_guard(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    for argv, stdin in (([str(script)], None), (["-"], SCRIPT)):
        done = subprocess.run(
            [sys.executable, *argv], input=stdin, capture_output=True, text=True, timeout=180,
            env=_env(XDG_CACHE_HOME=str(tmp_path / "cache")),
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["50000", "50000"]


def _cli(*argv, cwd=None, timeout=240, **env):
    return subprocess.run(
        [sys.executable, "-m", "partally", *argv], capture_output=True, text=True,
        timeout=timeout, cwd=cwd, env=_env(**env),
    )


def test_cli_imports_a_workload_by_path(tmp_path):
    (tmp_path / "mykernels.py").write_text(
        "def thirds(i, seed):\n    return i % 3 == 0\n"
    )
    cache = str(tmp_path / "cache")
    done = _cli("compute", "3000", "--workload", "mykernels:thirds", "--backend", "numba",
                cwd=tmp_path, XDG_CACHE_HOME=cache)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1000"
    for path, message in (("nosuchmodule:f", "cannot import module"), ("mykernels:nope", "has no")):
        done = _cli("compute", "10", "--workload", path, cwd=tmp_path, XDG_CACHE_HOME=cache)
        assert done.returncode == 2 and message in done.stderr, done.stderr


def test_bench_verifies_a_user_workload(tmp_path):
    done = _cli("bench", "--workload", "examples.hashed:rare_hash", "--sizes", "1e3,1e4",
                "--backends", "python,processes,numba", "--repeat", "1",
                XDG_CACHE_HOME=str(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr + done.stdout
    assert "rare_hash" in done.stdout and "MISMATCH" not in done.stdout + done.stderr


def test_bench_exits_1_when_a_backend_disagrees(tmp_path):
    (tmp_path / "overflowing.py").write_text(
        # wraps in int64 at i = 777 (and every 10007th after): a sample misses it, the bench does not
        "def big(i, seed):\n    return i % 10007 == 777 and (i * 4611686018427387904) % 3 == 1\n"
    )
    done = _cli("bench", "--workload", "overflowing:big", "--sizes", "1e3", "--repeat", "1",
                "--backends", "python,numba", cwd=tmp_path, XDG_CACHE_HOME=str(tmp_path / "c"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "MISMATCH" in done.stdout + done.stderr


def test_a_lambda_made_in_a_loop_compiles_once_and_keeps_nothing_per_call():
    numba = get("numba")
    before = set(numba._kernels._made)  # other tests' lambdas may be there already
    for k in range(300):
        assert partally.compute(3000, "numba", lambda i, seed: i % 3 == 0) == 1000
    keys = [key for key in set(numba._kernels._made) - before if key.startswith("<lambda>@")]
    assert len(keys) == 1, keys
    from partally.workloads.user import _wrapped

    assert _wrapped.cache_info().currsize <= 256
