"""Numbers whose decimal digit sum is prime, looked up in a small constant table.

The table is a module-level tuple: Numba and numba-cuda compile it in as a constant.

    partally compute 1e7 --workload examples.digit_table:prime_digit_sum
"""

import partally

# PRIME_SUM[s] is 1 when s is prime, for every digit sum of a 64-bit number (at most 9 * 19).
PRIME_SUM = tuple(
    int(s > 1 and all(s % d for d in range(2, int(s**0.5) + 1))) for s in range(9 * 19 + 1)
)


@partally.workload
def prime_digit_sum(i, seed):
    """count the i whose decimal digits add up to a prime"""
    total = 0
    while i > 0:
        total += i % 10
        i //= 10
    return PRIME_SUM[total] == 1


if __name__ == "__main__":
    print(partally.compute(10**6, workload=prime_digit_sum))
