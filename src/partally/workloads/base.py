"""The Workload type: everything the backends, the bench, ``auto`` and the CLI know of a workload."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from partally._errors import WorkloadError

INDEX_LIMIT = 2**63 - 1  # every range end must fit a signed 64-bit integer

ElementFactory = Callable[[Callable[[int], Any], Callable[[Callable], Callable]], Callable]


def as_is(function: Callable) -> Callable:
    """The ``jit`` of the pure-Python backends: the function itself."""
    return function


@dataclass(frozen=True, eq=False)
class Workload:
    """A predicate over the integers: ``compute(n, workload=w)`` counts the i in [0, n) it holds for.

    ``element(int_type, jit)`` builds the per-element predicate ``(i, seed) -> 0 | 1`` computing in
    ``int_type``: Python ``int`` for the pure-Python backends, a NumPy integer type for Numba and
    numba-cuda, which compile the very same body (``jit`` compiles the helpers it calls).
    ``unsigned`` says which NumPy type the compiled backends pass: ``uint64`` (the built-ins' hash
    arithmetic wraps modulo 2**64) or ``int64`` (user workloads, so that plain literals mix).
    """

    name: str
    description: str
    element: ElementFactory
    unsigned: bool = True
    limit: int = INDEX_LIMIT  # the largest n it is exact for
    known: Mapping[int, int] = field(default_factory=dict)  # n -> count over [0, n), seed 0
    folds: bool = False  # an optimising compiler turns its loop into `hi - lo`
    cpu_slice: int = 2**22  # elements per compiled CPU call (numba's first): Ctrl-C between calls
    gpu_slice: int = 2**28  # elements per kernel launch
    task_min: int = 2**17  # shortest range worth a Ray task (~10 ms of one core)
    python_cost_s: float = 4e-6  # a generous pure-Python cost per element
    native_kernel: str | None = None  # the C++ function in partally._native, if there is one
    cuda_kernel: str | None = None  # the extern "C" kernel in kernels/counting.cu, if any
    builtin: bool = False
    python_loop: Callable[[int, int, int], int] | None = None  # a loop of its own (count's)
    cache_key: str = ""  # what is kept per workload is kept under this (default: its name)
    calibration_s: float = 3.0  # auto's budget for timing every backend on it
    function: Callable[[int, int], Any] | None = None  # the user's function (None: a built-in)

    def __post_init__(self) -> None:
        object.__setattr__(self, "known", MappingProxyType(dict(self.known)))

    def __repr__(self) -> str:
        return f"<workload {self.name!r}>"

    def __reduce__(self) -> tuple[Any, ...]:
        if self.builtin:  # by name: the receiving process has the same built-ins
            from partally.workloads import builtin

            return builtin.get, (self.name,)
        if self.function is not None:  # the user's function by value: __main__ and notebooks too
            from partally.workloads import user

            return user.rebuild, (user.payload(self.function), self.name, self.key)
        return super().__reduce__()

    @property
    def key(self) -> str:
        """Its identity for what is kept per workload: ``auto``'s calibration, compiled kernels,
        refusals (a user workload's name and a hash of its code)."""
        return self.cache_key or self.name

    @functools.cached_property  # written to the instance __dict__: fine on a frozen dataclass
    def predicate(self) -> Callable[[int, int], Any]:
        """The per-element predicate in Python ints (built once, then kept)."""
        return self.element(int, as_is)

    def compiled_seed(self, seed: int) -> int:
        """``seed`` (in [0, 2**64)) as the compiled backends pass it: as is, or as int64."""
        return seed if self.unsigned or seed < 2**63 else seed - 2**64

    def count_range(self, lo: int, hi: int, seed: int = 0) -> int:
        """Count the i in [lo, hi) it holds for, in one pure-Python loop.

        An exception raised by the predicate becomes a ``WorkloadError`` naming the workload and i.
        """
        if self.python_loop is not None:
            return self.python_loop(lo, hi, seed)
        predicate = self.predicate
        result = 0
        i = lo
        try:
            for i in range(lo, hi):
                if predicate(i, seed):
                    result += 1
        except Exception as exc:
            raise WorkloadError(self.name, i, exc) from exc
        return result
