"""``native``: C++ kernels (``partally._native``, nanobind) on ``std::thread``s, GIL released."""

from __future__ import annotations

import functools
from types import ModuleType

from partally.backends._common import Tally, slices
from partally.backends.base import Backend, Progress
from partally.workloads import Workload


class NativeBackend(Backend):
    name = "native"
    family = "C++"
    compiled = True
    uses_workers = True

    @functools.cached_property
    def _module(self) -> ModuleType | ImportError:
        try:
            from partally import _native
        except ImportError as exc:
            return exc
        return _native

    def unavailable(self) -> str | None:
        if isinstance(self._module, ImportError):
            return (
                f"the C++ extension partally._native is not built ({self._module}); "
                "reinstall with `pip install .` on a machine with a C++17 compiler and CMake"
            )
        return None

    def supports(self, workload: Workload, n: int | None = None) -> str | None:
        if workload.native_kernel is None:
            return f"runs C++ kernels, and workload {workload.name!r} has none (a Python function)"
        if workload.reduce != "count":
            return f"its C++ kernels count; reduce={workload.reduce!r} is not one of them"
        return None

    def run(
        self,
        workload: Workload,
        lo: int,
        hi: int,
        *,
        workers: int,
        seed: int,
        progress: Progress | None = None,
    ) -> int:
        kernel = getattr(self._module, workload.native_kernel)
        tally = Tally(progress, hi - lo)
        total = 0
        for a, b in slices(lo, hi, workload.cpu_slice):
            total += kernel(a, b, seed, workers)
            tally.add(b - a)
        return total
