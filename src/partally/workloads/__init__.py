"""Workloads: what ``compute`` counts. Three built-ins, and the user's own functions.

Import from this package by name (``from partally.workloads import BUILTINS, resolve``).
"""

from __future__ import annotations

from partally.workloads.base import INDEX_LIMIT, Workload
from partally.workloads.builtin import BUILTINS, PRIMES_LIMIT
from partally.workloads.user import workload, wrap

__all__ = ["BUILTINS", "INDEX_LIMIT", "PRIMES_LIMIT", "Workload", "names", "resolve", "workload"]


def names() -> list[str]:
    """The built-in workloads' names."""
    return list(BUILTINS)


def resolve(workload: object) -> Workload:
    """``workload`` as a Workload: a Workload as is, a built-in by name, a function wrapped.

    ``ValueError`` for an unknown name, ``TypeError`` for anything else.
    """
    if isinstance(workload, Workload):
        return workload
    if isinstance(workload, str):
        found = BUILTINS.get(workload)
        if found is None:
            raise ValueError(f"unknown workload {workload!r}; expected one of {names()}")
        return found
    if callable(workload):
        return wrap(workload)
    raise TypeError(
        f"workload must be one of {names()}, a function f(i, seed) or a Workload, "
        f"not {type(workload).__name__}"
    )
