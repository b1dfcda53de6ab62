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

from partally._errors import BackendUnavailable
from partally._settings import flag
from partally.backends import _gpu, _trust
from partally.backends._common import slices
from partally.backends.base import PerWorkload
from partally.workloads import Workload

_SAMPLE_MOST = 48  # indices checked on the device: one launch each


def simulated() -> bool:
    """Whether numba-cuda runs on its CPU simulator (``NUMBA_ENABLE_CUDASIM=1``)."""
    return flag("NUMBA_ENABLE_CUDASIM")


class NumbaCudaBackend(_gpu.GpuBackend):
    name = "numba-cuda"
    family = "Numba"

    def __init__(self) -> None:
        self._kernels: PerWorkload[tuple[Callable, type]] = PerWorkload(_make_kernel)
        self._refused: dict[str, str | None] = {}  # by Workload.key
        self._guard = _trust.Guard()  # user kernels: checked on a sample, followed after

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

    @property
    def started(self) -> bool:
        return bool(self._kernels)

    def supports(self, workload: Workload) -> str | None:
        """A user function, or a reduction that takes the values' type, is compiled once here to
        find out (about a second); on the simulator nothing is compiled (None)."""
        if self.unavailable() is not None or simulated():
            return None
        workload = self._guard.current(workload)
        if workload.key not in self._refused and (not workload.builtin or workload.reduce != "count"):
            try:
                self.kernel(workload)
            except BackendUnavailable:
                pass  # noted in self._refused
        return self._refused.get(workload.key)

    def kernel(self, workload: Workload) -> tuple[Callable, type]:
        """``workload``'s compiled kernel (made once) and the integer type it takes. Any compile
        error is noted as a refusal for this workload and raised as ``BackendUnavailable``; so
        is a user function whose values differ from Python's on a sample (``_trust``)."""
        workload = self._guard.current(workload)
        refusal = self._refused.get(workload.key)
        if refusal is not None:
            raise BackendUnavailable(f"backend 'numba-cuda' cannot run {workload.name!r}: {refusal}")
        try:
            made = self._kernels(workload)
        except Exception as exc:  # noqa: BLE001 - any compile error is a refusal
            first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
            self._refused[workload.key] = (
                f"numba-cuda cannot compile {workload.name!r} with reduce={workload.reduce!r} "
                f"({type(exc).__name__}: {first[:300]})"
            )
            raise BackendUnavailable(
                f"backend 'numba-cuda' cannot run {workload.name!r}: {self._refused[workload.key]}"
            ) from exc
        if workload.key not in self._refused:  # trusted once its values match Python's
            values = None if workload.builtin else _element_partials(workload, *made)
            self._refused[workload.key] = values and _trust.disagreement(
                workload, "numba-cuda", values, most=_SAMPLE_MOST
            )
            return self.kernel(workload)
        return made

    def default_blocks(self) -> int:
        return 1 if simulated() else _gpu.default_blocks()

    def launch(
        self, workload: Workload, lo: int, hi: int, seed: int, blocks: int, threads: int
    ) -> Any:
        from partally.backends import _exact_rows  # numpy: only when run
        from partally.backends import _numba_cuda_kernels

        kernel, index_type = self.kernel(workload)
        workload = self._guard.current(workload)
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


def _make_kernel(workload: Workload) -> tuple[Callable, type]:
    from partally.backends import _exact_rows  # numpy: only when run
    from partally.backends import _numba_cuda_kernels

    return _numba_cuda_kernels.kernel(workload, _exact_rows.kernel_name(workload.reduction))
