"""Numba's OpenMP threads, spinning (the default) or sleeping (OMP_WAIT_POLICY=passive), timed.

    python scripts/omp_wait_policy.py [--workload pi] [--sizes 1e4,1e5,1e6,1e7] [--rounds 3]
        [--busy 0]

OpenMP reads OMP_WAIT_POLICY once, when Numba starts its threads, so each policy runs in its own
process: ``--rounds`` alternating pairs of processes (default, passive, default, ...), each
timing ``partally.compute(n, backend="numba")`` at every size (one untimed call, then 15 samples
of 10 calls; the count checked against the first). ``--busy K`` starts K busy loops (one process
each) for the whole run: a machine with more runnable threads than cores, where the spinning
threads wait on a thread that is not running. Printed: the median and the 90th percentile per
policy and size, over every sample of every round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from partally._format import seconds
from partally.cli.args import parse_size

_CHILD = """
import json, statistics, sys, time
import partally
workload, sizes = sys.argv[1], [int(n) for n in sys.argv[2].split(",")]
out = {}
for n in sizes:
    first = partally.compute(n, backend="numba", workload=workload)
    samples = []
    for _ in range(15):
        began = time.perf_counter()
        for _ in range(10):
            assert partally.compute(n, backend="numba", workload=workload) == first
        samples.append((time.perf_counter() - began) / 10)
    out[n] = samples
print(json.dumps(out))
"""

POLICIES = {"default (spin)": None, "passive": "passive"}


def _run(policy: str | None, workload: str, sizes: list[int]) -> dict[int, list[float]]:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, workload, ",".join(map(str, sizes))],
        env=env, capture_output=True, text=True, check=True,
    )
    return {int(n): s for n, s in json.loads(done.stdout).items()}


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="pi")
    parser.add_argument("--sizes", type=lambda text: [parse_size(t) for t in text.split(",")],
                        default=[10**4, 10**5, 10**6, 10**7], help="e.g. 1e4,1e6")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--busy", type=int, default=0, help="busy loops beside it")
    args = parser.parse_args()
    busy = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(args.busy)]
    try:
        samples = {name: {n: [] for n in args.sizes} for name in POLICIES}
        for _ in range(args.rounds):
            for name, policy in POLICIES.items():
                for n, values in _run(policy, args.workload, args.sizes).items():
                    samples[name][n].extend(values)
    finally:
        for process in busy:
            process.kill()
    print(f"numba, {args.workload}, {args.busy} busy loop(s) beside it, {os.cpu_count()} CPUs; "
          "median / 90th percentile of a call")
    print("| n | " + " | ".join(POLICIES) + " |\n|---|" + "---|" * len(POLICIES))
    for n in args.sizes:
        cells = [f"{seconds(statistics.median(s))} / {seconds(_p90(s))}"
                 for s in (samples[name][n] for name in POLICIES)]
        print(f"| {n:.0e} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
