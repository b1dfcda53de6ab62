"""An exact integer total past 64 bits: the sum of i*i over [0, n).

Each i*i fits a signed 64-bit integer (i < 3 * 10**9), the total does not: partally adds ints
exactly (Python ints, 128-bit accumulators in compiled code), where a plain int64 sum would wrap.
Over [0, 10**7) it is (n - 1) n (2n - 1) / 6 = 333333283333335000000, past 2**63 = 9.2e18.

    partally compute 1e7 --workload examples.square_total:square
"""

import partally


@partally.workload(reduce="sum", returns=int, limit=3 * 10**9)  # i*i fits int64 below that
def square(i, seed):
    """i squared"""
    return i * i


if __name__ == "__main__":
    n = 10**7
    total = partally.compute(n, workload=square)
    print(total, total == (n - 1) * n * (2 * n - 1) // 6, total > 2**63)
