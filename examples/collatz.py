"""Collatz trajectories longer than 200 steps: a loop whose cost per element is uneven.

    partally compute 1e7 --workload examples.collatz:long_collatz
    partally bench --workload examples.collatz:long_collatz --sizes 1e4,1e6
"""

import partally


@partally.workload
def long_collatz(i, seed):
    """count the i whose Collatz trajectory from i + 1 takes more than 200 steps"""
    x, steps = i + 1, 0
    while x != 1 and steps <= 200:
        x = x // 2 if x % 2 == 0 else 3 * x + 1
        steps += 1
    return steps > 200


if __name__ == "__main__":
    print(partally.compute(10**6, workload=long_collatz))
