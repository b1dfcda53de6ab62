"""A user function is defined on the call's range: the functions users write (reading an array
by index over n = len(array), hashes with large constants) run on every backend at the n they are
called with, and ``auto`` runs them where they are fastest; what cannot be a workload is refused."""

from __future__ import annotations

import functools
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import partally
from partally.auto import use_dispatcher
from partally.auto.cache import CalibrationCache
from partally.auto.calibration import Calibration
from partally.auto.dispatcher import Dispatcher
from partally.auto.models import Model
from partally.backends import get
from partally._settings import Settings

CPU = ("python", "threads", "processes", "numba")
DATA = np.random.default_rng(0).random(20_000)
VALUES = tuple(range(1000))
N = 5_000


@pytest.fixture(autouse=True)
def own_dispatcher(tmp_path):
    """auto calibrates into a temporary cache, never the user's."""
    dispatcher = Dispatcher(cache=CalibrationCache(tmp_path), settings=Settings())
    use_dispatcher(dispatcher)
    yield dispatcher
    use_dispatcher(None)


def reads_data(i, seed):
    return DATA[i] > 0.5


def reads_values(i, seed):
    return VALUES[i]


def only_in_range(i, seed):
    if not 0 <= i < N:
        raise IndexError(f"{i} is outside [0, {N})")
    return (i * 2654435761 + seed) % 97 == 3


@pytest.mark.parametrize("backend", CPU)
def test_a_function_that_reads_an_array_by_index_runs_at_its_length(backend):
    expected = int((DATA > 0.5).sum())
    assert partally.compute(len(DATA), backend, reads_data, workers=2) == expected


def test_a_tuple_read_by_index_is_summed_by_auto_at_its_length():
    assert partally.compute(1000, workload=reads_values, reduce="sum") == sum(VALUES)
    assert partally.compute(1000, "numba", reads_values, reduce="sum") == sum(VALUES)


@pytest.mark.parametrize("backend", CPU)
def test_a_function_that_raises_outside_its_range_passes_inside_it(backend):
    expected = sum(only_in_range(i, 0) for i in range(N))
    assert partally.compute(N, backend, only_in_range, workers=2) == expected
    assert partally.compute(N, workload=only_in_range) == expected  # auto: calibration included
    assert partally.explain(N, workload=only_in_range).backend  # its calibration: inside too


