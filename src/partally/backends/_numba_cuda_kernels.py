"""numba-cuda kernels: a workload's Python predicate compiled as a CUDA device function.

Imported only by the ``numba-cuda`` backend, on first use. Each kernel runs a grid-stride loop over
[lo, hi) with a 64-bit index and a 64-bit count per thread, sums the block's counts in shared memory
(a tree, for any block size up to ``MAX_BLOCK``) and adds the block's total to ``out[0]`` with one
atomic add. The reduction uses shared memory only, no warp shuffle, so that the same kernels also
run, unchanged, on the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``), which has no shuffles.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from numba import cuda

from partally.workloads import Workload

MAX_BLOCK = 1024
_CACHE = not cuda.config.ENABLE_CUDASIM  # compiled kernels are cached on disk on a real GPU


@cuda.jit(device=True)
def _block_add(mine, out):  # pragma: no cover - compiled
    partial = cuda.shared.array(MAX_BLOCK, dtype=np.uint64)
    tid = cuda.threadIdx.x
    partial[tid] = mine
    cuda.syncthreads()
    active = cuda.blockDim.x
    while active > 1:
        half = (active + 1) // 2
        if tid < active - half:
            partial[tid] += partial[tid + half]
        cuda.syncthreads()
        active = half
    if tid == 0 and partial[0] != np.uint64(0):
        cuda.atomic.add(out, 0, partial[0])


@cuda.jit(cache=_CACHE)
def fold_kernel(lo, hi, seed, out):  # pragma: no cover - compiled
    # The guide's loop, `result += 1` per element, folded by hand as LLVM folds it on the CPU:
    # each thread adds its trip count of the grid-stride loop (nvcc keeps such loops; n may be
    # near 2**63). Timing it measures launch overhead.
    first = lo + np.uint64(cuda.grid(1))
    stride = np.uint64(cuda.gridsize(1))
    trips = np.uint64(0)
    if first < hi:
        trips = (hi - np.uint64(1) - first) // stride + np.uint64(1)
    _block_add(trips, out)


def make_kernel(element: Callable, index_type: type) -> Callable:
    """A grid-stride kernel ``(lo, hi, seed, out)`` adding where ``element(i, seed)`` holds."""

    @cuda.jit(cache=_CACHE)
    def kernel(lo, hi, seed, out):  # pragma: no cover - compiled
        i = lo + index_type(cuda.grid(1))
        stride = index_type(cuda.gridsize(1))
        mine = np.uint64(0)
        while i < hi:
            if element(i, seed):
                mine += np.uint64(1)
            i += stride
        _block_add(mine, out)

    return kernel


def kernel(workload: Workload) -> tuple[Callable, type]:
    """``workload``'s kernel and the integer type it takes lo, hi and seed in."""
    index_type = np.uint64 if workload.unsigned else np.int64
    if workload.folds:
        return fold_kernel, np.uint64
    element = cuda.jit(device=True)(workload.element(index_type, cuda.jit(device=True)))
    return make_kernel(element, index_type), index_type


def launch(
    kernel: Callable,
    index_type: type,
    slices: Iterable[tuple[int, int]],
    seed: int,  # already as the kernel takes it (Workload.compiled_seed)
    blocks: int,
    threads: int,
) -> int:
    """Run ``kernel`` over each [a, b) of ``slices``; return the total count.

    Synchronises after each slice, so that Python gets control back (and sees Ctrl-C) between them.
    """
    if not 1 <= threads <= MAX_BLOCK:
        raise ValueError(f"threads per block must be in [1, {MAX_BLOCK}], got {threads}")
    if blocks < 1:
        raise ValueError(f"blocks must be >= 1, got {blocks}")
    configured = kernel[blocks, threads]
    out = cuda.to_device(np.zeros(1, dtype=np.uint64))
    for a, b in slices:
        configured(index_type(a), index_type(b), index_type(seed), out)
        cuda.synchronize()
    return int(out.copy_to_host()[0])
