"""Measure user workloads (issue 10): the examples' rates on every CPU backend, numba against a
hand-written ``@njit(parallel=True)`` ``prange`` loop, auto's first-call cost and warm dispatch.

    python scripts/bench_user.py [--repeat 5] [--seconds 1.0]

Every count is checked against the pure-Python count (small n) or against the other backends
before its time is printed; times are medians after a warm-up (JIT compile or cache load, pool
start). The first-call costs run in new processes with an empty cache folder.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import partally  # noqa: E402
from examples.collatz import long_collatz  # noqa: E402
from examples.digit_table import prime_digit_sum  # noqa: E402
from examples.hashed import rare_hash  # noqa: E402
from partally._timing import measure  # noqa: E402

EXAMPLES = (long_collatz, rare_hash, prime_digit_sum)
BACKENDS = ("python", "threads", "processes", "numba")
SEED = 7


def hand_written(workload):
    """The same function in the loop a Numba user writes by hand."""
    import numpy as np
    from numba import njit, prange

    element = njit(inline="always")(workload.function)

    @njit(parallel=True, nogil=True)
    def count(n, seed):
        total = 0
        for i in prange(n):
            if element(np.int64(i), seed):  # a copy: the function may assign to its i
                total += 1
        return total

    return count


def size_for(backend: str, workload, seconds: float) -> int:
    """A size whose run takes about ``seconds`` on ``backend`` (from a probe)."""
    n = 10**4
    while True:
        start = time.perf_counter()
        partally.compute(n, backend, workload, seed=SEED)
        took = time.perf_counter() - start
        if took > seconds / 10 or n >= 10**10:
            return int(min(10**10, n * seconds / max(took, 1e-9)))
        n *= 10


def rates(repeat: int, seconds: float) -> None:
    print(f"{'workload':16} {'backend':10} {'n':>12} {'median s':>10} {'elements/s':>12}")
    for workload in EXAMPLES:
        for backend in BACKENDS:
            partally.compute(10**4, backend, workload, seed=SEED)  # warm: JIT, pool
            n = size_for(backend, workload, seconds)
            expected = partally.compute(n, "numba", workload, seed=SEED)
            timing, got = measure(lambda: partally.compute(n, backend, workload, seed=SEED), repeat)
            assert got == expected, (workload.name, backend, got, expected)
            print(f"{workload.name:16} {backend:10} {n:12.3g} {timing.median:10.4f} "
                  f"{n / timing.median:12.3g}")


def against_hand_written(repeat: int, seconds: float) -> None:
    print("\nnumba backend vs hand-written @njit(parallel=True) prange loop (same n, both cores)")
    for workload in EXAMPLES:
        hand = hand_written(workload)
        hand(1000, SEED)  # compile
        n = size_for("numba", workload, seconds)
        ours = measure(lambda: partally.compute(n, "numba", workload, seed=SEED), repeat)
        theirs = measure(lambda: hand(n, SEED), repeat)
        assert ours[1] == theirs[1], (workload.name, ours[1], theirs[1])
        # interleave a second round so that drift hits both alike
        ours2 = measure(lambda: partally.compute(n, "numba", workload, seed=SEED), repeat)
        theirs2 = measure(lambda: hand(n, SEED), repeat)
        a = statistics.median(ours[0].samples + ours2[0].samples)
        b = statistics.median(theirs[0].samples + theirs2[0].samples)
        print(f"  {workload.name:16} n={n:.3g}: partally {a:.4f} s, hand-written {b:.4f} s, "
              f"ratio {a / b:.3f}")


_FIRST = """
import sys, time
sys.path.insert(0, {root!r})
from examples.{module} import {name} as w
import partally
start = time.perf_counter()
first = partally.compute({n}, workload=w, seed=7)
first_s = time.perf_counter() - start
choice = partally.explain({n}, w).backend
start = time.perf_counter()
again = partally.compute({n}, workload=w, seed=7)
run_s = time.perf_counter() - start
assert first == again
loops = 2000
start = time.perf_counter()
for _ in range(loops):
    partally.compute(1000, workload=w, seed=7)
per_call = (time.perf_counter() - start) / loops
print(first_s, run_s, choice, per_call)
"""


def first_calls() -> None:
    print("\nauto's first call in a new process (calibration included) vs the same call again")
    for workload, module, n in (
        (long_collatz, "collatz", 10**6), (rare_hash, "hashed", 10**8),
        (prime_digit_sum, "digit_table", 10**7),
    ):
        for cache in ("empty cache (numba compiles)", "kernels cached, models not"):
            folder = tempfile.mkdtemp(prefix="partally-bench-user-")
            env = dict(os.environ, XDG_CACHE_HOME=folder)
            code = _FIRST.format(root=str(ROOT), module=module, name=workload.name, n=n)
            if cache.startswith("kernels"):  # compile once, then forget the calibration
                subprocess.run([sys.executable, "-c", code], env=env, check=True,
                               capture_output=True)
                for path in Path(folder, "partally").glob("dispatch-*.json"):
                    path.unlink()
            done = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                  capture_output=True, text=True)
            first_s, run_s, choice, per_call = done.stdout.split()
            extra = float(first_s) - float(run_s)
            print(f"  {workload.name:16} n={n:.0e} {cache:30} first {float(first_s):.2f} s, "
                  f"run {float(run_s):.3f} s on {choice}: +{extra:.2f} s; "
                  f"warm auto call at n=1000 {float(per_call) * 1e6:.1f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="target run time per size")
    args = parser.parse_args()
    rates(args.repeat, args.seconds)
    against_hand_written(args.repeat, args.seconds)
    first_calls()


if __name__ == "__main__":
    main()
