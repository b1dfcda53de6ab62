"""numba-cuda kernels: the workloads' Python predicates compiled as CUDA device functions.

Imported only by the ``numba-cuda`` backend, on first use. Each kernel runs a grid-stride loop over
[lo, hi) with a 64-bit index and a 64-bit count per thread, sums the block's counts in shared memory
(a tree, for any block size up to ``MAX_BLOCK``) and adds the block's total to ``out[0]`` with one
atomic add. The reduction uses shared memory only, no warp shuffle, so that the same kernels also
run, unchanged, on the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``), which has no shuffles.
"""

import numpy as np
from numba import cuda

from partally.workloads import make_is_prime, make_pi_hit

MAX_BLOCK = 1024
_CACHE = not cuda.config.ENABLE_CUDASIM  # compiled kernels are cached on disk on a real GPU

pi_hit = cuda.jit(device=True)(make_pi_hit(np.uint64))
is_prime = cuda.jit(device=True)(make_is_prime(np.uint64, cuda.jit(device=True)))


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
def count_kernel(lo, hi, seed, out):  # pragma: no cover - compiled
    # The guide's loop, `result += 1` per element, folded by hand as LLVM folds it on the CPU:
    # each thread adds its trip count of the grid-stride loop (nvcc keeps such loops; n may be
    # near 2**63). Timing it measures launch overhead.
    first = lo + np.uint64(cuda.grid(1))
    stride = np.uint64(cuda.gridsize(1))
    trips = np.uint64(0)
    if first < hi:
        trips = (hi - np.uint64(1) - first) // stride + np.uint64(1)
    _block_add(trips, out)


@cuda.jit(cache=_CACHE)
def primes_kernel(lo, hi, seed, out):  # pragma: no cover - compiled
    i = lo + np.uint64(cuda.grid(1))
    stride = np.uint64(cuda.gridsize(1))
    mine = np.uint64(0)
    while i < hi:
        mine += is_prime(i)
        i += stride
    _block_add(mine, out)


@cuda.jit(cache=_CACHE)
def pi_kernel(lo, hi, seed, out):  # pragma: no cover - compiled
    i = lo + np.uint64(cuda.grid(1))
    stride = np.uint64(cuda.gridsize(1))
    mine = np.uint64(0)
    while i < hi:
        mine += pi_hit(i, seed)
        i += stride
    _block_add(mine, out)


KERNELS = {"count": count_kernel, "primes": primes_kernel, "pi": pi_kernel}


def launch(workload, slices, seed, blocks, threads):
    """Run ``workload``'s kernel over each [a, b) of ``slices``; return the total count.

    Synchronises after each slice, so that Python gets control back (and sees Ctrl-C) between them.
    """
    if not 1 <= threads <= MAX_BLOCK:
        raise ValueError(f"threads per block must be in [1, {MAX_BLOCK}], got {threads}")
    if blocks < 1:
        raise ValueError(f"blocks must be >= 1, got {blocks}")
    kernel = KERNELS[workload][blocks, threads]
    out = cuda.to_device(np.zeros(1, dtype=np.uint64))
    seed64 = np.uint64(seed)
    for a, b in slices:
        kernel(np.uint64(a), np.uint64(b), seed64, out)
        cuda.synchronize()
    return int(out.copy_to_host()[0])
