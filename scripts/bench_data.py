"""How fast your function over your data runs: partally's numba backend against hand-written
``@njit(parallel=True)`` prange loops over the same arrays, and the process pool's cost per call
by the size of its array.

    python scripts/bench_data.py [--n 2e7] [--repeat 7] [--pool-mb 1,100]

Printed, medians of ``--repeat`` warm calls each, every result checked:
- a count of ``v[i] > t`` at n: ``partally.compute(n, "numba", f, args=(v, t))`` against a
  prange loop (``numba.prange`` with a scalar ``+=``), and the ratio (goal: within 1.10x);
- the exact float sum of ``(x[i] - y[i])**2``: partally's (exact: integer limbs, rounded once)
  against the plain prange float sum (inexact: its result depends on the threads) and the ratio
  (goal: within 2.0x); partally's result is checked against ``math.fsum``;
- ``processes``: one call's time with arrays of each ``--pool-mb`` size (the data crosses once,
  into shared memory: the call should cost about the copy, not a pickle per task).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import numba
import numpy as np

import partally


@numba.njit(parallel=True)
def _hand_count(v, t):
    total = 0
    for i in numba.prange(v.size):
        if v[i] > t:
            total += 1
    return total


@numba.njit(parallel=True)
def _hand_sum(x, y):
    total = 0.0
    for i in numba.prange(x.size):
        d = x[i] - y[i]
        total += d * d
    return total


def _over(i, seed, v, t):
    return v[i] > t


def _squared(i, seed, x, y):
    d = x[i] - y[i]
    return d * d


def _median(call, repeat: int) -> tuple[float, object]:
    result = call()  # warm: compiled, pool started, data trusted
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - began)
    return statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=float, default=2e7)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--pool-mb", default="1,100")
    args = parser.parse_args()
    n = int(args.n)
    rng = np.random.default_rng(0)
    v, x, y = rng.random(n), rng.random(n), rng.random(n)
    print(f"n = {n:.0e}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, numba "
          f"{numba.__version__}, {numba.get_num_threads()} threads")

    counted = partally.workload(_over, name="over")
    ours, got = _median(lambda: partally.compute(n, "numba", counted, args=(v, 0.5)), args.repeat)
    hand, expected = _median(lambda: _hand_count(v, 0.5), args.repeat)
    assert got == expected == int((v > 0.5).sum()), (got, expected)
    print(f"count v[i] > t: partally numba {ours * 1e3:.2f} ms, hand-written prange "
          f"{hand * 1e3:.2f} ms: {ours / hand:.2f}x")

    summed = partally.workload(_squared, reduce="sum", returns=float, name="squared")
    ours, got = _median(lambda: partally.compute(n, "numba", summed, args=(x, y)), args.repeat)
    hand, plain = _median(lambda: _hand_sum(x, y), args.repeat)
    exact = math.fsum(((x - y) ** 2).tolist())
    assert got == exact, (got, exact)
    print(f"sum (x[i] - y[i])**2: partally numba (exact) {ours * 1e3:.2f} ms, prange float sum "
          f"{hand * 1e3:.2f} ms (off by {abs(plain - exact):.3g}): {ours / hand:.2f}x")

    for megabytes in (float(m) for m in args.pool_mb.split(",")):
        size = int(megabytes * 1e6 / 8)
        data = rng.random(size)
        f = partally.workload(lambda i, s, d: d[i % d.size] > 0.5, name="pool_probe")
        took, got = _median(
            lambda: partally.compute(200_000, "processes", f, args=(data,), workers=2), 3
        )
        print(f"processes, one call over 2e5 elements reading a {megabytes:g} MB array: "
              f"{took * 1e3:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
