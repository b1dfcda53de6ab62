"""The backend registry: one module per backend, each a ``Backend`` subclass.

Backends are made on first use, so optional dependencies cost nothing until asked for. Import from
this package by name (``from partally.backends import get, names``): the attribute
``partally.backends`` is the public function ``partally.backends()``, not this package.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable

from partally.backends.base import Backend

__all__ = ["Backend", "get", "names", "register", "unregister"]


class Registry:
    """Name -> backend, in the order ``partally info`` lists them (slowest, simplest first)."""

    def __init__(self, factories: dict[str, str | Callable[[], Backend]]) -> None:
        self._factories = dict(factories)
        self._made: dict[str, Backend] = {}
        self._lock = threading.Lock()

    def names(self) -> tuple[str, ...]:
        return tuple(self._factories)

    def get(self, name: str) -> Backend:
        """The backend registered as ``name`` (``ValueError`` listing the names if unknown)."""
        found = self._made.get(name)
        if found is not None:
            return found
        if name not in self._factories:
            raise ValueError(
                f"unknown backend {name!r}; expected 'auto' or one of {list(self._factories)}"
            )
        with self._lock:
            if name not in self._made:
                factory = self._factories[name]
                if isinstance(factory, str):
                    module, _, cls = factory.partition(":")
                    factory = getattr(importlib.import_module(module), cls)
                self._made[name] = factory()
            return self._made[name]

    def register(self, name: str, factory: Callable[[], Backend]) -> None:
        """Add (or replace) a backend: ``factory()`` makes it on first use."""
        with self._lock:
            self._factories[name] = factory
            self._made.pop(name, None)

    def unregister(self, name: str) -> None:
        with self._lock:
            self._factories.pop(name, None)
            self._made.pop(name, None)


_REGISTRY = Registry(
    {
        "python": "partally.backends.python:PythonBackend",
        "threads": "partally.backends.threads:ThreadsBackend",
        "processes": "partally.backends.processes:ProcessesBackend",
        "numba": "partally.backends.numba_cpu:NumbaBackend",
        "native": "partally.backends.native:NativeBackend",
        "numba-cuda": "partally.backends.numba_cuda:NumbaCudaBackend",
        "cuda": "partally.backends.cuda:CudaBackend",
        "ray": "partally.backends.ray:RayBackend",
        "celery": "partally.backends.celery:CeleryBackend",
    }
)
get = _REGISTRY.get
names = _REGISTRY.names
register = _REGISTRY.register
unregister = _REGISTRY.unregister
