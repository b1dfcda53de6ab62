"""Measure numba's exact reductions (issue 22) against the loop a Numba user writes by hand: an
``@njit(parallel=True)`` ``prange`` loop with Numba's own (inexact, order-dependent) reduction of
the same function: a plain float sum, a wrapping int64 sum, a plain min or max without the index.

    python scripts/bench_numba_reductions.py [--repeat 5] [--seconds 1.0] [--workers N]

Each case's n is sized so that the hand-written loop takes about ``--seconds``; times are medians
of ``--repeat`` runs after a warm-up (JIT compile or cache load). partally's result is checked
against the hand-written one (floats to 1e-9 relative, ints modulo 2**64, extremes equal) before
its time is printed. Targets (issue 22): float sum within 2.0x, int sum and min/max within 1.5x.
The int sum of examples/square_total.py (i*i) is left out: LLVM turns the hand-written loop of
``s += i*i`` into a closed form, so it takes no time at any n.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import partally  # noqa: E402
from examples.grid_search import rosenbrock  # noqa: E402
from examples.option_price import call_payoff  # noqa: E402
from partally.backends import get  # noqa: E402

SEED = 7


def cheap_float(i, seed):
    """a hashed float in [-524, 524]: about a nanosecond, the worst case for the reduction"""
    return float(((i * 2654435761) ^ seed) & 0xFFFFF) * 0.001 - 524.0


def cheap_int(i, seed):
    """a hashed int in [-524, 2**20 - 524): as cheap"""
    return (((i * 2654435761) ^ seed) & 0xFFFFF) - 524


def cases(only: str | None = None):
    """(label, workload, target ratio) for each measured reduction."""
    make = partally.workload
    every = [
        ("sum  float  option payoff", make(call_payoff.function, name="payoff", reduce="sum",
                                           returns=float), 2.0),
        ("sum  float  cheap hash", make(cheap_float, reduce="sum", returns=float), 2.0),
        ("sum  int    cheap hash", make(cheap_int, reduce="sum", returns=int), 1.5),
        ("min  float  rosenbrock", rosenbrock, 1.5),
        ("max  float  cheap hash", make(cheap_float, reduce="max", returns=float), 1.5),
        ("min  int    cheap hash", make(cheap_int, reduce="min", returns=int), 1.5),
    ]
    return [case for case in every if only is None or only in case[0]]


def hand_written(workload):
    """The same function in the ``prange`` loop a Numba user writes by hand for its reduction."""
    import numpy as np
    from numba import njit, prange

    element = njit(inline="always")(workload.function)
    reduce, kind = workload.reduce, workload.kind

    if reduce == "sum" and kind == "float":

        @njit(parallel=True, nogil=True)
        def loop(n, seed):
            total = 0.0
            for i in prange(n):
                total += element(np.int64(i), seed)
            return total

    elif reduce == "sum":

        @njit(parallel=True, nogil=True)
        def loop(n, seed):
            total = 0
            for i in prange(n):
                total += element(np.int64(i), seed)
            return total

    elif reduce == "min":
        start = np.inf if kind == "float" else np.iinfo(np.int64).max

        @njit(parallel=True, nogil=True)
        def loop(n, seed):
            best = start
            for i in prange(n):
                best = min(best, element(np.int64(i), seed))
            return best

    else:
        start = -np.inf if kind == "float" else np.iinfo(np.int64).min

        @njit(parallel=True, nogil=True)
        def loop(n, seed):
            best = start
            for i in prange(n):
                best = max(best, element(np.int64(i), seed))
            return best

    return loop


def median_time(run, repeat: int) -> float:
    run()  # warm-up: compile or load from the cache
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def size_for(loop, seconds: float) -> int:
    """An n for which ``loop(n, SEED)`` takes about ``seconds``."""
    loop(1000, SEED)
    n = 10**5
    while True:
        start = time.perf_counter()
        loop(n, SEED)
        took = time.perf_counter() - start
        if took > seconds / 4 or n > 2**40:
            return max(1000, int(n * seconds / max(took, 1e-9)))
        n *= 8


def agrees(workload, ours, theirs) -> bool:
    if workload.reduce in ("min", "max"):
        return ours.value == theirs
    if workload.kind == "float":
        return math.isclose(ours, theirs, rel_tol=1e-9)
    return (ours - int(theirs)) % 2**64 == 0  # the hand-written int64 sum wraps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=None, help="default: every core")
    parser.add_argument("--only", default=None, help="the cases whose label holds this, e.g. 'int'")
    args = parser.parse_args()
    import numba

    workers = args.workers or get("numba").default_workers()
    numba.set_num_threads(min(workers, numba.config.NUMBA_NUM_THREADS))
    print(f"numba {numba.__version__}, {workers} workers, medians of {args.repeat}")
    print(f"{'case':28} {'n':>12} {'by hand ns/el':>14} {'partally ns/el':>15} {'ratio':>6}  target")
    failed = 0
    for label, workload, target in cases(args.only):
        loop = hand_written(workload)
        n = size_for(loop, args.seconds)
        theirs = loop(n, SEED)
        ours = partally.compute(n, "numba", workload, workers=workers, seed=SEED)
        if not agrees(workload, ours, theirs):
            print(f"{label}: MISMATCH partally {ours!r} vs by hand {theirs!r}")
            failed += 1
            continue
        numba.set_num_threads(min(workers, numba.config.NUMBA_NUM_THREADS))
        by_hand = median_time(lambda: loop(n, SEED), args.repeat)
        exact = median_time(
            lambda: partally.compute(n, "numba", workload, workers=workers, seed=SEED), args.repeat
        )
        ratio = exact / by_hand
        verdict = "ok" if ratio <= target else "OVER"
        print(f"{label:28} {n:>12} {by_hand / n * 1e9:>14.2f} {exact / n * 1e9:>15.2f} "
              f"{ratio:>6.2f}  {target}x {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
