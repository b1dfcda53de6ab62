"""Time the GPU backends' kernels with CUDA events, beside the whole ``compute()`` call (issue 3).

    python scripts/bench_gpu.py [--repeat 5] [--backends cuda,numba-cuda]

For each GPU backend, `pi` at n = 1e10 and `primes` below 1e9: the kernel time (CUDA events
recorded on the stream around each launch, summed over the launches of one call) and the whole
``partally.compute`` call (wall clock, Python included), each the median of --repeat runs after a
warm-up (compilation, module load, context). Every count is checked first: primes against the
known value, pi against the CPU (numba or native). Needs a CUDA device; says why not otherwise.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

import partally
from partally.backends import _gpu, get

CASES = (("pi", 10**10), ("primes", 10**9))
KNOWN = {("primes", 10**9): 50_847_534}
TARGET_S = {("pi", 10**10): 0.040, ("primes", 10**9): 0.200}


def cupy_kernel_seconds(workload: str, n: int) -> tuple[float, int]:
    """One call's launches of the cuda backend's kernel, timed with CuPy events."""
    import cupy

    from partally.backends import cuda

    kernel = cuda.module()[0].get_function(cuda.KERNELS[workload])
    grid = (_gpu.default_blocks(),)
    out = cupy.zeros(1, dtype=cupy.uint64)
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    total_ms = 0.0
    for a, b in _gpu.slices(workload, 0, n):
        start.record()
        kernel(grid, (_gpu.THREADS,), (np.uint64(a), np.uint64(b), np.uint64(0), out))
        end.record()
        end.synchronize()
        total_ms += cupy.cuda.get_elapsed_time(start, end)
    return total_ms / 1e3, int(out.get()[0])


def numba_kernel_seconds(workload: str, n: int) -> tuple[float, int]:
    """One call's launches of the numba-cuda backend's kernel, timed with numba-cuda events."""
    from numba import cuda

    from partally.backends import numba_cuda

    kernels = numba_cuda._kernels()  # noqa: SLF001 - the compiled kernels themselves
    kernel = kernels.KERNELS[workload][_gpu.default_blocks(), _gpu.THREADS]
    out = cuda.to_device(np.zeros(1, dtype=np.uint64))
    start, end = cuda.event(timing=True), cuda.event(timing=True)
    total_ms = 0.0
    for a, b in _gpu.slices(workload, 0, n):
        start.record()
        kernel(np.uint64(a), np.uint64(b), np.uint64(0), out)
        end.record()
        end.synchronize()
        total_ms += cuda.event_elapsed_time(start, end)
    return total_ms / 1e3, int(out.copy_to_host()[0])


KERNEL_TIMERS: dict[str, Callable[[str, int], tuple[float, int]]] = {
    "cuda": cupy_kernel_seconds,
    "numba-cuda": numba_kernel_seconds,
}


def wall_seconds(function: Callable[[], int]) -> tuple[float, int]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--backends", default="cuda,numba-cuda")
    args = parser.parse_args()
    names = [name.strip() for name in args.backends.split(",") if name.strip()]
    for name in names:
        if name not in KERNEL_TIMERS:
            parser.error(f"--backends: {name!r} is not a GPU backend; expected {list(KERNEL_TIMERS)}")
    reasons = {name: get(name).unavailable() for name in names}
    if all(reasons.values()):
        for name, reason in reasons.items():
            print(f"{name}: not available here: {reason}", file=sys.stderr)
        return 2
    print(_gpu.device_name())
    cpu = "numba" if get("numba").unavailable() is None else "native"
    expected = dict(KNOWN)
    ok = True
    for name in names:
        if reasons[name] is not None:
            print(f"{name}: skipped ({reasons[name]})")
            continue
        for workload, n in CASES:
            if (workload, n) not in expected:
                expected[workload, n] = partally.compute(n, backend=cpu, workload=workload)
            partally.compute(n, backend=name, workload=workload)  # warm-up: compile, load, context
            KERNEL_TIMERS[name](workload, n)
            kernel, call = [], []
            for _ in range(args.repeat):
                seconds, result = KERNEL_TIMERS[name](workload, n)
                kernel.append(seconds)
                ok &= result == expected[workload, n]
                seconds, result = wall_seconds(lambda: partally.compute(n, name, workload))
                call.append(seconds)
                ok &= result == expected[workload, n]
            k, c = statistics.median(kernel), statistics.median(call)
            print(
                f"{name:10} {workload:6} n={n:.0e}: kernel {k * 1e3:8.2f} ms "
                f"(target {TARGET_S[workload, n] * 1e3:.0f} ms), compute() {c * 1e3:8.2f} ms, "
                f"call / kernel {c / k:.2f} (target <= 1.5); "
                f"{n / k / 1e9:.1f} G elements/s; count {'ok' if ok else 'WRONG'}"
            )
    if not ok:
        print("MISMATCH: a GPU count differs from the reference", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
