"""The user's own workloads: a Python function ``f(i, seed)``, counted by its truth value or its
values summed, averaged, or searched for their min or max (``reduce=``).

The same function runs on every backend that runs Python functions: called as is by ``python``,
``threads`` and ``processes`` (shipped by value with cloudpickle, so ``__main__`` functions work),
compiled by Numba and numba-cuda with i and seed as signed 64-bit integers, and run by Ray's
workers. ``auto``'s calibration of it is cached under a hash of its code and constants, so an
edited function is measured again.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

from partally.workloads import reductions
from partally.workloads.base import INDEX_LIMIT, Workload, as_is

USER_CALIBRATION_S = 0.6  # auto's budget for timing a user workload's backends
_DIGEST_DEPTH = 16  # how deep into the helpers a function calls the hash looks
_SNAPSHOT_BYTES = 1 << 16  # a global array up to this size is compared by value on each call
_MISSING = object()


def python_function(function: Callable) -> Callable:
    """The Python function behind ``function``: a Numba dispatcher's (CPU or CUDA device)
    ``py_func``, else ``function`` itself. The Python backends run it, the compiled ones compile it."""
    inner = getattr(function, "py_func", None)
    return inner if isinstance(inner, types.FunctionType) else function


def _element(function: Callable) -> Callable[..., Callable]:
    def element(int_type: Any, jit: Callable) -> Callable:
        if jit is as_is:
            return python_function(function)
        return _compilable(python_function(function), jit)

    return element


def _compilable(function: Callable, jit: Callable) -> Callable:
    """``function`` as a compiler can take it: a global naming a user Workload (a decorated
    function calling itself or another one) is replaced by that workload's function, compiled
    with ``jit``, in a copy of the globals (a compiler freezes globals anyway)."""
    if not isinstance(function, types.FunctionType):
        return function
    named = {
        name: value
        for name in _global_names(function.__code__)
        if isinstance(value := function.__globals__.get(name), Workload) and value.function is not None
    }
    if not named:
        return function
    namespace = dict(function.__globals__)
    made = types.FunctionType(
        function.__code__, namespace, function.__name__, function.__defaults__, function.__closure__
    )
    for name, value in named.items():
        inner = python_function(value.function)
        namespace[name] = jit(made if inner is function else _compilable(inner, jit))
    return made


class Frozen:
    """What a compiled kernel froze: each global, module attribute and closure cell it read,
    as read then. ``changed()`` says which one differs now (a compiler does not see it)."""

    def __init__(self) -> None:
        self.reads: list[tuple[Any, str, Any, bytes | None, str]] = []
        self.dispatchers: list[Any] = []  # the user's own Numba dispatchers it calls
        self.modules: dict[str, types.ModuleType] = {}  # the modules whose names it reads

    def read(self, holder: Any, name: str, value: Any, where: str) -> None:
        snapshot = None
        if hasattr(value, "tobytes") and getattr(value, "nbytes", _SNAPSHOT_BYTES + 1) <= _SNAPSHOT_BYTES:
            snapshot = value.tobytes()
        self.reads.append((holder, name, value, snapshot, where))

    def changed(self) -> str | None:
        """Which value read at compile time is another now (rebound, or an array changed in
        place), in words; None if none."""
        for holder, name, value, snapshot, where in self.reads:
            if isinstance(holder, dict):
                now = holder.get(name, _MISSING)
            else:  # a closure cell
                try:
                    now = holder.cell_contents
                except ValueError:
                    now = _MISSING
            if now is not value:
                return f"{where} was rebound"
            if snapshot is not None and value.tobytes() != snapshot:
                return f"the array {where} was changed in place"
        return None


def _fingerprint(value: Any, hasher: Any, depth: int, seen: set[int], frozen: Frozen) -> None:
    """Feed what determines ``value``'s behaviour into ``hasher``: code, constants, the globals,
    module attributes and closure cells it reads (noted in ``frozen``), through every function it
    calls, however imported."""
    if isinstance(value, types.FunctionType):
        if id(value) in seen or depth > _DIGEST_DEPTH:
            hasher.update(value.__qualname__.encode())
            return
        seen.add(id(value))
        _fingerprint(value.__code__, hasher, depth, seen, frozen)
        names = _global_names(value.__code__)
        module = value.__globals__.get("__name__", "?")
        if module in sys.modules:
            frozen.modules.setdefault(module, sys.modules[module])
        for name in sorted(names):
            if name in value.__globals__:
                hasher.update(name.encode())
                found = value.__globals__[name]
                frozen.read(value.__globals__, name, found, f"global {name!r} of {module}")
                if isinstance(found, types.ModuleType):
                    _attributes(found, names, hasher, depth + 1, seen, frozen)
                else:
                    _fingerprint(found, hasher, depth + 1, seen, frozen)
        for k, cell in enumerate(value.__closure__ or ()):
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            free = value.__code__.co_freevars[k]
            frozen.read(cell, free, contents, f"variable {free!r} of {value.__qualname__}'s closure")
            _fingerprint(contents, hasher, depth + 1, seen, frozen)
        for default in value.__defaults__ or ():
            _fingerprint(default, hasher, depth + 1, seen, frozen)
    elif isinstance(value, types.CodeType):
        hasher.update(value.co_code)
        hasher.update(repr((value.co_names, value.co_varnames)).encode())
        for constant in value.co_consts:
            _fingerprint(constant, hasher, depth, seen, frozen)
    elif isinstance(value, Workload):  # a decorated function it calls (itself, recursively)
        hasher.update(b"workload")
        if value.function is not None:
            _fingerprint(value.function, hasher, depth, seen, frozen)
    elif isinstance(getattr(value, "py_func", None), types.FunctionType):  # a Numba dispatcher
        hasher.update(type(value).__name__.encode())
        if id(value) not in seen:
            frozen.dispatchers.append(value)
        _fingerprint(value.py_func, hasher, depth, seen, frozen)
    elif hasattr(value, "tobytes") and hasattr(value, "dtype"):  # a NumPy array or scalar
        hasher.update(f"{value.dtype}{getattr(value, 'shape', ())}".encode() + value.tobytes())
    elif isinstance(value, (tuple, list, frozenset)):
        hasher.update(type(value).__name__.encode())
        for item in value:
            _fingerprint(item, hasher, depth, seen, frozen)
    elif isinstance(value, types.ModuleType):
        hasher.update(value.__name__.encode())
    elif isinstance(value, functools._lru_cache_wrapper):  # a cached helper: its function
        _fingerprint(value.__wrapped__, hasher, depth, seen, frozen)
    else:
        hasher.update(repr(value).encode()[:4096])


def _attributes(
    module: types.ModuleType, names: set[str], hasher: Any, depth: int, seen: set[int], frozen: Frozen
) -> None:
    """A module's attributes that ``names`` (a function's names) may read, as ``mod.f`` or
    ``pkg.mod.f``: hashed and noted like globals (a submodule's, in turn)."""
    hasher.update(module.__name__.encode())
    frozen.modules.setdefault(module.__name__, module)
    if (
        id(module) in seen
        or depth > _DIGEST_DEPTH
        or module.__name__ in sys.builtin_module_names
        or module.__name__.partition(".")[0] == "partally"  # its version is in every cache key
    ):
        return
    spec_origin = getattr(getattr(module, "__spec__", None), "origin", None) or ""
    if spec_origin and os.path.realpath(spec_origin).startswith(_installed_folders()):
        return  # an installed package (numpy, math): its version is in the machine key
    seen.add(id(module))
    namespace = vars(module)
    for name in sorted(names):
        if name in namespace:
            hasher.update(name.encode())
            found = namespace[name]
            frozen.read(namespace, name, found, f"{module.__name__}.{name}")
            if isinstance(found, types.ModuleType):
                _attributes(found, names, hasher, depth + 1, seen, frozen)
            else:
                _fingerprint(found, hasher, depth + 1, seen, frozen)


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names |= _global_names(constant)
    return names


def digest(function: Callable) -> str:
    """A hash of ``function``'s code, constants, defaults, closure, and the globals and module
    attributes it reads, through every function it calls."""
    return fingerprint(function)[0]


def fingerprint(function: Callable) -> tuple[str, Frozen]:
    """``digest(function)``, and what a compiler freezes of it (to see a change later)."""
    hasher = hashlib.sha256()
    frozen = Frozen()
    _fingerprint(function, hasher, 0, set(), frozen)
    return hasher.hexdigest()[:16], frozen


def _check_signature(function: object) -> Callable:
    if not callable(function):
        raise TypeError(
            f"a workload is a function f(i, seed) -> bool, not {type(function).__name__}"
        )
    inner = inspect.unwrap(python_function(function))  # type: ignore[arg-type]
    if inspect.isgeneratorfunction(inner) or inspect.isasyncgenfunction(inner):
        raise TypeError(
            f"workload {getattr(inner, '__qualname__', inner)!r} is a generator function: its "
            "value at each i would be a generator object (always true), not the value it yields; "
            "a workload returns its value: def f(i, seed): return ..."
        )
    if inspect.iscoroutinefunction(inner):
        raise TypeError(
            f"workload {getattr(inner, '__qualname__', inner)!r} is an async def: its value at "
            "each i would be a coroutine, never run; a workload is a plain function f(i, seed) "
            "(for concurrent IO, use partally.map_io or amap_io)"
        )
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return function  # a builtin without a signature: calling it will tell
    try:
        signature.bind_partial(0, 0)  # more parameters: its args, checked at each call
    except TypeError as exc:
        name = getattr(function, "__qualname__", repr(function))
        raise TypeError(
            f"workload {name}{signature} cannot be called as f(i, seed): {exc}; "
            "a workload takes the index i and the seed (then its args, if any), e.g. "
            "def f(i, seed): return i % 3 == 0"
        ) from None
    return function


def check_arity(function: Callable, extra: int) -> None:
    """``TypeError`` unless ``function`` can be called as ``f(i, seed, *args)`` with ``extra``
    args."""
    try:
        signature = inspect.signature(python_function(function))
    except (TypeError, ValueError):
        return  # a builtin without a signature: calling it will tell
    try:
        signature.bind(0, 0, *range(extra))
    except TypeError as exc:
        name = getattr(function, "__qualname__", repr(function))
        raise TypeError(
            f"workload {name}{signature} cannot be called as f(i, seed, *args) with "
            f"{extra} args: {exc}"
        ) from None


def make(
    function: Callable,
    name: str | None = None,
    reduce: str = "count",
    returns: object = None,
    limit: int = INDEX_LIMIT,
) -> Workload:
    """``function`` (called as ``function(i, seed)``) as a Workload reducing its values by
    ``reduce``; ``TypeError`` if it cannot be called so, ``ValueError`` for a bad ``reduce`` or
    ``returns`` (the element kind: int, float, or None to infer it from f(0, 0)) or ``limit``
    (the largest n it is meant for: larger n is a ``ValueError``, and the compiled backends'
    sample check stays below it)."""
    _check_signature(function)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= INDEX_LIMIT:
        raise ValueError(f"a workload's limit is an int in [1, 2**63 - 1], not {limit!r}")
    reductions.check_name(reduce)
    kind = reductions.check_kind(returns)
    if reduce == "count" and kind is not None:
        raise ValueError(
            f"returns={returns!r} is for reduce='sum', 'mean', 'min' or 'max'; "
            "reduce='count' counts the values that are true"
        )
    if name is None:
        name = getattr(function, "__name__", None) or type(function).__name__
    if not isinstance(name, str) or not name:
        raise TypeError(f"a workload's name is a non-empty str, not {name!r}")
    return Workload(
        name=name,
        description=(inspect.getdoc(function) or "").split("\n", 1)[0] or f"{name}(i, seed)",
        element=_element(function),
        unsigned=False,
        cpu_slice=2**16,  # the first slice: the numba backend sizes the next ones by time
        cache_key=f"{name}@{digest(function)}",
        calibration_s=USER_CALIBRATION_S,
        function=function,
        reduce=reduce,
        returns=kind,
        pickled=_pickled_by_value,
        limit=limit,
    )


def _pickled_by_value(workload: Workload) -> tuple[Any, ...]:
    """A user workload pickled: its function by value (``__main__`` and notebooks too), its
    reduction, element kind (not inferred again in the worker) and limit. Inside that very
    pickling (a recursive decorated function reaches itself through its globals) the function
    is left to the pickler at work, which handles the cycle."""
    if workload.args:  # the data beside the function: each backend says how it travels
        return _over, (dataclasses.replace(workload, args=()), workload.args)
    kind = None if workload.reduce == "count" else workload.kind
    details = (workload.name, workload.cache_key, workload.reduce, kind, workload.limit)
    active = _pickling.__dict__.setdefault("functions", set())
    if id(workload.function) in active:
        return _rebuilt, (workload.function, *details)
    active.add(id(workload.function))
    try:
        return rebuild, (payload(workload.function), *details)
    finally:
        active.discard(id(workload.function))


_pickling = threading.local()  # the functions this thread is pickling now, by id


def _over(workload: Workload, args: tuple[Any, ...]) -> Workload:
    return workload.with_args(args)


def wrap(function: Callable, reduce: str = "count") -> Workload:
    """The Workload for a plain function passed as ``workload=``: made once per function and
    reduction (the last few hundred are kept; a lambda made anew in a loop gets the same key, so
    its compiled kernels are reused all the same)."""
    try:
        return _wrapped(function, reduce)
    except TypeError:  # an unhashable callable object
        return make(function, reduce=reduce)


@functools.lru_cache(maxsize=256)
def _wrapped(function: Callable, reduce: str) -> Workload:
    return make(function, reduce=reduce)


def workload(
    function: Callable | None = None,
    *,
    name: str | None = None,
    reduce: str = "count",
    returns: object = None,
    limit: int = INDEX_LIMIT,
) -> Workload | Callable[[Callable], Workload]:
    """Make ``function(i, seed)`` a workload: ``@partally.workload``,
    ``@partally.workload(reduce="sum")`` or
    ``partally.workload(f, name=..., reduce=..., returns=...)``.

    ``compute(n, workload=w)`` then reduces v(i) = function(i, seed) over i in [0, n):
    ``reduce="count"`` (default) counts the i whose value is true; ``"sum"`` gives the exact sum
    (an int for int values; for floats the exact sum rounded once); ``"mean"`` the exact sum / n
    rounded once; ``"min"`` / ``"max"`` an ``Extremum(value, index)`` (floats in IEEE total
    order, ties to the smallest i, any NaN wins). ``returns`` (int or float) declares the element
    kind; by default it is inferred once from function(0, 0). It runs on any backend that runs
    Python functions (python, threads, processes, numba, numba-cuda, ray, celery). The compiled
    backends pass i and seed as signed 64-bit integers: a function that overflows 64 bits gives
    different values there, so each refuses a function whose values differ from Python's on a
    sample of indices below ``limit`` (the largest n it is meant for); the bench compares whole
    ranges.
    """
    if function is None:
        return lambda f: make(f, name, reduce, returns, limit)
    return make(function, name, reduce, returns, limit)


def payload(function: Callable) -> bytes:
    """``function`` pickled by value (cloudpickle), with the module it comes from when that is
    the user's own code rather than an installed package: a Ray node or a pool worker need not
    be able to import the user's script or module, only partally and what it imports."""
    import cloudpickle

    modules = [module for module in fingerprint(function)[1].modules.values() if _users_own(module)]
    if not modules:
        return _dumps(function)
    with _by_value:  # cloudpickle's register is process-wide: one pickler at a time changes it
        registered = []
        try:
            for module in modules:
                if not cloudpickle.cloudpickle._is_registered_pickle_by_value(module):
                    cloudpickle.register_pickle_by_value(module)
                    registered.append(module)
            return _dumps(function)
        finally:
            for module in registered:
                cloudpickle.unregister_pickle_by_value(module)


_by_value = threading.Lock()


def _dumps(function: Callable) -> bytes:
    """``function`` by cloudpickle, where an ``functools.lru_cache`` wrapper it reaches travels
    as its function (by value, as the function would) and is wrapped again where it lands:
    cloudpickle sends it by reference, and a worker cannot find one defined in ``__main__``
    (cloudpickle#178)."""
    import io

    import cloudpickle

    class Pickler(cloudpickle.Pickler):
        def reducer_override(self, obj: Any) -> Any:
            if isinstance(obj, functools._lru_cache_wrapper):
                parameters = obj.cache_parameters()
                return _lru_cached, (obj.__wrapped__, parameters["maxsize"], parameters["typed"])
            return super().reducer_override(obj)

    buffer = io.BytesIO()
    Pickler(buffer, protocol=cloudpickle.DEFAULT_PROTOCOL).dump(function)
    return buffer.getvalue()


def _lru_cached(function: Callable, maxsize: int | None, typed: bool) -> Callable:
    return functools.lru_cache(maxsize=maxsize, typed=typed)(function)


def _users_own(module: types.ModuleType) -> bool:
    """Whether ``module`` is the user's code: a file outside the installed packages."""
    path = getattr(module, "__file__", None)
    if module.__name__ == "__main__" or path is None:
        return False  # cloudpickle sends __main__'s functions by value already
    path = os.path.realpath(path)
    return not any(path.startswith(folder) for folder in _installed_folders())


@functools.cache
def _installed_folders() -> tuple[str, ...]:
    """Where installed packages and the standard library live, each ending in a separator."""
    import sysconfig

    paths = sysconfig.get_paths()
    return tuple(os.path.realpath(paths[key]) + os.sep for key in ("purelib", "platlib", "stdlib"))


@functools.lru_cache(maxsize=64)
def rebuild(
    payload: bytes,
    name: str,
    key: str,
    reduce: str = "count",
    kind: str | None = None,
    limit: int = INDEX_LIMIT,
) -> Workload:
    """A user Workload from its pickled function (in a pool or Ray worker; once per workload)."""
    import cloudpickle

    return _rebuilt(cloudpickle.loads(payload), name, key, reduce, kind, limit)


def _rebuilt(
    function: Callable, name: str, key: str, reduce: str, kind: str | None, limit: int
) -> Workload:
    made = make(function, name, reduce, kind, limit)
    return made if made.cache_key == key else _with_key(made, key)


def _with_key(made: Workload, key: str) -> Workload:
    return dataclasses.replace(made, cache_key=key)


def from_import_path(path: str, reduce: str | None = None) -> Workload:
    """``module:function`` (importable; the current folder is searched too) or
    ``path/to/file.py:function`` as a Workload reducing by ``reduce`` (None: a decorated
    workload's own, else count; ``ValueError`` if it contradicts a decorated workload's own).
    A ``data(n, seed)`` function beside it gives its args for each n (``Workload.data``)."""
    module_name, _, attribute = path.rpartition(":") if path.count(":") > 1 else path.partition(":")
    if not module_name or not attribute:
        raise ValueError(
            f"{path!r} is not module:function or file.py:function "
            "(e.g. mypkg.kernels:long_collatz, examples/mse.py:sq_err)"
        )
    module = _module_of(module_name, path)
    found = _attribute(module, module_name, attribute, path)
    maker = getattr(module, "data", None)
    if maker is not None and not callable(maker):
        maker = None
    if isinstance(found, Workload):
        if reduce is not None and reduce != found.reduce:
            raise ValueError(
                f"workload {found.name!r} is declared with reduce={found.reduce!r}; "
                f"--reduce {reduce} contradicts it (leave --reduce out, or declare it so)"
            )
    else:
        found = make(found, attribute, reduce or "count")
    return found if maker is None else dataclasses.replace(found, data=maker)


def _module_of(module_name: str, path: str) -> types.ModuleType:
    """The module ``module_name`` names: a file (``.py`` or a path) loaded by its path, else
    imported (the current folder searched too)."""
    if module_name.endswith(".py") or os.sep in module_name or "/" in module_name:
        file = os.path.abspath(module_name)
        if not os.path.isfile(file):
            raise ImportError(f"no file {module_name!r} for --workload {path}")
        name = os.path.splitext(os.path.basename(file))[0]
        spec = importlib.util.spec_from_file_location(name, file)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {module_name!r} for --workload {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # found again by name: cloudpickle, Numba's cache
        spec.loader.exec_module(module)
        return module
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"cannot import module {module_name!r} for --workload {path}: {exc}") from exc


def _attribute(module: types.ModuleType, module_name: str, attribute: str, path: str) -> Any:
    """``module``'s (dotted) ``attribute``; ``AttributeError`` naming the path if missing."""
    found: Any = module
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise AttributeError(
                f"module {module_name!r} has no {attribute!r} (for --workload {path})"
            ) from None
    return found
