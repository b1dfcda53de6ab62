"""Check the counting core's speed targets (issue 2) on this machine.

    python scripts/bench_core.py [--repeat 5]

Every timing is a median of warm runs (JIT compiled, pool started), and every result is checked
against the known value before its time is reported.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import partally
from partally._timing import Timing, measure

KNOWN = {("pi", 10**9): 785_401_279, ("primes", 10**8): 5_761_455, ("pi", 5 * 10**6): None}


CPU_TIME = False  # --cpu-time: CPU seconds of this process (all its threads), not wall seconds


def timed(n: int, backend: str, workload: str, workers: int, repeat: int) -> float:
    partally.compute(min(n, 10_000), backend=backend, workload=workload, workers=workers)
    if CPU_TIME:  # on a loaded machine, what the work costs rather than how long it waited
        samples = []
        for _ in range(repeat):
            start = time.process_time()
            result = partally.compute(n, backend=backend, workload=workload, workers=workers)
            samples.append(time.process_time() - start)
        timing = Timing(tuple(samples))
    else:
        timing, result = measure(
            lambda: partally.compute(n, backend=backend, workload=workload, workers=workers),
            repeat,
        )
    expected = KNOWN.get((workload, n)) or partally.compute(n, backend="native", workload=workload)
    if result != expected:
        raise SystemExit(f"MISMATCH {backend} {workload} n={n}: {result} != {expected}")
    return timing.median


def call_cost(backend: str, repeat: int = 2000) -> float:
    partally.compute(1000, backend=backend)
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        partally.compute(1000, backend=backend)
        samples.append(time.perf_counter() - start)
    samples.sort()
    return samples[len(samples) // 2]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", choices=("pi", "primes"),
                        help="only this workload's numba and native rows (no python, pool, import)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time in CPU seconds of this process (all threads) instead of wall "
                             "seconds: for a machine that others load too")
    args = parser.parse_args()
    global CPU_TIME
    CPU_TIME = args.cpu_time
    repeat = args.repeat
    rows = []
    for workload, n in (("pi", 10**9), ("primes", 10**8)):
        if args.only and workload != args.only:
            continue
        one = timed(n, "numba", workload, 1, repeat)
        two = timed(n, "numba", workload, 2, repeat)
        native = timed(n, "native", workload, 2, repeat)
        rows.append(f"numba {workload} n={n:.0e}: 1 worker {one:.3f} s, 2 workers {two:.3f} s, "
                    f"scaling {one / two:.2f}x (target >= 1.8)")
        rows.append(f"native vs numba {workload} n={n:.0e}, 2 workers: native {native:.3f} s, "
                    f"numba {two:.3f} s, ratio {max(native, two) / min(native, two):.2f} "
                    f"(target <= 1.15)")
    if args.only:
        print(f"partally from {partally.__file__}")
        print("\n".join(rows))
        return
    python = timed(5 * 10**6, "python", "pi", 1, max(1, repeat // 2))
    processes = timed(5 * 10**6, "processes", "pi", 2, max(1, repeat // 2))
    rows.append(f"pi n=5e6: python {python:.2f} s, processes(2) {processes:.2f} s, "
                f"speedup {python / processes:.2f}x (target >= 1.8)")
    rows.append(f"warm compute(1000, 'numba'): {call_cost('numba') * 1e6:.1f} us (target < 50)")
    rows.append(f"warm compute(1000, 'processes'): {call_cost('processes', 300) * 1e3:.2f} ms "
                "(target < 2)")
    imports = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import partally"], check=True)
        imports.append(time.perf_counter() - start)
    rows.append(f"python -c 'import partally': {sorted(imports)[2]:.3f} s (target < 0.3)")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
