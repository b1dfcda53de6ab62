"""numba-cuda kernels on numba-cuda's CUDA simulator, against the pure-Python reference.

The simulator runs each CUDA thread as a Python thread, so the ranges are small. It only replaces
the GPU when NUMBA_ENABLE_CUDASIM=1 is set before numba is first imported, so this file runs in its
own pytest process:

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -m cudasim tests/test_cudasim.py
"""

from __future__ import annotations

import importlib.util
import os

import pytest

from partally.workloads import BUILTINS, resolve

import exact_reference as ref
from reference import count_range, loop_count

pytestmark = [
    pytest.mark.cudasim,
    # numpy warns when a uint64 product wraps; the workloads mean it to wrap (modulo 2**64).
    pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),
]


def _why_not() -> str | None:
    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        return (
            "needs the CUDA simulator: run `NUMBA_ENABLE_CUDASIM=1 python -m pytest -m cudasim "
            "tests/test_cudasim.py` (the variable must be set before numba is imported)"
        )
    if importlib.util.find_spec("numba_cuda") is None:
        return 'numba-cuda is not installed (pip install "partally[cuda]")'
    from numba import cuda

    if not cuda.config.ENABLE_CUDASIM:
        return "numba was imported before NUMBA_ENABLE_CUDASIM=1 took effect: use a fresh process"
    return None


_REASON = _why_not()
if _REASON is not None:
    pytest.skip(_REASON, allow_module_level=True)

import dataclasses  # noqa: E402

from partally.backends import _numba_cuda_kernels, get  # noqa: E402

numba_cuda = get("numba-cuda")

SHAPES = [(1, 1), (1, 32), (3, 64), (2, 100), (5, 33)]  # (blocks, threads per block)
RANGES = {
    "count": [(0, 0), (0, 1000), (17, 1234), (2**63 - 700, 2**63 - 1)],
    "primes": [(0, 0), (0, 1000), (17, 1234), (2**32 - 600, 2**32)],
    "pi": [(0, 0), (0, 1000), (17, 1234), (2**63 - 700, 2**63 - 1)],
}
CASES = [(w, lo, hi) for w, ranges in RANGES.items() for lo, hi in ranges]


@pytest.mark.parametrize("blocks, threads", SHAPES)
@pytest.mark.parametrize("workload, lo, hi", CASES)
def test_kernel_matches_reference(workload, lo, hi, blocks, threads):
    expected = count_range(workload, lo, hi, seed=0)
    got = numba_cuda.count(resolve(workload), lo, hi, workers=1, seed=0, blocks=blocks, threads=threads)
    assert got == expected


@pytest.mark.parametrize("seed", [1, 2**64 - 1, 0x9E3779B97F4A7C15])
def test_pi_seeds(seed):
    got = numba_cuda.count(BUILTINS["pi"], 1000, 2500, workers=1, seed=seed, blocks=3, threads=64)
    assert got == count_range("pi", 1000, 2500, seed=seed)


@pytest.mark.parametrize("workload", ["count", "primes", "pi"])
def test_many_launches_add_up(workload, monkeypatch):
    # Slices that do not divide the range: each launch adds into the same 64-bit counter.
    sliced = dataclasses.replace(resolve(workload), gpu_slice=97)
    got = numba_cuda.count(sliced, 5, 1500, workers=1, seed=7, blocks=2, threads=64)
    assert got == count_range(workload, 5, 1500, seed=7)


def test_many_iterations_per_thread():
    # 10**4 elements on 128 threads: about 80 trips of each grid-stride loop (the simulator runs
    # each CUDA thread as a Python thread, about 1 ms an element: known values at 10**5 took minutes)
    got = numba_cuda.count(BUILTINS["pi"], 0, 10**4, workers=1, seed=0, blocks=4, threads=32)
    assert got == count_range("pi", 0, 10**4, seed=0)


def test_compute_uses_the_simulator():
    import partally

    assert numba_cuda.unavailable() is None
    assert "simulator" in numba_cuda.device()
    assert partally.compute(3000, backend="numba-cuda", workload="primes") == 430


