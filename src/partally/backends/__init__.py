"""The backend registry: one module per backend, each with the same small face.

A backend module defines ``NAME``, ``PARALLEL`` (whether ``workers`` matters) and

    unavailable() -> str | None     why it cannot run here, in words a user can act on; never raises
    device() -> str                 what it runs on, e.g. "CPU: AMD EPYC (2 cores)"
    count(workload, lo, hi, *, workers, seed) -> int
                                    how many i in [lo, hi) satisfy the workload

Modules are imported on first use, so optional dependencies cost nothing until asked for.
Import from this package by name (``from partally.backends import NAMES, get``): the attribute
``partally.backends`` is the public function ``partally.backends()``, not this package.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# Name -> module, in the order `partally info` lists them (slowest, simplest first).
_MODULES = {
    "python": "partally.backends.python",
    "threads": "partally.backends.threads",
    "processes": "partally.backends.processes",
    "numba": "partally.backends.numba_cpu",
    "native": "partally.backends.native",
    "numba-cuda": "partally.backends.numba_cuda",
    "cuda": "partally.backends.cuda",
    "ray": "partally.backends.ray",
}

NAMES: tuple[str, ...] = tuple(_MODULES)


def get(name: str) -> ModuleType:
    """The backend module registered as ``name`` (``ValueError`` listing the names if unknown)."""
    if name not in _MODULES:
        raise ValueError(f"unknown backend {name!r}; expected one of {sorted(_MODULES)} or 'auto'")
    return importlib.import_module(_MODULES[name])
