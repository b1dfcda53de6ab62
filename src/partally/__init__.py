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
from partally._errors import BackendUnavailable, WorkloadError
from partally.workloads import Workload, workload

if TYPE_CHECKING:
    from partally.io.fetch import FetchResult, afetch_all, fetch_all

__all__ = [
    "BackendInfo",
    "BackendUnavailable",
    "Explanation",
    "FetchResult",
    "Workload",
    "WorkloadError",
    "afetch_all",
    "backends",
    "compute",
    "explain",
    "fetch_all",
    "workload",
]


_LAZY = {"FetchResult", "afetch_all", "fetch_all"}  # the IO side imports httpx: only when used


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from partally.io import fetch

        return getattr(fetch, name)
    raise AttributeError(f"module 'partally' has no attribute {name!r}")
