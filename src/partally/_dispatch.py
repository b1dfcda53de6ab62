"""``backend="auto"``: choose the backend for a workload and size."""

from __future__ import annotations

from partally.backends import NAMES as BACKEND_NAMES
from partally.backends import get as get_backend

# Fixed order, fastest first, for sizes where a compiled kernel pays off.
_COMPILED_ORDER = ("native", "numba")
_PYTHON_BELOW = 2_000  # below this, a plain loop beats any call overhead


def choose(workload: str, n: int) -> str:
    """The backend ``compute(n, backend="auto", workload=workload)`` runs on."""
    if n < _PYTHON_BELOW:
        return "python"
    for name in _COMPILED_ORDER:
        if get_backend(name).unavailable() is None:
            return name
    return "python"
