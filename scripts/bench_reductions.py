"""Measure reductions (issue 22): each reduction example's rate on every CPU backend that runs it,
and what a reduction costs against the same function counted (``reduce="count"``: the same calls,
only the values' truth kept).

    python scripts/bench_reductions.py [--repeat 5] [--seconds 1.0] [--backends python,threads]

Every result is checked before its time is printed: each backend's must equal the pure-Python
backend's bit for bit (``Reduction.same``) at the same n. Times are medians after a warm-up
(JIT compile or cache load, pool start); n is sized so that a run takes about ``--seconds`` on
the pure-Python backend, times ``SCALE`` for the faster backends.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import partally  # noqa: E402
from examples.grid_search import rosenbrock  # noqa: E402
from examples.option_price import call_payoff  # noqa: E402
from examples.square_total import square  # noqa: E402
from partally.backends import get  # noqa: E402

SEED = 1
BACKENDS = ("python", "threads", "processes", "numba", "ray", "celery")
SCALE = {"processes": 2, "numba": 100, "ray": 100, "celery": 100}  # n: python's n times this


def wave(i, seed):
    """a cheap float: (i * 2654435761 + seed) % 1000 * 0.001 - 0.4"""
    return (i * 2654435761 + seed) % 1000 * 0.001 - 0.4


CASES = (
    ("call_payoff", call_payoff),
    ("square", square),
    ("rosenbrock", rosenbrock),
    *((f"wave {reduce}", partally.workload(wave, reduce=reduce)) for reduce in
      ("sum", "mean", "min", "max")),
)


def counted(workload):
    """The same function, counted (reduce="count": its calls, only the truth of its values)."""
    return partally.workload(workload.function, name=workload.name, reduce="count")


def timed(backend: str, workloads: list, n: int, repeat: int) -> list[tuple[float, object]]:
    """(median seconds, result) per workload: ``repeat`` runs each after one warm-up,
    interleaved (a change in the machine's load hits every workload alike); every result of a
    workload identical."""
    firsts = [partally.compute(n, backend, w, seed=SEED) for w in workloads]
    times: list[list[float]] = [[] for _ in workloads]
    for _ in range(repeat):
        for k, workload in enumerate(workloads):
            began = time.perf_counter()
            result = partally.compute(n, backend, workload, seed=SEED)
            times[k].append(time.perf_counter() - began)
            if not workload.reduction.same(result, firsts[k]):
                raise SystemExit(f"{backend} {workload.name}: {result!r} then {firsts[k]!r}")
    return [(statistics.median(t), first) for t, first in zip(times, firsts)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    args = parser.parse_args()
    backends = [name for name in args.backends.split(",") if get(name).unavailable() is None]
    print(f"{'workload':<16} {'backend':<10} {'n':>10} {'reduce':>10} {'count':>10} "
          f"{'ratio':>6}  result")
    for label, workload in CASES:
        probe = time.perf_counter()
        partally.compute(10**4, "python", workload, seed=SEED)
        per_element = (time.perf_counter() - probe) / 10**4
        python_n = max(10**4, int(args.seconds / per_element))
        reference: dict[int, object] = {}
        for backend in backends:
            if get(backend).refusal(workload) is not None:
                print(f"{label:<16} {backend:<10} refused: {get(backend).refusal(workload)}")
                continue
            n = python_n * SCALE.get(backend, 1)
            if n not in reference:
                reference[n] = partally.compute(n, "python", workload, seed=SEED)
            (seconds, result), (count_s, _) = timed(
                backend, [workload, counted(workload)], n, args.repeat
            )
            if not workload.reduction.same(result, reference[n]):
                print(f"MISMATCH {label} {backend}: {result!r}, python {reference[n]!r}")
                return 1
            print(f"{label:<16} {backend:<10} {n:>10.2e} {n / seconds / 1e6:>8.3f}M/s "
                  f"{n / count_s / 1e6:>8.3f}M/s {seconds / count_s:>6.2f}  {result!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
