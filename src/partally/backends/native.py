"""``native``: C++ kernels (``partally._native``, nanobind) on ``std::thread``s, GIL released."""

from __future__ import annotations

import functools
from types import ModuleType

from partally.backends._common import cpu_device, interruptible_slices

NAME = "native"
PARALLEL = True


@functools.cache
def _module() -> ModuleType | ImportError:
    try:
        from partally import _native
    except ImportError as exc:
        return exc
    return _native

device = cpu_device


def unavailable() -> str | None:
    module = _module()
    if isinstance(module, ImportError):
        return (
            f"the C++ extension partally._native is not built ({module}); "
            "reinstall with `pip install .` on a machine with a C++17 compiler and CMake"
        )
    return None


def count(workload: str, lo: int, hi: int, *, workers: int, seed: int) -> int:
    native = _module()
    total = 0
    for a, b in interruptible_slices(workload, lo, hi):
        if workload == "pi":
            total += native.pi(a, b, seed, workers)
        else:
            total += getattr(native, workload)(a, b, workers)
    return total
