"""What the GPU backends share: is there an NVIDIA driver and a device, and what is it called.

Asks the CUDA driver directly (``libcuda`` through ctypes), so that the answer costs no import of
CuPy or numba-cuda, never raises, and names the real problem (CuPy reports a missing driver as
"insufficient driver"). The driver honours ``CUDA_VISIBLE_DEVICES``: device 0 is the first visible.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from typing import Any, ClassVar

from partally.backends.base import Backend, Progress
from partally.workloads import Workload

CUDA_EXTRA = 'pip install "partally[cuda]"'
_NO_DEVICE, _INSUFFICIENT_DRIVER = 100, 35  # CUresult codes
_ATTR_SM_COUNT, _ATTR_CC_MAJOR, _ATTR_CC_MINOR = 16, 75, 76  # CUdevice_attribute


def _visible() -> str:
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    return "" if value is None else f" (CUDA_VISIBLE_DEVICES={value!r})"


@functools.cache
def _driver() -> ctypes.CDLL | str:
    """The initialised driver library, or why there is none."""
    names = ("nvcuda.dll",) if sys.platform == "win32" else ("libcuda.so.1", "libcuda.so")
    lib = None
    for name in names:
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    if lib is None:
        return f"no NVIDIA driver found ({names[0]} cannot be loaded): install the NVIDIA driver"
    try:
        result = lib.cuInit(0)
    except (AttributeError, OSError) as exc:  # pragma: no cover - a broken driver install
        return f"the NVIDIA driver library is unusable ({exc})"
    if result == _NO_DEVICE:
        return f"no CUDA device is visible{_visible()}"
    if result == _INSUFFICIENT_DRIVER:
        return "the NVIDIA driver is too old for this CUDA version: update the driver"
    if result != 0:
        return f"the NVIDIA driver failed to initialise (CUDA error {result}){_visible()}"
    count = ctypes.c_int(0)
    if lib.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
        return f"no CUDA device is visible{_visible()}"
    return lib


def problem() -> str | None:
    """Why no CUDA device can be used here (no driver, no device), or None if one can."""
    driver = _driver()
    return driver if isinstance(driver, str) else None


@functools.cache
def device_name() -> str:
    """The default device in words, e.g. ``'GPU: NVIDIA H100 80GB HBM3 (sm_90, 132 SMs)'``."""
    driver = _driver()
    if isinstance(driver, str):
        return "GPU: none"
    device = ctypes.c_int(0)
    name = ctypes.create_string_buffer(256)
    if driver.cuDeviceGet(ctypes.byref(device), 0) != 0:
        return "GPU: unknown"
    driver.cuDeviceGetName(name, len(name), device)
    values = []
    for attribute in (_ATTR_CC_MAJOR, _ATTR_CC_MINOR, _ATTR_SM_COUNT):
        value = ctypes.c_int(0)
        driver.cuDeviceGetAttribute(ctypes.byref(value), attribute, device)
        values.append(value.value)
    major, minor, sms = values
    return f"GPU: {name.value.decode(errors='replace')} (sm_{major}{minor}, {sms} SMs)"


@functools.cache
def sm_count() -> int:
    """Streaming multiprocessors of the default device (1 if unknown)."""
    driver = _driver()
    if isinstance(driver, str):
        return 1
    device, value = ctypes.c_int(0), ctypes.c_int(0)
    if driver.cuDeviceGet(ctypes.byref(device), 0) != 0:
        return 1
    driver.cuDeviceGetAttribute(ctypes.byref(value), _ATTR_SM_COUNT, device)
    return max(1, value.value)


MAX_THREADS = 1024  # threads per block, on every CUDA device
BLOCKS_PER_SM = 8  # grid = SMs x 8 blocks of THREADS: enough resident warps to hide latency
THREADS = 256


def default_blocks() -> int:
    """Blocks in the grid the GPU backends launch when not told: BLOCKS_PER_SM on every SM."""
    return sm_count() * BLOCKS_PER_SM


class GpuBackend(Backend):
    """What the GPU backends share: the device, and ``run`` over a grid of ``blocks`` x
    ``threads`` (default: sized to the device); ``workers`` is accepted and ignored (one GPU)."""

    compiled = True
    has_startup = True
    gpu = True
    threads_multiple: ClassVar[int] = 1  # a block is a whole number of these threads

    def device(self) -> str:
        return device_name()

    def run(
        self,
        workload: Workload,
        lo: int,
        hi: int,
        *,
        workers: int = 1,
        seed: int = 0,
        progress: Progress | None = None,
        blocks: int | None = None,
        threads: int = THREADS,
    ) -> Any:
        step = self.threads_multiple
        if threads % step or not step <= threads <= MAX_THREADS:
            raise ValueError(
                f"threads per block must be a multiple of {step} in [{step}, {MAX_THREADS}], "
                f"got {threads}"
            )
        if blocks is not None and blocks < 1:
            raise ValueError(f"blocks must be >= 1, got {blocks}")
        if hi <= lo:
            return workload.reduction.zero()
        partial = self.launch(workload, lo, hi, seed, blocks or self.default_blocks(), threads)
        if progress is not None:
            progress(hi - lo, hi - lo)
        return partial

    def default_blocks(self) -> int:
        return default_blocks()

    def launch(
        self, workload: Workload, lo: int, hi: int, seed: int, blocks: int, threads: int
    ) -> int:
        """Run the kernel over [lo, hi) on a grid of ``blocks`` x ``threads``; the partial."""
        raise NotImplementedError
