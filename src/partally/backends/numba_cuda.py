"""``numba-cuda``: a workload's Python predicate compiled by numba-cuda as a device function.

A grid-stride kernel per workload with a per-block reduction (``_numba_cuda_kernels``), run on the
default CUDA device (the first in ``CUDA_VISIBLE_DEVICES``). ``workers`` is ignored: the grid is
sized from the device's multiprocessors. Kernels are compiled on first use (about a second per
workload) and cached on disk. Under ``NUMBA_ENABLE_CUDASIM=1`` (set before numba is imported) the
same kernels run on numba-cuda's CPU simulator: correct, and very slow.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable

from partally._settings import flag
from partally.backends import _gpu
from partally.backends._common import slices
from partally.backends.base import PerWorkload
from partally.workloads import Workload


def simulated() -> bool:
    """Whether numba-cuda runs on its CPU simulator (``NUMBA_ENABLE_CUDASIM=1``)."""
    return flag("NUMBA_ENABLE_CUDASIM")


class NumbaCudaBackend(_gpu.GpuBackend):
    name = "numba-cuda"
    family = "Numba"

    def __init__(self) -> None:
        self._kernels: PerWorkload[tuple[Callable, type]] = PerWorkload(_make_kernel)

    @functools.cache  # noqa: B019 - one backend object per process
    def unavailable(self) -> str | None:
        if importlib.util.find_spec("numba_cuda") is None:
            return f"numba-cuda is not installed; install it with `{_gpu.CUDA_EXTRA}`"
        if simulated():
            return None
        reason = _gpu.problem()
        if reason is not None:
            return reason
        try:
            from numba import cuda

            if not cuda.is_available():
                error = (cuda.cuda_error() or "").strip().splitlines()
                if error:
                    return f"numba-cuda cannot use the CUDA driver: {error[0]}"
                return (
                    "numba-cuda cannot find NVVM (the CUDA compiler library): install the CUDA "
                    f"toolkit pieces with `{_gpu.CUDA_EXTRA}`, or point CUDA_HOME at a CUDA toolkit"
                )
        except Exception as exc:  # never raise from a probe
            return f"numba-cuda failed to initialise CUDA ({type(exc).__name__}: {exc})"
        return None

    def supports(self, workload: Workload) -> str | None:
        if workload.reduce != "count":
            return f"reduce={workload.reduce!r} is not compiled yet (only counts)"
        return None

    def device(self) -> str:
        if simulated():
            return "GPU: numba-cuda simulator on the CPU (NUMBA_ENABLE_CUDASIM=1)"
        return _gpu.device_name()

    @property
    def started(self) -> bool:
        return bool(self._kernels)

    def kernel(self, workload: Workload) -> tuple[Callable, type]:
        """``workload``'s compiled kernel (made once) and the integer type it takes."""
        return self._kernels(workload)

    def default_blocks(self) -> int:
        return 1 if simulated() else _gpu.default_blocks()

    def launch(
        self, workload: Workload, lo: int, hi: int, seed: int, blocks: int, threads: int
    ) -> int:
        from partally.backends import _numba_cuda_kernels

        kernel, index_type = self.kernel(workload)
        pieces = slices(lo, hi, workload.gpu_slice)
        seed = workload.compiled_seed(seed)
        return _numba_cuda_kernels.launch(kernel, index_type, pieces, seed, blocks, threads)


def _make_kernel(workload: Workload) -> tuple[Callable, type]:
    from partally.backends import _numba_cuda_kernels

    return _numba_cuda_kernels.kernel(workload)
