"""numba-cuda's reductions on a real CUDA device: exact, equal to the CPU's bit for bit, and
compiled without FMA contraction (the CUDA simulator never contracts, so only a device shows it).

Skipped, with the reason, where numba-cuda cannot run a kernel on a device (run by
scripts/device_check.sh on a GPU machine).
"""

from __future__ import annotations

import os

import pytest

import partally
from partally.backends import get

import exact_reference as ref

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def numba_cuda():
    backend = get("numba-cuda")
    reason = backend.unavailable()
    if reason is None and os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        reason = "the CUDA simulator, not a device"
    if reason is not None:
        pytest.skip(f"numba-cuda: {reason}")
    return backend


def contracted(i, seed):
    """x * x + 0.3: NVVM's default makes it one fused multiply-add, whose value differs."""
    x = float(i) * 1.1
    return x * x + 0.3


CASES = [
    (contracted, float, "sum"), (ref.mixed, float, "sum"), (ref.mixed, float, "min"),
    (ref.mixed_finite, float, "mean"), (ref.mixed_finite, float, "max"),
    (ref.signed_zeros, float, "min"), (ref.big_ints, int, "sum"), (ref.ties, int, "max"),
]


@pytest.mark.parametrize("function, returns, reduce", CASES,
                         ids=lambda x: getattr(x, "__name__", str(x)))
@pytest.mark.parametrize("blocks, threads", [(None, 256), (7, 96)])
def test_reductions_are_exact_on_the_device(numba_cuda, function, returns, reduce, blocks, threads):
    workload = partally.workload(function, reduce=reduce, returns=returns)
    lo, hi, seed = 1000, 201_000, 3
    partial = numba_cuda.run(workload, lo, hi, workers=1, seed=seed, blocks=blocks, threads=threads)
    got = workload.reduction.finish(partial, hi - lo)
    xs = ref.values(function, lo, hi, seed)
    if reduce in ("min", "max"):
        expected = ref.extreme(xs, lo, reduce)
    elif returns is float:
        expected = ref.float_sum(xs) if reduce == "sum" else ref.float_mean(xs)
    else:
        expected = sum(xs)
    assert ref.same(got, expected), (got, expected)


def test_the_kernels_hold_no_fma(numba_cuda):
    workload = partally.workload(contracted, reduce="sum", returns=float)
    kernel, _ = numba_cuda.kernel(workload)
    ptx = "\n".join(kernel.inspect_asm().values())
    assert "fma.rn.f64" not in ptx and "mul.rn.f64" in ptx


def test_the_gpu_and_the_cpu_agree_bit_for_bit(numba_cuda):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from examples.option_price import call_payoff

    n = 10**7
    gpu = partally.compute(n, "numba-cuda", call_payoff, seed=5)
    assert ref.same(gpu, partally.compute(n, "numba", call_payoff, seed=5))
