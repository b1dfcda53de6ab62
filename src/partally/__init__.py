"""partally: count with every way Python can run work, and measure which is fastest here.

    >>> import partally
    >>> partally.compute(10**6, workload="primes")
    78498
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from partally._api import BackendInfo, backends, compute
from partally._version import __version__ as __version__
from partally.auto import Explanation, explain
from partally._errors import BackendFailed, BackendUnavailable, WorkloadError
from partally.workloads import Workload, workload
from partally.workloads.reductions import Extremum

if TYPE_CHECKING:
    from partally.io.engine import IOResult, amap_io, map_io
    from partally.io.fetch import FetchResult, afetch_all, fetch_all

__all__ = [
    "BackendFailed",
    "BackendInfo",
    "BackendUnavailable",
    "Explanation",
    "Extremum",
    "FetchResult",
    "IOResult",
    "Workload",
    "WorkloadError",
    "afetch_all",
    "amap_io",
    "backends",
    "compute",
    "explain",
    "fetch_all",
    "map_io",
    "workload",
]


# The IO side, imported when first used: fetch imports httpx, the engine asyncio.
_LAZY = {
    "FetchResult": "fetch",
    "IOResult": "engine",
    "afetch_all": "fetch",
    "amap_io": "engine",
    "fetch_all": "fetch",
    "map_io": "engine",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"partally.io.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'partally' has no attribute {name!r}")
