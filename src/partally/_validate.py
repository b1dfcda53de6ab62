"""Argument checks shared by the public functions and the CLI: clear errors that say what is accepted."""

from __future__ import annotations

import operator
from collections.abc import Callable

from partally.backends import names as backend_names
from partally.workloads import INDEX_LIMIT, Workload, data, resolve, user


def integer(name: str, value: object) -> int:
    """``value`` as an int; ``TypeError`` for anything else, bool included."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not bool")
    try:
        return operator.index(value)  # int, numpy integers
    except TypeError:
        raise TypeError(f"{name} must be an int, not {type(value).__name__}") from None


def workload(value: object, reduce: object = None) -> Workload:
    """A built-in's name, a function or a Workload, as a Workload reducing by ``reduce`` (None:
    its own); ``ValueError`` / ``TypeError`` for a bad or contradicting ``reduce``."""
    return resolve(value, reduce)


def args(value: object, chosen: Workload, n: int, seed: int) -> Workload:
    """``chosen`` over the user's data ``value`` (``data.check``: arrays and scalars, else a
    ``TypeError`` naming the argument); an example's own data for (n, seed) where it has a
    ``data`` function and none is given; ``TypeError`` for a built-in given args, or a function
    whose signature cannot take them."""
    if value is None or (isinstance(value, tuple) and not value):
        if chosen.data is None:
            if chosen.function is not None and chosen.takes_args:
                user.check_arity(chosen.function, 0)  # TypeError: it needs its args
            return chosen
        value = chosen.data(n, seed)
    checked = data.check(value)
    if chosen.function is None:
        raise TypeError(f"the built-in workload {chosen.name!r} takes no args")
    user.check_arity(chosen.function, len(checked))
    return chosen.with_args(checked)


def backend(name: object) -> str:
    if name != "auto" and name not in backend_names():
        raise ValueError(
            f"unknown backend {name!r}; expected 'auto' or one of {list(backend_names())}"
        )
    return name  # type: ignore[return-value]


def size(n: object, chosen: Workload) -> int:
    n = integer("n", n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if n > chosen.limit and chosen.limit < INDEX_LIMIT:
        raise ValueError(
            f"workload {chosen.name!r} is exact only for n <= {_power(chosen.limit)}, got n = {n}"
        )
    if n > INDEX_LIMIT:
        raise ValueError(f"n must be at most 2**63 - 1, got {n}")
    return n


def _power(value: int) -> str:
    """``2**32`` for 4294967296; the number itself otherwise."""
    exponent = value.bit_length() - 1
    return f"2**{exponent}" if value == 1 << exponent else str(value)


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


def progress(value: object) -> Callable[[int, int], object] | None:
    """A progress callback ``f(done, total)`` or None; ``TypeError`` for anything else."""
    if value is not None and not callable(value):
        raise TypeError(
            f"progress must be a function f(done, total) or None, not {type(value).__name__}"
        )
    return value  # type: ignore[return-value]
