"""Measure the ``ray`` backend: a warm local Ray, or a cluster (a benchmark, not a test).

    flock /tmp/partally-bench.lock python scripts/bench_ray.py [--n 1e9] [--repeat 3]
    RAY_ADDRESS=HEAD:6379 python scripts/bench_ray.py          # a cluster that is already running
    python scripts/bench_ray.py --cluster 2                   # start one here: 2 nodes of 1 CPU

Without RAY_ADDRESS or --cluster: a local Ray with every core. ``--cluster K`` starts K nodes of
one CPU each on this machine with the `ray` CLI (tests/ray_cluster.py: each node in its own
session, stopped at the end, nothing else touched) and connects to it through RAY_ADDRESS.

Every count is checked before any time is printed: known values at small n, and at n every ray
run against numba's count. Prints: `pi` at n on `ray` (every CPU of the cluster) against `numba`
with 1 worker; a warm call at tiny n; Ray's cost per task, both one at a time (latency) and many at
once (throughput).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

KNOWN = [("pi", 10**6, 785806), ("primes", 10**7, 664579), ("count", 10**7, 10**7)]


def median(repeat: int, function: Callable[[], object], expected: object) -> float:
    from partally._timing import measure

    timing, result = measure(function, repeat)
    check(result, expected)
    return timing.median


def check(result: object, expected: object) -> None:
    if result != expected:
        sys.exit(f"WRONG: got {result}, expected {expected}: no times reported")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=float, default=1e9)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cluster", type=int, metavar="NODES",
                        help="start a cluster of NODES nodes of 1 CPU here and use it")
    args = parser.parse_args()
    if args.cluster:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from ray_cluster import LocalCluster

        started = time.perf_counter()
        with LocalCluster(cpus=1).start(nodes=args.cluster) as cluster:
            print(f"started {args.cluster} nodes at {cluster.address} in "
                  f"{time.perf_counter() - started:.1f} s")
            os.environ.update(cluster.driver_env())  # RAY_ADDRESS and the cluster's token
            run(args)
            import ray

            ray.shutdown()  # before the cluster goes
    else:
        run(args)


def run(args: argparse.Namespace) -> None:
    import partally
    from partally.backends import get as get_backend

    n = int(args.n)
    from partally.backends import ray as backend  # the module: its connection and task, timed
    from partally.backends._cluster import plan
    from partally.workloads import BUILTINS

    print(f"ray: {get_backend('ray').device()}")
    started = time.perf_counter()
    check(partally.compute(1000, backend="ray", workload="pi"), 786)
    what = "connect" if os.environ.get("RAY_ADDRESS") else "local Ray start"
    print(f"{what} + first call: {time.perf_counter() - started:.2f} s")
    kernel, _ = backend.worker_info()
    ray = backend._connect()  # noqa: SLF001 - the connected module, for the per-task timings
    cpus = backend._cluster_cpus(ray)  # noqa: SLF001
    print(f"ray: {backend.device()}; worker kernel: {kernel}")
    for workload, size, expected in KNOWN:  # every node's workers warm, and right
        check(partally.compute(size, backend="ray", workload=workload), expected)
    partally.compute(10**7, backend="numba", workload="pi", workers=1)
    reference = partally.compute(n, backend="numba", workload="pi", workers=1)
    check(partally.compute(n, backend="ray", workload="pi"), reference)
    print(f"counts checked: {', '.join(f'{w} {s:.0e}' for w, s, _ in KNOWN)}; "
          f"pi {n:.0e} = {reference} on ray and numba")

    load = open("/proc/loadavg").read().split()[0]
    numba_runs, ray_runs = [], []
    for _ in range(args.repeat):  # alternating, so both see the same background load
        numba_runs.append(
            median(1, lambda: partally.compute(n, "numba", "pi", workers=1), reference))
        ray_runs.append(
            median(1, lambda: partally.compute(n, "ray", "pi", workers=cpus), reference))
    numba_s, ray_s = statistics.median(numba_runs), statistics.median(ray_runs)
    print(f"load average before: {load}")
    print(f"pi n={n:.0e}: numba 1 worker {numba_s:.3f} s; ray {cpus} workers {ray_s:.3f} s; "
          f"speed-up {numba_s / ray_s:.2f}x ({len(list(plan(BUILTINS['pi'], 0, n, cpus)))} tasks; "
          f"median of {args.repeat})")

    tiny = median(50, lambda: partally.compute(1000, "ray", "pi"), 786)
    print(f"warm call, pi n=1000 (one task): median {tiny * 1e3:.2f} ms")

    task = backend._remote(ray)[0]  # noqa: SLF001
    one = median(100, lambda: ray.get(task.remote(BUILTINS["count"], 0, 1, 0)), 1)
    many = 1000
    burst = median(3, lambda: ray.get([task.remote(BUILTINS["count"], 0, 1, 0) for _ in range(many)]),
                   [1] * many)
    print(f"per task: {one * 1e3:.2f} ms one at a time (round trip); "
          f"{burst / many * 1e3:.3f} ms each in a burst of {many} on {cpus} CPUs")


if __name__ == "__main__":
    main()
