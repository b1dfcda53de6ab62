"""Independent reference implementations, written from DESIGN.md, for checking the workloads."""

M64 = 2**64 - 1


def pi_hit(i: int, seed: int = 0) -> int:
    z = (seed + (i + 1) * 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    z ^= z >> 31
    x, y = z & 0x7FFFFFFF, (z >> 32) & 0x7FFFFFFF
    return int(x * x + y * y < 2**62)


def is_prime(n: int) -> int:
    """Miller-Rabin with bases 2, 7, 61 by Python's pow (deterministic below 4,759,123,141)."""
    if n < 2:
        return 0
    for p in (2, 7, 61):
        if n % p == 0:
            return int(n == p)
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for a in (2, 7, 61):
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return 0
    return 1


def sieve(n: int) -> list[bool]:
    flags = [True] * n
    flags[:2] = [False, False][:n]
    for p in range(2, int(n**0.5) + 1):
        if flags[p]:
            flags[p * p :: p] = [False] * len(range(p * p, n, p))
    return flags


# The built-in workloads, as the backends take them, and the pure-Python count of any of them.
from partally.workloads import BUILTINS, resolve  # noqa: E402

WORKLOADS = tuple(BUILTINS.values())


def count_range(workload, lo: int, hi: int, seed: int = 0) -> int:
    return resolve(workload).count_range(lo, hi, seed)
