"""Workloads: what ``compute`` reduces. Three built-ins (counts), and the user's own functions.

Import from this package by name (``from partally.workloads import BUILTINS, resolve``).
"""

from __future__ import annotations

from partally.workloads import reductions
from partally.workloads.base import INDEX_LIMIT, Workload
from partally.workloads.builtin import BUILTINS, PRIMES_LIMIT
from partally.workloads.user import workload, wrap

__all__ = ["BUILTINS", "INDEX_LIMIT", "PRIMES_LIMIT", "Workload", "names", "resolve", "workload"]


def names() -> list[str]:
    """The built-in workloads' names."""
    return list(BUILTINS)


def resolve(workload: object, reduce: object = None) -> Workload:
    """``workload`` as a Workload reducing by ``reduce`` (None: the workload's own, else count):
    a Workload as is, a built-in by name, a function wrapped.

    ``ValueError`` for an unknown name or reduce, or a ``reduce`` that contradicts the
    workload's own (a decorated workload, a built-in's count); ``TypeError`` for anything else.
    """
    if reduce is not None:
        reductions.check_name(reduce)
    if isinstance(workload, str):
        found = BUILTINS.get(workload)
        if found is None:
            raise ValueError(f"unknown workload {workload!r}; expected one of {names()}")
        workload = found
    if isinstance(workload, Workload):
        if reduce is not None and reduce != workload.reduce:
            if workload.builtin:
                raise ValueError(
                    f"the built-in workload {workload.name!r} counts; reduce={reduce!r} takes "
                    "your own function f(i, seed) (workload=f)"
                )
            raise ValueError(
                f"workload {workload.name!r} is declared with reduce={workload.reduce!r}; "
                f"reduce={reduce!r} contradicts it (leave reduce= out, or declare it so)"
            )
        return workload
    if callable(workload):
        return wrap(workload, reduce or "count")
    raise TypeError(
        f"workload must be one of {names()}, a function f(i, seed) or a Workload, "
        f"not {type(workload).__name__}"
    )
