"""``numba-cuda``: a workload's Python function compiled by numba-cuda as a device function.

A grid-stride kernel per workload and reduction with exact per-block partials (integer atomics;
``_numba_cuda_kernels``), compiled without FMA contraction, run on the default CUDA device (the
first in ``CUDA_VISIBLE_DEVICES``). ``workers`` is ignored: the grid is sized from the device's
multiprocessors. Kernels are compiled on first use (about a second per
workload) and cached on disk. Under ``NUMBA_ENABLE_CUDASIM=1`` (set before numba is imported) the
same kernels run on numba-cuda's CPU simulator: correct, and very slow.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from typing import Any

from partally._settings import flag
from partally.backends import _gpu, _trust
from partally.backends._common import slices
from partally.backends._compiled import CompiledBackend, Kernel
from partally.workloads import Workload


def simulated() -> bool:
    """Whether numba-cuda runs on its CPU simulator (``NUMBA_ENABLE_CUDASIM=1``)."""
    return flag("NUMBA_ENABLE_CUDASIM")


class NumbaCudaBackend(_gpu.GpuBackend, CompiledBackend):
    name = "numba-cuda"
    family = "Numba"
    sample_most = 48  # indices checked on the device: one launch each

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

    def device(self) -> str:
        if simulated():
            return "GPU: numba-cuda simulator on the CPU (NUMBA_ENABLE_CUDASIM=1)"
        return _gpu.device_name()

    def _compiles_to_answer(self) -> bool:
        return not simulated()  # the simulator compiles nothing: it runs the Python code

    def _make(self, workload: Workload) -> Kernel:
        from partally.backends import _exact_rows  # numpy: only when run
        from partally.backends import _numba_cuda_kernels

        return _numba_cuda_kernels.kernel(workload, _exact_rows.kernel_name(workload.reduction))

    def _compile_refusal(self, error: Exception, workload: Workload) -> str:
        first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
        return (
            f"numba-cuda cannot compile {workload.name!r} with reduce={workload.reduce!r} "
            f"({type(error).__name__}: {first[:300]})"
        )

    def _element_partials(self, workload: Workload, made: Kernel) -> _trust.Values:
        return _element_partials(workload, *made)

    def default_blocks(self) -> int:
        return 1 if simulated() else _gpu.default_blocks()

    def launch(
        self, workload: Workload, lo: int, hi: int, seed: int, blocks: int, threads: int
    ) -> Any:
        from partally.backends import _exact_rows  # numpy: only when run
        from partally.backends import _numba_cuda_kernels

        kernel, index_type = self.kernel(workload, hi)
        workload = self.current(workload)
        reduction = workload.reduction
        name = _exact_rows.kernel_name(reduction)
        step = workload.gpu_slice
        if name != "count":  # no word of a launch's row can overflow
            step = min(step, _numba_cuda_kernels.MAX_LAUNCH)
        seed = workload.compiled_seed(seed)
        out = _numba_cuda_kernels.launch(
            kernel, index_type, name, slices(lo, hi, step), seed, blocks, threads,
            flip=_exact_rows.FLIP.get(reduction.name, 0),
        )
        return _exact_rows.partial(reduction, out)


def _element_partials(workload: Workload, kernel: Callable, index_type: type) -> _trust.Values:
    """The compiled partial of each single element [i, i + 1), one launch each."""
    from partally.backends import _exact_rows  # numpy: only when run
    from partally.backends import _numba_cuda_kernels

    reduction = workload.reduction
    name, flip = _exact_rows.kernel_name(reduction), _exact_rows.FLIP.get(reduction.name, 0)

    def values(indices: list[int], seed: int) -> list[Any]:
        seed = workload.compiled_seed(seed)
        return [
            _exact_rows.partial(reduction, _numba_cuda_kernels.launch(
                kernel, index_type, name, [(i, i + 1)], seed, 1, 1, flip=flip
            ))
            for i in indices
        ]

    return values
