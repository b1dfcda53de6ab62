"""Exact reductions written the plainest way, for the compiled backends' tests.

Nothing here imports partally: Python ints and ``fractions.Fraction`` give the exact sums, which
are rounded once by ``Fraction.__float__`` (int / int, correctly rounded); not ``math.fsum``,
which raises on overflow and on inf - inf. The element functions are plain Python that Numba
and numba-cuda compile too: the same body gives the same float64 values there (+ - * / and sqrt
are correctly rounded, and nothing is contracted into an FMA).
"""

from __future__ import annotations

import math
import struct
from fractions import Fraction

# Values spanning the float64 range: zeros of both signs, subnormals, the smallest normal,
# tiny and huge, cancellation partners, the largest finite, infinities and NaN.
SPECIALS = (
    0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1e-300, -1e-300, 0.1, 1.0, -1.0, 3.0,
    1e16, -1e16, 1e300, -1e300, 1.7976931348623157e308, -1.7976931348623157e308,
    math.inf, -math.inf, math.nan,
)
FINITE = tuple(x for x in SPECIALS if math.isfinite(x))


def mixed(i, seed):
    """A float element function from + - * / and sqrt over SPECIALS, the operands and the
    operation picked by a hash of (i, seed) (i < 2**31, seed < 2**31: no int64 overflow)."""
    h = ((i * 2654435761) ^ (seed * 40503)) & 0xFFFFFF
    a = SPECIALS[h % 20]
    b = SPECIALS[(h >> 5) % 20]
    op = (h >> 10) % 6
    if op == 0:
        return a + b
    if op == 1:
        return a - b
    if op == 2:
        return a * b
    if op == 3:
        return a / b if b != 0.0 else a
    if op == 4:
        return math.sqrt(abs(a))
    return a * b + float(i)


def mixed_finite(i, seed):
    """``mixed`` over the finite values only, so that sums stay finite or overflow exactly."""
    h = ((i * 2654435761) ^ (seed * 40503)) & 0xFFFFFF
    a = FINITE[h % 17]
    b = FINITE[(h >> 5) % 17]
    op = (h >> 10) % 5
    if op == 0:
        return a + b
    if op == 1:
        return a - b
    if op == 2:
        return a * 0.5 + b
    if op == 3:
        return a / b if b != 0.0 else a
    return math.sqrt(abs(a)) - b


def windowed(i, seed):
    """Values spanning ``seed % 13`` binades around 2**(seed // 13 % 2000 - 1000), either sign,
    zeros of both signs among them: numba's float sum takes a window of values at once when they
    span at most 10 binades, value by value otherwise; both must be exact."""
    h = ((i * 2654435761) ^ (seed * 40503)) & 0xFFFFFF
    if h % 17 == 0:
        return -0.0 if h % 34 == 0 else 0.0
    x = (1.0 + (h >> 8) % 4096 / 4096.0) * 2.0 ** ((h >> 3) % (seed % 13 + 1))
    x *= 2.0 ** (seed // 13 % 2000 - 1000)
    return -x if h & 4 else x


def cancelling(i, seed):
    """1e16 + i - 1e16 and friends: a plain float sum loses what exact summation keeps."""
    if i % 3 == 0:
        return 1e16
    if i % 3 == 1:
        return -1e16
    return float(i % 1000) * 0.001 + 1e-3


def big_ints(i, seed):
    """Ints near the int64 limits: their sum passes 2**63 (and -2**63) within a few terms."""
    if i % 5 == 4:
        return -9223372036854775807 - 1 + (i % 11)
    return 9223372036854775807 - (i % 13) * seed


def ties(i, seed):
    """Few distinct ints: min and max are held by many indices (the smallest must win)."""
    return (i * 7 + seed) % 5 - 2


def signed_zeros(i, seed):
    """-0.0 and +0.0 only: min is -0.0 and max is +0.0 (IEEE totalOrder), at their first index."""
    return -0.0 if (i + seed) % 3 == 1 else 0.0


def values(function, lo, hi, seed):
    return [function(i, seed) for i in range(lo, hi)]


def float_sum(xs) -> float:
    """The exact sum of float64 values rounded once (NaN, infinities and overflow as DESIGN.md)."""
    if any(x != x for x in xs):
        return math.nan
    pos, neg = math.inf in xs, -math.inf in xs
    if pos and neg:
        return math.nan
    if pos or neg:
        return math.inf if pos else -math.inf
    exact = sum((Fraction(x) for x in xs), Fraction(0))
    try:
        return float(exact) + 0.0  # + 0.0: an exact zero is +0.0
    except OverflowError:
        return math.inf if exact > 0 else -math.inf


def float_mean(xs) -> float:
    """The exact mean rounded once (n > 0); NaN and infinities as for the sum."""
    if not all(math.isfinite(x) for x in xs):
        return float_sum(xs)
    exact = sum((Fraction(x) for x in xs), Fraction(0)) / len(xs)
    try:
        return float(exact) + 0.0
    except OverflowError:
        return math.inf if exact > 0 else -math.inf


def _total_order(x: float) -> int:
    bits = struct.unpack("<q", struct.pack("<d", x))[0]
    return bits if bits >= 0 else bits ^ 0x7FFF_FFFF_FFFF_FFFF


def extreme(xs, lo: int, which: str):
    """(value, index) of min or max: NaN first (its smallest index), floats by totalOrder, ties
    to the smallest index."""
    for k, x in enumerate(xs):
        if isinstance(x, float) and x != x:
            return math.nan, lo + k
    key = (lambda x: _total_order(x)) if isinstance(xs[0], float) else (lambda x: x)
    if which == "min":
        k = min(range(len(xs)), key=lambda k: (key(xs[k]), k))
    else:
        k = min(range(len(xs)), key=lambda k: (-key(xs[k]), k))
    return xs[k], lo + k


def same(a, b) -> bool:
    """Bit for bit (NaN equals NaN; -0.0 differs from +0.0), item by item for tuples."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack("<d", a) == struct.pack("<d", b) or (a != a and b != b)
    return type(a) is type(b) and a == b