def test_explain_and_the_bench_stay_inside_the_range(tmp_path):
    explanation = partally.explain(N, workload=only_in_range)
    assert explanation.predicted, explanation
    script = tmp_path / "ranged.py"
    script.write_text(textwrap.dedent(f"""
        N = {N}

        def only_in_range(i, seed):
            if not 0 <= i < N:
                raise IndexError(i)
            return i % 3 == 0
    """))
    done = subprocess.run(
        [sys.executable, "-m", "partally", "bench", "--workload", "ranged:only_in_range",
         "--sizes", f"1e3,{N}", "--backends", "python,numba"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**_environment(), "XDG_CACHE_HOME": str(tmp_path / "cache")},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "IndexError" not in done.stdout + done.stderr


def _environment() -> dict[str, str]:
    import os

    return {key: value for key, value in os.environ.items() if not key.startswith("PARTALLY_")}


@pytest.mark.parametrize("function", [
    lambda i, s: (i * 2654435761 + s) % 97 == 3,
    lambda i, s: (i * 2246822519 + 374761393 + s) % 2**31 < 2**24,
], ids=["knuth", "xxhash"])
def test_a_hash_with_a_large_multiplier_runs_on_numba_inside_its_range(function):
    n = 10**5
    expected = sum(bool(function(i, 0)) for i in range(n))
    assert partally.compute(n, "numba", function) == expected
    assert get("numba").supports(partally.workload(function), n) is None


@pytest.mark.parametrize("reduce", ["sum", "min", "max"])
def test_reductions_of_large_values_run_on_numba_inside_their_range(reduce):
    n = 10**5
    square = partally.workload(lambda i, s: i * i * 1000, reduce=reduce, name=f"sq_{reduce}")
    hashed = partally.workload(
        lambda i, s: (i * 2654435761 + s) % 1000, reduce=reduce, name=f"hash_{reduce}"
    )
    for workload in (square, hashed):
        assert partally.compute(n, "numba", workload) == partally.compute(n, "python", workload)


def test_an_njit_function_is_trusted_on_its_range():
    numba = pytest.importorskip("numba")

    @numba.njit
    def sevens(i, seed):
        return (i * 7 + 3) % 11 == 2

    n = 10**5
    assert partally.compute(n, "numba", sevens) == sum((i * 7 + 3) % 11 == 2 for i in range(n))


def test_a_function_that_wraps_past_2_23_is_checked_again_for_a_larger_range():
    """Trusted at n = 10**6; i * 2**40 wraps at 64 bits from i = 2**23: at n = 2 * 10**7 the
    new part of the range is sampled (its powers of two included) and numba refuses it."""
    wraps = partally.workload(lambda i, s: (i * 2**40) % 7 == 3, name="wraps_at_2_23")
    n = 10**6
    assert partally.compute(n, "numba", wraps) == sum((i * 2**40) % 7 == 3 for i in range(n))
    with pytest.raises(partally.BackendUnavailable, match="i = "):
        partally.compute(2 * 10**7, "numba", wraps)
    assert partally.compute(n, "numba", wraps) > 0  # still trusted on the smaller range


def test_a_limit_is_part_of_what_is_kept():
    def shifted(i, seed):
        return (i << 3) % 7 == 1

    everywhere = partally.workload(shifted)
    bounded = partally.workload(shifted, limit=10**6)
    assert everywhere.key != bounded.key
    assert get("numba").supports(everywhere, 2**62) is not None
    assert get("numba").supports(bounded, 10**6) is None


def generates(i, seed):
    yield i


async def awaits(i, seed):
    return i


@pytest.mark.parametrize("function", [generates, awaits, lambda i, s: (x for x in ())],
                         ids=["generator", "async", "lambda"])
def test_what_cannot_be_a_predicate_is_refused(function):
    if function.__name__ == "<lambda>":  # returns a generator: a value, true; allowed
        assert partally.compute(10, "python", function) == 10
        return
    with pytest.raises(TypeError, match="generator|async"):
        partally.compute(10, "python", function)
    with pytest.raises(TypeError, match="generator|async"):
        partally.workload(function)


def _run(tmp_path, files: dict[str, str], main: str, timeout: float = 240):
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    (tmp_path / "main.py").write_text(textwrap.dedent(main))
    done = subprocess.run(
        [sys.executable, "main.py"], capture_output=True, text=True, timeout=timeout,
        cwd=tmp_path, env={**_environment(), "XDG_CACHE_HOME": str(tmp_path / "cache")},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.split()


def test_a_module_attribute_set_at_run_time_is_used_by_every_backend(tmp_path):
    """cloudpickle#398: the module travelled by reference and each pool worker imported it
    afresh, counting with the file's value."""
    out = _run(tmp_path, {"cfg.py": "THRESHOLD = 3\n"}, """
        import partally, cfg

        def over(i, seed):
            return i % 10 > cfg.THRESHOLD

        if __name__ == "__main__":
            cfg.THRESHOLD = 7
            for backend in ("python", "threads", "processes", "numba"):
                print(partally.compute(100_000, backend, over, workers=2))
    """)
    assert out == ["20000"] * 4


def test_an_lru_cache_helper_from_main_runs_in_a_pool(tmp_path):
    """cloudpickle#178: an lru_cache wrapper from __main__ travelled by reference and killed the
    pool's worker, which could not find it."""
    out = _run(tmp_path, {}, """
        import functools, partally

        @functools.lru_cache(maxsize=None)
        def sevens(k):
            return k % 7 == 0

        def cached(i, seed):
            return sevens(i % 1000)

        if __name__ == "__main__":
            for backend in ("python", "processes"):
                print(partally.compute(100_000, backend, cached, workers=2))
    """)
    assert out == ["14300", "14300"]


# --- auto learns from its own calls --------------------------------------------------------------

def _busy_calibration(workload, names=None, **_):
    """What a calibration on a busy machine gave (seen at load 2-4 on 2 cores): numba's first
    calls stalled 20 ms, and a fit through them predicted it at minutes for 10**5."""
    return Calibration(
        models={
            "python": Model((32, 10**5), (2e-5, 0.05)),
            "numba": Model((32, 100), (1e-4, 2.2e-2), startup=0.0),
        },
        skipped={}, workers=2, elapsed_s=0.1, load=0.0, domain=10**5,  # load: not re-measured
    )


def test_a_prediction_far_off_is_corrected_by_auto_s_own_calls(tmp_path):
    payoff = partally.workload(
        lambda i, s: ((i * 2654435761 + s) % 2**32 + 0.5) / 2**32 > 0.7, name="payoff_like"
    )
    chooser = Dispatcher(
        cache=CalibrationCache(tmp_path), settings=Settings(), calibrate=_busy_calibration
    )
    n = 10**5
    expected = partally.compute(n, "python", payoff)
    get("numba").run(payoff, 0, 100, workers=1, seed=0)  # started: its compile is not the probe's
    chosen = []
    for _ in range(5):
        name, timed = chooser.dispatch(payoff, n)
        chosen.append(name)
        backend = get(name)
        import time

        began = time.perf_counter()
        got = backend.run(payoff, 0, n, workers=backend.default_workers(), seed=0)
        if timed is not None:
            timed(time.perf_counter() - began)
        assert got == expected
    assert chosen[0] == "python", chosen
    assert "numba" in chosen[1:3], chosen  # within a few calls, not never
    assert chooser.choose(payoff, n) == "numba"
    explanation = chooser.explain(payoff, n)
    assert "real calls" in str(explanation), explanation
    again = Dispatcher(cache=CalibrationCache(tmp_path), settings=Settings(),
                       calibrate=functools.partial(pytest.fail, "calibrated again"))
    assert again.choose(payoff, n) == "numba"  # the correction was cached for later processes


# --- the property: no silent wrong answer, over arrays and ranges of any n -----------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

TABLE = np.random.default_rng(7).integers(-(2**40), 2**40, 4000)

_LEAF = st.one_of(
    st.just("i"), st.just("s"), st.just("int(TABLE[i])"), st.just("int(TABLE[(i * 7) % 4000])"),
    st.integers(-9, 9).map(str),
    st.sampled_from(["(2**62)", "(2**31 - 1)", "2654435761", "64"]),
)
_EXPR = st.recursive(
    _LEAF,
    lambda leaf: st.builds(
        lambda a, op, b: f"({a} {op} {b})", leaf, st.sampled_from(["+", "-", "*", "//", "%"]), leaf
    ),
    max_leaves=3,
)


@settings(max_examples=10, deadline=None)
@given(_EXPR, st.sampled_from(["<", ">", "==", "!="]), st.integers(-5, 5), st.integers(1, 4000))
def test_property_a_function_over_an_array_is_pythons_or_refused(expression, comparison, k, n):
    """Any small predicate over the table, at any n inside it: each backend gives Python's
    count, or refuses, or raises WorkloadError where Python raises; never another number."""
    source = f"lambda i, s: {expression} {comparison} {k}"
    function = eval(source, {"TABLE": TABLE})  # noqa: S307 - a generated expression of our own
    try:
        expected = sum(bool(function(i, 0)) for i in range(n))
    except (ZeroDivisionError, OverflowError):
        expected = None  # Python raises inside the range: every backend must raise too
    for backend in ("numba", "threads"):
        try:
            got = partally.compute(n, backend, function, workers=2)
        except partally.BackendUnavailable as refused:
            assert str(refused), source
            continue
        except partally.WorkloadError:
            assert expected is None, (source, backend, n)
            continue
        assert expected is not None and got == expected, (source, backend, n, got, expected)
