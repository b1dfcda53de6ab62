"""``numba-cuda``: the workloads' Python predicates compiled by numba-cuda as device functions.

A grid-stride kernel per workload with a per-block reduction (``_numba_cuda_kernels``), run on the
default CUDA device (the first in ``CUDA_VISIBLE_DEVICES``). ``workers`` is ignored: the grid is
sized from the device's multiprocessors. Kernels are compiled on first use (about a second per
workload) and cached on disk. Under ``NUMBA_ENABLE_CUDASIM=1`` (set before numba is imported) the
same kernels run on numba-cuda's CPU simulator: correct, and very slow.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from types import ModuleType

from partally.backends import _gpu

NAME = "numba-cuda"
PARALLEL = False  # one GPU; `workers` does not apply


def _simulated() -> bool:
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


@functools.cache
def _kernels() -> ModuleType:
    from partally.backends import _numba_cuda_kernels

    return _numba_cuda_kernels


@functools.cache
def unavailable() -> str | None:
    if importlib.util.find_spec("numba_cuda") is None:
        return f"numba-cuda is not installed; install it with `{_gpu.CUDA_EXTRA}`"
    if _simulated():
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


def device() -> str:
    if _simulated():
        return "GPU: numba-cuda simulator on the CPU (NUMBA_ENABLE_CUDASIM=1)"
    return _gpu.device_name()


def count(
    workload: str,
    lo: int,
    hi: int,
    *,
    workers: int = 1,
    seed: int = 0,
    blocks: int | None = None,
    threads: int = _gpu.THREADS,
) -> int:
    """Count over [lo, hi) on the GPU; ``blocks`` x ``threads`` is the grid (default: sized to
    the device). ``workers`` is accepted for the common face and ignored."""
    if hi <= lo:
        return 0
    if blocks is None:
        blocks = 1 if _simulated() else _gpu.default_blocks()
    return _kernels().launch(workload, _gpu.slices(workload, lo, hi), seed, blocks, threads)
