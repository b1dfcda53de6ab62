"""Check backend="auto": at every size, auto's median time within RATIO of the fastest backend's.

    flock /tmp/partally-bench.lock python scripts/check_auto.py [--workloads pi primes count
        examples.collatz:long_collatz ...] [--sizes 2-9] [--ratio 1.10] [--python-limit 2]
        [--limit 20] [--seed 0]

For each workload (a built-in's name or an importable ``module:function``; by default the three
built-ins and the three counting examples) and n = 10**2 ... 10**9, every available backend and
``partally.compute(n)`` (auto) are measured the same way: one untimed call each first (JIT loaded,
pool started, auto's calibration done; the counts must agree), and auto called until its race among
near-tied backends at that n is over (its own warm-up: ``partally.auto.race``), then ROUNDS rounds;
in each round every one of them takes one sample, in an order shuffled afresh (so no backend always
runs after Numba, whose OpenMP threads spin on after its call, and a busy spell of this shared
machine lands on any of them alike). A sample is one call, or k calls back to back when one call is
shorter than ``MIN_SAMPLE_S`` (k from that one's warm call, the faster of two untimed ones where
they are short; auto's after its race: a sample of each is about as long); its time is per call.
The number of rounds is the same for all at a size (more for short calls).
Reported: the median and the 90th percentile of each one's samples; auto passes at a size when its
median is at most ``--ratio`` times the fastest backend's median (the fastest by median). The exit
status is 1 if auto fails at any size.

A backend is left out at a size where one call is predicted (10x its median at the size before; at
the first size, a pure-Python loop by the workload's ``python_cost_s``) to take longer than
``--python-limit`` s for the pure-Python loops, ``--limit`` s for the rest; that is listed under
the table. Ray is timed only with RAY_ADDRESS set (no local Ray is started).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable

import partally
from partally._format import seconds, size
from partally.auto import dispatcher
from partally.workloads import Workload
from partally.backends import get as get_backend
from partally.cli.args import workload_argument

PYTHON_LOOPS = ("python", "threads", "processes")
RATIO = 1.10
MIN_SAMPLE_S = 0.002
WARM_AGAIN_S = 0.5  # a first call shorter than this is made twice: k from the faster
AUTO = "auto"
BUILT_INS = ("pi", "primes", "count")
EXAMPLES = ("examples.collatz:long_collatz", "examples.hashed:rare_hash",
            "examples.digit_table:prime_digit_sum")


def _sizes(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return [10**k for k in range(int(lo), int(hi or lo) + 1)]


def _rounds(slowest: float) -> int:
    """Rounds at a size whose slowest call takes ``slowest`` s: more where calls are short."""
    return 21 if slowest < 0.01 else 11 if slowest < 0.3 else 7 if slowest < 3 else 5


def p90(samples: list[float]) -> float:
    """The 90th percentile (linear between the closest ranks, as numpy's default)."""
    ordered = sorted(samples)
    rank = 0.9 * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _sample(run: Callable[[], int], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        run()
    return (time.perf_counter() - started) / calls


def measure(
    workload: Workload, n: int, runs: dict[str, Callable[[], int]], draw: random.Random
) -> dict[str, list[float]]:
    """Samples (s per call) of every run, in rounds of a shuffled order; the counts must agree."""
    first: dict[str, float] = {}
    counts: dict[str, int] = {}
    for name, run in runs.items():  # warm-up: untimed but for choosing k and the rounds
        started = time.perf_counter()
        counts[name] = run()
        first[name] = time.perf_counter() - started
    # auto's own warm-up: its race among near-tied backends at this n
    if set(dispatcher().settle(workload, n, runs[AUTO])) != {counts[AUTO]}:
        raise SystemExit(f"auto's counts disagree at n = {n}")
    for name, run in runs.items():  # a first call at a new n is slow (first touch, a race)
        if name == AUTO or first[name] < WARM_AGAIN_S:
            started = time.perf_counter()
            counts[name] = run()
            again = time.perf_counter() - started
            first[name] = again if name == AUTO else min(first[name], again)
    if len(set(counts.values())) != 1:
        raise SystemExit(f"counts disagree at n = {n}: {counts}")
    calls = {name: max(1, min(1000, int(MIN_SAMPLE_S / max(t, 1e-7)))) for name, t in first.items()}
    samples: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs)
    for _ in range(_rounds(max(first.values()))):
        draw.shuffle(order)
        for name in order:
            samples[name].append(_sample(runs[name], calls[name]))
    return samples


def check(text: str, sizes: list[int], names: list[str], args: argparse.Namespace) -> bool:
    workload = workload_argument(text)
    print(f"\n{text}: ", partally.explain(10**6, workload).reason, file=sys.stderr)
    header = ["n", *names, "auto", "auto picked", "fastest", "auto / fastest (median, p90)", ""]
    print(f"\n### {text} (each cell: median / 90th percentile)\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    draw = random.Random(args.seed)
    last: dict[str, float] = {}
    dropped: set[str] = set()
    left_out: list[str] = []
    for name in names:
        reason = get_backend(name).supports(workload)
        if reason is not None:
            dropped.add(name)
            left_out.append(f"{name} (cannot run it: {reason})")
    ok = True
    for n in sizes:
        if n > workload.limit:
            left_out.append(f"every backend at {size(n)} (past the workload's limit)")
            continue
        runs: dict[str, Callable[[], int]] = {}
        for name in names:
            limit = args.python_limit if name in PYTHON_LOOPS else args.limit
            if name in dropped:
                continue
            guess = n * workload.python_cost_s if name in PYTHON_LOOPS else 0.0  # the first size
            if (last.get(name, 0.0) * 10 if last else guess) > limit:
                dropped.add(name)
                left_out.append(f"{name} from {size(n)} on")
                continue
            runs[name] = lambda name=name: partally.compute(n, backend=name, workload=workload)
        if not runs:  # nothing to compare auto with: said, not passed or failed
            left_out.append(f"auto from {size(n)} on (every backend left out: not measured)")
            break
        runs[AUTO] = lambda: partally.compute(n, workload=workload)
        samples = measure(workload, n, runs, draw)
        picked = partally.explain(n, workload).backend
        medians = {name: statistics.median(s) for name, s in samples.items()}
        tails = {name: p90(s) for name, s in samples.items()}
        last = {name: t for name, t in medians.items() if name != AUTO}
        fastest = min(last, key=last.get)
        ratio, tail_ratio = medians[AUTO] / medians[fastest], tails[AUTO] / tails[fastest]
        good = ratio <= args.ratio
        ok &= good

        def cell(name: str) -> str:
            return f"{seconds(medians[name])} / {seconds(tails[name])}" if name in medians else "-"

        cells = [size(n), *(cell(name) for name in names), cell(AUTO), picked, fastest,
                 f"{ratio:.2f}, {tail_ratio:.2f}", "ok" if good else "**FAIL**"]
        print("| " + " | ".join(cells) + " |", flush=True)
    if left_out:
        print(f"\nleft out (one call predicted over the limit, or refused): {'; '.join(left_out)}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=[*BUILT_INS, *EXAMPLES])
    parser.add_argument("--sizes", type=_sizes, default=_sizes("2-9"), help="exponents, e.g. 2-9")
    parser.add_argument("--ratio", type=float, default=RATIO, help="auto's median / the fastest's")
    parser.add_argument("--python-limit", type=float, default=2.0)
    parser.add_argument("--limit", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0, help="seeds the shuffled orders")
    args = parser.parse_args()
    names = [
        info.name
        for info in partally.backends()
        if info.available and (info.name != "ray" or os.environ.get("RAY_ADDRESS"))
    ]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"backends timed: {', '.join(names)}; auto = partally.compute(n, workload=...); "
          f"load average {load:.2f} on {os.cpu_count()} CPUs at the start")
    ok = all([check(workload, args.sizes, names, args) for workload in args.workloads])
    print(f"\nauto's median within {args.ratio}x of the fastest median at every size measured: "
          f"{'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
