"""Measure the cluster backends on this machine: Celery, then Ray (a benchmark, not a test).

    flock /tmp/partally-bench.lock python scripts/bench_celery.py [--n 1e9] [--repeat 5]

Starts, one after the other, a Celery cluster (a Redis and two ``celery -A partally.celery
worker --concurrency=1``, tests/celery_cluster.py) and a Ray cluster (two nodes of one CPU,
tests/ray_cluster.py), each process in a session of its own and all of it stopped at the end.
On each: the cost of one task through the backend's own submit/wait/result path, one at a time
(a round trip) and in bursts of 100; a warm ``compute`` at n = 1000; and ``pi`` at n on the two
workers against ``numba`` with one worker, alternating, so that both see the same load. Every
count is checked before any time is printed. Prints medians and the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

BURST = 100


def check(result: object, expected: object) -> None:
    if result != expected:
        sys.exit(f"WRONG: got {result}, expected {expected}: no times reported")


def median_of(repeat: int, function: Callable[[], object], expected: object) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        check(function(), expected)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def tasks_of(name: str, count: int) -> int:
    """``count`` one-element chunks through the backend's adapter, all in flight at once."""
    from partally.backends import get
    from partally.workloads import BUILTINS

    tasks = get(name).connect()
    handles = [tasks.submit(BUILTINS["count"], 0, 1, 0) for _ in range(count)]
    pending, done, total = list(handles), [], 0
    while pending:
        finished, pending = tasks.wait(pending)
        done += finished
        total += sum(tasks.result(handle) for handle in finished)
    tasks.release(done)
    return total


def measure(name: str, n: int, repeat: int, reference: int) -> dict[str, float]:
    import partally

    check(partally.compute(10**6, backend=name, workload="pi"), 785806)  # workers warm
    check(partally.compute(n, backend=name, workload="pi"), reference)
    one = median_of(200, lambda: tasks_of(name, 1), 1)
    burst = median_of(repeat, lambda: tasks_of(name, BURST), BURST) / BURST
    warm = median_of(50, lambda: partally.compute(1000, backend=name, workload="pi"), 786)
    load = os.getloadavg()[0]
    numba_runs, cluster_runs = [], []
    for _ in range(repeat):  # alternating: both see the same background load
        numba_runs.append(median_of(1, lambda: partally.compute(n, "numba", "pi", workers=1),
                                    reference))
        cluster_runs.append(median_of(1, lambda: partally.compute(n, name, "pi"), reference))
    return {"one": one, "burst": burst, "warm": warm, "load": load,
            "numba": statistics.median(numba_runs), "cluster": statistics.median(cluster_runs)}


def report(name: str, device: str, n: int, repeat: int, found: dict[str, float]) -> None:
    print(f"{name}: {device}")
    print(f"  per task: {found['one'] * 1e3:.2f} ms one at a time (round trip, median of 200); "
          f"{found['burst'] * 1e3:.2f} ms each in bursts of {BURST} (median of {repeat})")
    print(f"  warm compute(1000, pi): {found['warm'] * 1e3:.2f} ms (median of 50)")
    print(f"  pi n={n:.0e}: numba 1 worker {found['numba']:.3f} s; {name} 2 workers "
          f"{found['cluster']:.3f} s; speed-up {found['numba'] / found['cluster']:.2f}x "
          f"(medians of {repeat}; load average {found['load']:.2f} before)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=float, default=1e9)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    n = int(args.n)

    import partally
    from partally.backends import get

    partally.compute(10**7, backend="numba", workload="pi", workers=1)  # compiled outside clocks
    reference = partally.compute(n, backend="numba", workload="pi", workers=1)
    check(partally.compute(n, backend="native", workload="pi", workers=1), reference)
    print(f"pi n={n:.0e} = {reference} (numba and native agree); load average "
          f"{os.getloadavg()[0]:.2f} at the start")

    from celery_cluster import CeleryCluster

    with CeleryCluster(visibility=60).start(workers=2) as cluster:  # partally's default
        os.environ.update(cluster.env())
        found = measure("celery", n, args.repeat, reference)
        report("celery", get("celery").device(), n, args.repeat, found)
        get("celery").close()
        for name in ("CELERY_BROKER_URL", "PARTALLY_CELERY_VISIBILITY_TIMEOUT"):
            os.environ.pop(name, None)

    if args.skip_ray:
        return
    from ray_cluster import LocalCluster

    with LocalCluster(cpus=1).start(nodes=2) as cluster:
        os.environ.update(cluster.driver_env())
        found = measure("ray", n, args.repeat, reference)
        report("ray", get("ray").device(), n, args.repeat, found)
        import ray

        ray.shutdown()  # before the cluster goes


if __name__ == "__main__":
    main()
