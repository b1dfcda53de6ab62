"""``cuda``: the CUDA C++ kernels of ``kernels/counting.cu``, launched through CuPy.

The kernels share their per-element code with the C++ CPU kernels (``kernels/elements.hpp``).
CuPy loads ``partally/kernels/counting.fatbin``, which the build makes with nvcc when it finds one
(SASS for sm_75 to sm_90, PTX for newer GPUs). When there is no fatbin, or the driver refuses it (a
driver older than the nvcc that built it), CuPy compiles the shipped ``counting.cu`` with NVRTC for
this GPU instead, once, and caches the result on disk. ``PARTALLY_CUDA_NVRTC=1`` skips the fatbin.

Runs on the default CUDA device (the first in ``CUDA_VISIBLE_DEVICES``); ``workers`` is ignored.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import importlib.util
from pathlib import Path
from typing import Any

from partally._errors import BackendUnavailable
from partally._settings import flag
from partally.backends import _gpu
from partally.backends._common import slices
from partally.workloads import BUILTINS, Workload

FATBIN, SOURCE = "counting.fatbin", "counting.cu"


def kernels_dir() -> Path | None:
    """The folder holding counting.cu and elements.hpp (and counting.fatbin when it was built)."""
    candidates = []
    try:
        candidates.append(Path(str(importlib.resources.files("partally") / "kernels")))
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - an unusual loader
        pass
    candidates.append(Path(__file__).resolve().parents[3] / "kernels")  # a source checkout
    for folder in candidates:
        if (folder / SOURCE).is_file():
            return folder
    return None


def _kernel_names() -> list[str]:
    return [w.cuda_kernel for w in BUILTINS.values() if w.cuda_kernel is not None]


@functools.cache
def unavailable() -> str | None:
    """Why the CUDA C++ kernels cannot run here, or None. Never raises."""
    if importlib.util.find_spec("cupy") is None:
        return f"CuPy is not installed; install it with `{_gpu.CUDA_EXTRA}`"
    reason = _gpu.problem()
    if reason is not None:
        return reason
    if kernels_dir() is None:
        return "the kernel source partally/kernels/counting.cu is missing: reinstall partally"
    try:
        import cupy

        cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # never raise from a probe
        return f"CuPy cannot use the GPU ({type(exc).__name__}: {exc})"
    return None


@functools.cache
def module() -> tuple[Any, str]:
    """The loaded kernels (a ``cupy.RawModule``) and where they came from: "fatbin" or "nvrtc"."""
    import cupy

    folder = kernels_dir()
    if folder is None:
        raise BackendUnavailable(unavailable() or "counting.cu is missing")
    refused = "no prebuilt counting.fatbin"
    fatbin = folder / FATBIN
    if flag("PARTALLY_CUDA_NVRTC"):
        refused = "PARTALLY_CUDA_NVRTC is set"
    elif fatbin.is_file():
        try:
            loaded = cupy.RawModule(path=str(fatbin))
            for name in _kernel_names():
                loaded.get_function(name)  # loads the module: the driver picks SASS or PTX here
            return loaded, "fatbin"
        except Exception as exc:  # e.g. CUDA_ERROR_NO_BINARY_FOR_GPU, UNSUPPORTED_PTX_VERSION
            refused = f"the driver refused counting.fatbin ({exc})"
    # CuPy caches NVRTC's output by source text and options; the header's hash joins the text so
    # that a changed elements.hpp is compiled anew.
    header = hashlib.sha256((folder / "elements.hpp").read_bytes()).hexdigest()
    code = (folder / SOURCE).read_text(encoding="utf-8") + f"\n// elements.hpp sha256 {header}\n"
    try:
        compiled = cupy.RawModule(
            code=code,
            options=("-std=c++17", f"-I{folder}"),
            backend="nvrtc",
        )
        for name in _kernel_names():
            compiled.get_function(name)
    except Exception as exc:
        raise BackendUnavailable(
            f"cannot load the CUDA kernels: {refused}, and compiling {folder / SOURCE} with NVRTC "
            f"failed ({type(exc).__name__}: {exc}); reinstall with `{_gpu.CUDA_EXTRA}`"
        ) from exc
    return compiled, "nvrtc"


class CudaBackend(_gpu.GpuBackend):
    name = "cuda"
    family = "C++"
    threads_multiple = 32  # the block reduction sums whole warps

    def unavailable(self) -> str | None:
        return unavailable()

    def supports(self, workload: Workload, n: int | None = None) -> str | None:
        if workload.cuda_kernel is None:
            return (
                f"runs CUDA C++ kernels, and workload {workload.name!r} has none "
                "(a Python function: use 'numba-cuda' for it on the GPU)"
            )
        if workload.reduce != "count":
            return f"its CUDA C++ kernels count; reduce={workload.reduce!r} is not one of them"
        return None

    @property
    def started(self) -> bool:
        return module.cache_info().currsize > 0

    def launch(
        self, workload: Workload, lo: int, hi: int, seed: int, blocks: int, threads: int
    ) -> int:
        import cupy
        import numpy as np

        kernel = module()[0].get_function(workload.cuda_kernel)
        out = cupy.zeros(1, dtype=cupy.uint64)
        stream = cupy.cuda.get_current_stream()
        for a, b in slices(lo, hi, workload.gpu_slice):
            kernel((blocks,), (threads,), (np.uint64(a), np.uint64(b), np.uint64(seed), out))
            stream.synchronize()  # Python sees Ctrl-C between launches
        return int(out.get()[0])
