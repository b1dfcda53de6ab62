"""The Workload type: everything the backends, the bench, ``auto`` and the CLI know of a workload."""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from partally.workloads import data, reductions
from partally.workloads.reductions import Reduction

INDEX_LIMIT = 2**63 - 1  # every range end must fit a signed 64-bit integer

class _Running(threading.local):
    depth = 0  # how many workloads' Python loops this thread is inside now (no getattr default:
    # a missing attribute's AttributeError cost about a microsecond on every compute call)


_running = _Running()


def running() -> bool:
    """Whether this thread is inside a workload's Python loop (a nested ``compute`` runs inline)."""
    return _running.depth > 0


ElementFactory = Callable[[Callable[[int], Any], Callable[[Callable], Callable]], Callable]


def as_is(function: Callable) -> Callable:
    """The ``jit`` of the pure-Python backends: the function itself."""
    return function


_WRAPPED = ("__module__", "__name__", "__qualname__", "__doc__")  # as functools.wraps copies


@dataclass(frozen=True, eq=False)
class Workload:
    """A function over the integers and how its values combine: ``compute(n, workload=w)`` reduces
    v(i) = f(i, seed) over i in [0, n) by ``reduce`` (``count``: how many are true).

    ``element(int_type, jit)`` builds the per-element function ``(i, seed) -> value`` computing in
    ``int_type``: Python ``int`` for the pure-Python backends, a NumPy integer type for Numba and
    numba-cuda, which compile the very same body (``jit`` compiles the helpers it calls).
    ``unsigned`` says which NumPy type the compiled backends pass: ``uint64`` (the built-ins' hash
    arithmetic wraps modulo 2**64) or ``int64`` (user workloads, so that plain literals mix).

    Made from a function, it carries the function's ``__name__``, ``__qualname__``, ``__doc__``
    and ``__module__``, and the function as ``__wrapped__``, as ``functools.wraps`` (and a Numba
    dispatcher) does.
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
    reduce: str = "count"  # how the element values combine: one of reductions.NAMES
    returns: str | None = None  # the element kind declared ("int", "float"); None: inferred
    pickled: Callable[[Workload], tuple[Any, ...]] | None = None  # its __reduce__, if special
    args: tuple[Any, ...] = ()  # the user's data for this call, after (i, seed): ``with_args``
    data: Callable[[int, int], tuple[Any, ...]] | None = None  # an example's args for (n, seed)

    def __post_init__(self) -> None:
        object.__setattr__(self, "known", MappingProxyType(dict(self.known)))
        reductions.check_name(self.reduce)
        object.__setattr__(self, "returns", reductions.check_kind(self.returns))
        if self.function is not None:  # as functools.wraps gives a wrapper
            for attribute in _WRAPPED:
                if hasattr(self.function, attribute):
                    object.__setattr__(self, attribute, getattr(self.function, attribute))
            object.__setattr__(self, "__wrapped__", self.function)

    def __repr__(self) -> str:
        return f"<workload {self.name!r}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function it was made from (a decorated function stays callable, recursion
        included); a built-in's predicate for a built-in."""
        return (self.function or self.predicate)(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        # Built-ins travel by name, user functions by value (builtin.py and user.py say how).
        return self.pickled(self) if self.pickled is not None else super().__reduce__()

    @property
    def key(self) -> str:
        """Its identity for what is kept per workload: ``auto``'s calibration, compiled kernels,
        refusals (a user workload's name and a hash of its code, then the reduction if not a
        count, then a declared limit, e.g. ``f@1a2b.../sum:float<1000``)."""
        key = self.cache_key or self.name
        if self.reduce != "count":
            key += f"/{self.reduce}:{self.kind}"
        if self.limit < INDEX_LIMIT and not self.builtin:
            key += f"<{self.limit}"
        if self.args:
            key += f"({data.signature(self.args)})"
        return key

    def bare(self, args: tuple[Any, ...] = ()) -> Workload:
        """This workload with ``args`` in place of its own (how a backend sends them: shared
        memory names, object references, or none), its element kind kept as it is here (never
        inferred again over what stands in for the data)."""
        kind = self.kind if self.reduce != "count" else None
        return dataclasses.replace(self, args=args, returns=kind)

    def with_args(self, args: tuple[Any, ...]) -> Workload:
        """This workload over ``args`` (checked by ``data.check``): called as
        ``f(i, seed, *args)``, kept per argument types (its key), never per data."""
        return dataclasses.replace(self, args=args) if args or self.args else self

    @functools.cached_property
    def takes_args(self) -> bool:
        """Whether its function has parameters after (i, seed) (checked once)."""
        import inspect

        try:
            parameters = inspect.signature(self.function).parameters  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False
        return len(parameters) > 2

    @functools.cached_property
    def kind(self) -> str:
        """Its element kind: "bool" (count), or "int" / "float", declared or else inferred once
        from f(0, 0) (``ValueError`` when that cannot tell)."""
        if self.reduce == "count":
            return "bool"
        return self.returns or reductions.infer_kind(self.predicate, self.name, self.reduce)

    @functools.cached_property
    def reduction(self) -> Reduction:
        """How its element values combine: zero, fold, merge, finish, same, convert."""
        return reductions.get(self.reduce, self.kind)

    @functools.cached_property  # written to the instance __dict__: fine on a frozen dataclass
    def predicate(self) -> Callable[[int, int], Any]:
        """The per-element predicate in Python ints (built once, then kept), over its args."""
        function = self.element(int, as_is)
        if not self.args:
            return function
        args = self.args
        return lambda i, seed: function(i, seed, *args)

    def compiled_seed(self, seed: int) -> int:
        """``seed`` (in [0, 2**64)) as the compiled backends pass it: as is, or as int64."""
        return seed if self.unsigned or seed < 2**63 else seed - 2**64

    def run_range(self, lo: int, hi: int, seed: int = 0) -> Any:
        """The partial of its reduction over [lo, hi), in one pure-Python loop.

        An exception raised by the function, or a value that cannot be converted to its element
        kind, becomes a ``WorkloadError`` naming the workload and i.
        """
        if self.python_loop is not None and self.reduce == "count":
            return self.python_loop(lo, hi, seed)
        _running.depth += 1  # a nested compute runs inline
        try:
            return self.reduction.loop(self.predicate, lo, hi, seed, self.name)
        finally:
            _running.depth -= 1
