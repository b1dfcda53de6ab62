"""How partally writes durations, rates and sizes, everywhere it prints them."""

from __future__ import annotations

import math


def seconds(value: float | None) -> str:
    """0.0123 -> "12.3 ms"; None -> "-"."""
    if value is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value / 1e-9:.3g} ns"


def rate(value: float | None) -> str:
    """Elements per second: 2.5e9 -> "2.5 G/s"; infinite -> "no growth"."""
    if value is None:
        return "-"
    if math.isinf(value):
        return "no growth"
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}/s"
    return f"{value:.3g} /s"


def size(n: int) -> str:
    """1e7 for 10**7, 4e7, 2**32 ... : short and accepted back by --sizes."""
    if n >= 1000 and n & (n - 1) == 0 and n.bit_length() > 20:
        return f"2**{n.bit_length() - 1}"
    digits = f"{n:d}".rstrip("0")
    zeros = len(f"{n:d}") - len(digits)
    if n >= 1000 and len(digits) == 1:
        return f"{digits}e{zeros}"
    return f"{n:,}"


def size_words(n: int) -> str:
    """3000 -> "3e3", 41234 -> "4.1e4", 32 -> "32": two digits, for crossovers."""
    return str(n) if n < 1000 else f"{n:.2g}".replace("e+0", "e").replace("e+", "e")
