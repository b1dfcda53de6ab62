"""A 32-bit integer hash of (i, seed) below a threshold: even cost, pure arithmetic.

Every product stays below 2**63 (a 32-bit value times a 27-bit constant), so Python's ints and the
compiled backends' int64 agree bit for bit.

    partally compute 1e8 --workload examples.hashed:rare_hash --seed 7
"""

import partally

MASK32 = 0xFFFFFFFF
MIX = 0x45D9F3B


@partally.workload
def rare_hash(i, seed):
    """count the i whose hash with the seed falls in the lowest 1/128 of its range"""
    x = (i ^ seed) & MASK32
    x = (((x >> 16) ^ x) * MIX) & MASK32
    x = (((x >> 16) ^ x) * MIX) & MASK32
    x = (x >> 16) ^ x
    return x < (1 << 25)


if __name__ == "__main__":
    print(partally.compute(10**7, workload=rare_hash, seed=7))
