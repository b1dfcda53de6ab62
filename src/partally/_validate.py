"""Argument checks shared by the public functions: clear errors that say what is accepted."""

from __future__ import annotations

import operator

from partally.backends import NAMES as BACKEND_NAMES
from partally.workloads import INDEX_LIMIT, PRIMES_LIMIT, WORKLOADS


def integer(name: str, value: object) -> int:
    """``value`` as an int; ``TypeError`` for anything else, bool included."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not bool")
    try:
        return operator.index(value)  # int, numpy integers
    except TypeError:
        raise TypeError(f"{name} must be an int, not {type(value).__name__}") from None


def workload(name: object) -> str:
    if name not in WORKLOADS:
        raise ValueError(f"unknown workload {name!r}; expected one of {list(WORKLOADS)}")
    return name  # type: ignore[return-value]


def backend(name: object) -> str:
    if name != "auto" and name not in BACKEND_NAMES:
        raise ValueError(
            f"unknown backend {name!r}; expected 'auto' or one of {list(BACKEND_NAMES)}"
        )
    return name  # type: ignore[return-value]


def size(n: object, workload_name: str) -> int:
    n = integer("n", n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if workload_name == "primes" and n > PRIMES_LIMIT:
        raise ValueError(f"workload 'primes' is exact only for n <= 2**32, got n = {n}")
    if n > INDEX_LIMIT:
        raise ValueError(f"n must be at most 2**63 - 1, got {n}")
    return n


def workers(value: object) -> int | None:
    if value is None:
        return None
    value = integer("workers", value)
    if value < 1:
        raise ValueError(f"workers must be >= 1 (or None for all cores), got {value}")
    return value


def seed(value: object) -> int:
    value = integer("seed", value)
    if not 0 <= value < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {value}")
    return value
