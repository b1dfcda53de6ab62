"""Measure the ``ray`` backend on this machine with a warm local Ray (a benchmark, not a test).

    flock /tmp/partally-bench.lock python scripts/bench_ray.py [--n 1e9] [--repeat 3]

Prints: `pi` at n on `ray` (every core) against `numba` with 1 worker; a warm call at tiny n;
Ray's cost per task, both one at a time (latency) and many at once (throughput).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import partally
from partally._timing import measure
from partally.backends import get as get_backend


def median(repeat: int, function: Callable[[], object]) -> float:
    return measure(function, repeat)[0].median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=float, default=1e9)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = int(args.n)
    backend = get_backend("ray")

    started = time.perf_counter()
    partally.compute(1000, backend="ray", workload="pi")
    print(f"local Ray start + first call: {time.perf_counter() - started:.2f} s")
    kernel, _ = backend.worker_info()
    ray = backend._connect()  # noqa: SLF001 - the connected module, for the per-task timings
    cpus = backend._cluster_cpus(ray)  # noqa: SLF001
    print(f"cluster CPUs: {cpus}; worker kernel: {kernel}")
    partally.compute(10**7, backend="ray", workload="pi")  # every worker warm
    partally.compute(10**7, backend="numba", workload="pi", workers=1)

    numba_runs, ray_runs = [], []
    for _ in range(args.repeat):  # alternating, so both see the same background load
        numba_runs.append(median(1, lambda: partally.compute(n, "numba", "pi", workers=1)))
        ray_runs.append(median(1, lambda: partally.compute(n, "ray", "pi", workers=cpus)))
    numba_s, ray_s = statistics.median(numba_runs), statistics.median(ray_runs)
    print(f"load average before: {open('/proc/loadavg').read().split()[0]}")
    print(f"pi n={n:.0e}: numba 1 worker {numba_s:.3f} s; ray {cpus} workers {ray_s:.3f} s; "
          f"speed-up {numba_s / ray_s:.2f}x ({len(backend.plan('pi', 0, n, cpus))} tasks)")

    tiny = median(50, lambda: partally.compute(1000, "ray", "pi"))
    print(f"warm call, pi n=1000 (one task): median {tiny * 1e3:.2f} ms")

    task = backend._remote(ray)[0]  # noqa: SLF001
    one = median(100, lambda: ray.get(task.remote("count", 0, 1, 0)))
    many = 1000
    burst = median(3, lambda: ray.get([task.remote("count", 0, 1, 0) for _ in range(many)]))
    print(f"per task: {one * 1e3:.2f} ms one at a time (round trip); "
          f"{burst / many * 1e3:.3f} ms each in a burst of {many} on {cpus} CPUs")


if __name__ == "__main__":
    main()