def test_bad_shape_is_refused():
    with pytest.raises(ValueError, match="threads per block"):
        kernel, index_type = numba_cuda.kernel(BUILTINS["pi"])
        _numba_cuda_kernels.launch(kernel, index_type, "count", [(0, 10)], 0, 1, 2048)


def _examples():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from examples.collatz import long_collatz
    from examples.digit_table import prime_digit_sum
    from examples.hashed import rare_hash

    return [long_collatz, rare_hash, prime_digit_sum]


@pytest.mark.parametrize("index", range(3))
@pytest.mark.parametrize("seed", [0, 2**64 - 5])
def test_user_workloads_as_device_functions(index, seed):
    example = _examples()[index]
    lo, hi = 10**6, 10**6 + 300  # the simulator runs about a thousand elements a second
    got = numba_cuda.count(example, lo, hi, workers=1, seed=seed, blocks=2, threads=32)
    assert got == loop_count(example.function, lo, hi, seed)


# Reductions: every kernel against the exact references of tests/exact_reference.py. The simulator
# runs about a thousand elements a second: small ranges, shapes that leave threads idle or busy.
REDUCTIONS = [
    (ref.mixed, float, "sum"), (ref.mixed, float, "mean"), (ref.mixed, float, "min"),
    (ref.mixed_finite, float, "sum"), (ref.mixed_finite, float, "max"),
    (ref.cancelling, float, "sum"), (ref.signed_zeros, float, "min"),
    (ref.signed_zeros, float, "max"), (ref.big_ints, int, "sum"), (ref.big_ints, int, "mean"),
    (ref.ties, int, "min"), (ref.ties, int, "max"),
]


def _exact(function, reduce, lo, hi, seed):
    xs = ref.values(function, lo, hi, seed)
    if reduce in ("min", "max"):
        return ref.extreme(xs, lo, reduce)
    if isinstance(xs[0], float):
        return ref.float_sum(xs) if reduce == "sum" else ref.float_mean(xs)
    return sum(xs) if reduce == "sum" else sum(xs) / len(xs)


@pytest.mark.parametrize("function, returns, reduce", REDUCTIONS,
                         ids=lambda x: getattr(x, "__name__", str(x)))
@pytest.mark.parametrize("blocks, threads, gpu_slice", [(1, 1, 2**28), (3, 17, 2**28), (2, 32, 61)])
def test_reductions_are_exact(function, returns, reduce, blocks, threads, gpu_slice):
    import partally

    # ties' i * 7 wraps past i = 2**63 / 7 compiled, which the trust sample (its ends) refuses
    limit = 2**60 if function is ref.ties else 2**63 - 1
    workload = dataclasses.replace(
        partally.workload(function, reduce=reduce, returns=returns, limit=limit),
        gpu_slice=gpu_slice,
    )
    lo, hi, seed = 5, 205, 3
    partial = numba_cuda.run(workload, lo, hi, workers=1, seed=seed, blocks=blocks, threads=threads)
    got = workload.reduction.finish(partial, hi - lo)
    assert ref.same(got, _exact(function, reduce, lo, hi, seed)), (got, reduce)


def test_an_int_sum_past_2_63_and_extremes_at_the_limits():
    import partally

    top = partally.workload(lambda i, seed: 9223372036854775807, reduce="sum", returns=int)
    assert numba_cuda.run(top, 0, 300, workers=1, seed=0, blocks=2, threads=32) == 300 * (2**63 - 1)
    low = partally.workload(lambda i, seed: 9223372036854775807, reduce="min", returns=int)
    partial = numba_cuda.run(low, 7, 99, workers=1, seed=0, blocks=2, threads=32)
    assert low.reduction.finish(partial, 92) == (2**63 - 1, 7)


def test_compute_reduces_on_the_simulator():
    import partally

    def late_nan(i, seed):
        return float("nan") if i == 150 or i == 170 else float(i)

    got = partally.compute(200, backend="numba-cuda", workload=late_nan, reduce="max")
    assert ref.same(tuple(got), (float("nan"), 150))


def test_values_that_differ_from_python_are_refused():
    from partally import BackendUnavailable

    with pytest.raises(BackendUnavailable, match="i = |raised"):
        numba_cuda.count(resolve(lambda i, s: (i % 5 + 1) ** -1 > 0.3), 0, 10, workers=1, seed=0)
