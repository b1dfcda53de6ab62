"""Check backend="auto" (issue 4): at every size, auto's median within 1.15x of the fastest backend's.

    flock /tmp/partally-bench.lock python scripts/check_auto.py [--workloads pi primes]
        [--sizes 2-9] [--python-limit 2] [--limit 60]

For each workload and n = 10**2 ... 10**9, every available backend and ``partally.compute(n)``
(auto) are timed in 3 passes (5 where runs are short); a pass times a block of consecutive runs of each, in an order
rotated from pass to pass (so that a busy spell of this shared machine hits all of them alike, and
no backend always follows Numba, whose OpenMP threads spin on after its call); the medians over
all runs are compared. Every backend is warmed first (JIT loaded, pool started), as auto is. A backend is skipped at a
size where one run is predicted (10x its time at the size before) to take longer than
``--python-limit`` s for the pure-Python loops, ``--limit`` s for the rest; skips are listed.
Counts are checked against each other. Calibration (if not cached) happens before any timing.
Ray is timed only with RAY_ADDRESS set (no local Ray is started).
"""

from __future__ import annotations

import argparse
import os
import sys

import partally
from partally._format import seconds
from partally._timing import Timing, measure

PYTHON_LOOPS = ("python", "threads", "processes")
RATIO = 1.15
PASSES = 3


def _sizes(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return [10**k for k in range(int(lo), int(hi or lo) + 1)]


def _words(t: float | None) -> str:
    return "skip" if t is None else seconds(t)


def _runs(predicted: float) -> int:
    """Runs per block: many for short runs, one for long ones (3 passes make 3 samples)."""
    return 15 if predicted < 1e-3 else 5 if predicted < 0.1 else 3 if predicted < 1.0 else 1


def check(workload: str, sizes: list[int], names: list[str], args: argparse.Namespace) -> bool:
    print(f"\n{workload}: ", partally.explain(10**6, workload).reason, file=sys.stderr)
    header = ["n", *names, "auto", "auto picked", "fastest", "auto / fastest", ""]
    print(f"\n### {workload}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    last: dict[str, float] = {}
    skipped: list[str] = []
    dropped: set[str] = set()
    ok = True
    for n in sizes:
        runs = {}
        for name in names:
            limit = args.python_limit if name in PYTHON_LOOPS else args.limit
            if name in dropped or last.get(name, 0.0) * 10 > limit:
                dropped.add(name)
                skipped.append(f"{name} at {n:.0e}".replace("e+0", "e"))
                continue
            runs[name] = lambda name=name: partally.compute(n, backend=name, workload=workload)
        runs["auto"] = lambda: partally.compute(n, workload=workload)
        results = {name: run() for name, run in runs.items()}  # warm-up, and the counts
        if len(set(results.values())) != 1:
            raise SystemExit(f"counts disagree for {workload} at n = {n}: {results}")
        picked = partally.explain(n, workload).backend
        order = list(runs)
        samples: dict[str, list[float]] = {name: [] for name in order}
        passes = PASSES if max(last.get(name, 0.0) for name in order) > 0.01 else 2 * PASSES - 1
        for p in range(passes):  # each pass: a block of runs per backend, in a rotated order
            for name in order[p % len(order) :] + order[: p % len(order)]:
                predicted = last.get(name, 0.0) * 10
                if predicted < 0.1:
                    runs[name]()  # settle: the previous block's threads may still be spinning
                timing, _ = measure(runs[name], _runs(predicted))
                samples[name].extend(timing.samples)
        medians = {name: Timing(tuple(s)).median for name, s in samples.items()}
        last.update({name: t for name, t in medians.items() if name != "auto"})
        fastest = min((name for name in medians if name != "auto"), key=medians.get)
        ratio = medians["auto"] / medians[fastest]
        good = ratio <= RATIO
        ok &= good
        cells = [f"{n:.0e}".replace("e+0", "e"), *(_words(medians.get(name)) for name in names)]
        cells += [_words(medians["auto"]), picked, fastest, f"{ratio:.2f}", "ok" if good else "**FAIL**"]
        print("| " + " | ".join(cells) + " |", flush=True)
    if skipped:
        print(f"\nskipped (one run predicted over the limit): {', '.join(skipped)}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=["pi", "primes"])
    parser.add_argument("--sizes", type=_sizes, default=_sizes("2-9"), help="exponents, e.g. 2-9")
    parser.add_argument("--python-limit", type=float, default=2.0)
    parser.add_argument("--limit", type=float, default=60.0)
    args = parser.parse_args()
    names = [
        info.name
        for info in partally.backends()
        if info.available and (info.name != "ray" or os.environ.get("RAY_ADDRESS"))
    ]
    print(f"backends timed: {', '.join(names)}; auto = partally.compute(n, workload=...)")
    ok = all([check(workload, args.sizes, names, args) for workload in args.workloads])
    print(f"\nauto within {RATIO}x of the fastest at every size: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
