"""numba-cuda kernels: a workload's Python function compiled as a CUDA device function and reduced
exactly (count, int sum, float sum, min/max) over [lo, hi).

Imported only by the ``numba-cuda`` backend, on first use. Each kernel runs a grid-stride loop with
a 64-bit index. Sums stay integers all the way (``_exact_rows`` has the row layouts): each thread
accumulates 32-bit digits in int64 words, carries them, adds them into the block's shared row with
integer atomics, and the block adds that row into the launch's row in global memory with integer
atomics; integer addition is associative, so neither the order of blocks nor of atomics changes the
result. min/max keep (key, index) per thread, merge them in a fixed shared-memory tree and write
one row per block. The launch's row is read back after each launch and merged on the host, so no
word can overflow however many launches a range takes (a launch is at most ``MAX_LAUNCH``
elements). Shared memory and atomics only, no warp shuffle, so the same kernels also run,
unchanged, on the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``).

FMA: NVVM contracts ``a*b+c`` into a fused multiply-add by default, which changes float element
values. numba-cuda has no public switch for it (NVIDIA/numba-cuda#118; PR #839 adds ``fma=``), so
partally compiles its kernels with NVVM's ``-fma=0`` (``_no_fma``): the PTX then holds separately
rounded ``mul.rn``/``add.rn``, which ptxas never fuses. The simulator runs Python and never
contracts, so only a real GPU can show this (``scripts/device_check.sh``).
"""

from __future__ import annotations

import contextlib
import functools
import operator
from collections.abc import Callable, Iterable, Iterator

import numpy as np
from numba import cuda, types

from partally.backends import _exact_rows
from partally.workloads import Workload

MAX_BLOCK = 1024
MAX_LAUNCH = 2**28  # elements per launch: a thread's float limbs take < 2**33 per element
SIMULATED = cuda.config.ENABLE_CUDASIM
_CACHE = not SIMULATED  # compiled kernels are cached on disk on a real GPU
LIMBS = _exact_rows.LIMBS
FLOAT_ROW = _exact_rows.FLOAT_ROW
MANTISSA = 0xFFFFFFFFFFFFF
DIGIT = 0xFFFFFFFF
MAGNITUDE = 0x7FFFFFFFFFFFFFFF
KERNELS = ("count", "int_sum", "float_sum", "int_extreme", "float_extreme")

if SIMULATED:  # plain Python: convert as the Python backends do

    def f64_bits(x):  # pragma: no cover - simulator
        return np.float64(x).view(np.int64)

    def as_int64(value):  # pragma: no cover - simulator
        return np.int64(operator.index(value))

    def as_float64(value):  # pragma: no cover - simulator
        return np.float64(float(value))

else:
    from numba.cuda import libdevice

    f64_bits = libdevice.double_as_longlong

    @cuda.jit(device=True)
    def as_int64(value):  # pragma: no cover - compiled (the type is checked by ``kernel``)
        return np.int64(value)

    @cuda.jit(device=True)
    def as_float64(value):  # pragma: no cover - compiled
        return np.float64(value)


@contextlib.contextmanager
def _no_fma() -> Iterator[None]:
    """Compile with NVVM's ``-fma=0`` inside the block (numba-cuda has no option for it): only
    what compiles here, holding numba-cuda's compiler lock, so no other compile sees it."""
    if SIMULATED:
        yield
        return
    from numba.cuda.cudadrv import nvvm

    try:  # numba-cuda's own lock; numba's built-in numba.cuda shares numba's
        from numba.cuda.core.compiler_lock import global_compiler_lock
    except ImportError:
        from numba.core.compiler_lock import global_compiler_lock

    with global_compiler_lock:
        compile_ir = nvvm.compile_ir

        def without_fma(llvmir: object, **options: object) -> object:
            options.setdefault("fma", False)
            return compile_ir(llvmir, **options)

        nvvm.compile_ir = without_fma
        try:
            yield
        finally:
            nvvm.compile_ir = compile_ir


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


@cuda.jit(device=True)
def _add_row(row, width, out):  # pragma: no cover - compiled
    # Every thread's row (int64 words) into the block's, then the block's into ``out``: integer
    # atomics, whose order cannot change the sums.
    block = cuda.shared.array(FLOAT_ROW, dtype=np.int64)
    tid = cuda.threadIdx.x
    k = tid
    while k < width:
        block[k] = 0
        k += cuda.blockDim.x
    cuda.syncthreads()
    for k in range(width):
        if row[k] != 0:
            cuda.atomic.add(block, k, row[k])
    cuda.syncthreads()
    k = tid
    while k < width:
        if block[k] != 0:
            cuda.atomic.add(out, k, block[k])
        k += cuda.blockDim.x


@cuda.jit(device=True)
def _add_float(row, bits):  # pragma: no cover - compiled
    # A float64 (its bits) into 32-bit digits in the row's int64 limbs, in units of 2**-1074,
    # or counted after them (NaN, +inf, -inf).
    e = (bits >> 52) & 0x7FF
    if e == 0x7FF:
        if bits & MANTISSA:
            row[LIMBS] += 1
        elif bits < 0:
            row[LIMBS + 2] += 1
        else:
            row[LIMBS + 1] += 1
        return
    normal = np.int64(e != 0)
    mantissa = (bits & MANTISSA) | (normal << 52)
    place = e - normal  # value = mantissa * 2**(place - 1074)
    k = place >> 5
    shift = place & 31
    low = (mantissa & DIGIT) << shift  # < 2**63
    high = (mantissa >> 32) << shift  # < 2**52
    sign = bits >> 63  # 0 or -1: (d ^ sign) - sign is d or -d
    row[k] += ((low & DIGIT) ^ sign) - sign
    row[k + 1] += (((low >> 32) + (high & DIGIT)) ^ sign) - sign
    row[k + 2] += ((high >> 32) ^ sign) - sign


@cuda.jit(device=True)
def _block_extreme(best, at, nan_at, out):  # pragma: no cover - compiled
    # The block's smallest (key, index) and smallest NaN index, by a fixed tree; one row per block.
    keys = cuda.shared.array(MAX_BLOCK, dtype=np.int64)
    ats = cuda.shared.array(MAX_BLOCK, dtype=np.int64)
    nans = cuda.shared.array(MAX_BLOCK, dtype=np.int64)
    tid = cuda.threadIdx.x
    keys[tid] = best
    ats[tid] = at
    nans[tid] = nan_at
    cuda.syncthreads()
    active = cuda.blockDim.x
    while active > 1:
        half = (active + 1) // 2
        if tid < active - half:
            other = tid + half
            if ats[other] >= 0 and (
                ats[tid] < 0
                or keys[other] < keys[tid]
                or (keys[other] == keys[tid] and ats[other] < ats[tid])
            ):
                keys[tid] = keys[other]
                ats[tid] = ats[other]
            if nans[other] >= 0 and (nans[tid] < 0 or nans[other] < nans[tid]):
                nans[tid] = nans[other]
        cuda.syncthreads()
        active = half
    if tid == 0:
        out[cuda.blockIdx.x, 0] = keys[0]
        out[cuda.blockIdx.x, 1] = ats[0]
        out[cuda.blockIdx.x, 2] = nans[0]


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


def _count(element: Callable, index_type: type) -> Callable:
    @cuda.jit(cache=_CACHE)
    def count(lo, hi, seed, out):  # pragma: no cover - compiled
        i = lo + index_type(cuda.grid(1))
        stride = index_type(cuda.gridsize(1))
        mine = np.uint64(0)
        while i < hi:
            if element(i, seed):
                mine += np.uint64(1)
            i += stride
        _block_add(mine, out)

    return count


def _int_sum(element: Callable, index_type: type) -> Callable:
    @cuda.jit(cache=_CACHE)
    def int_sum(lo, hi, seed, out):  # pragma: no cover - compiled
        # low 32 bits and the rest apart: a thread's sums stay under 2**62 for MAX_LAUNCH values
        i = lo + index_type(cuda.grid(1))
        stride = index_type(cuda.gridsize(1))
        row = cuda.local.array(2, np.int64)
        row[0] = 0
        row[1] = 0
        while i < hi:
            x = as_int64(element(i, seed))
            row[0] += x & DIGIT
            row[1] += x >> 32
            i += stride
        row[1] += row[0] >> 32
        row[0] &= DIGIT
        _add_row(row, 2, out)

    return int_sum


def _float_sum(element: Callable, index_type: type) -> Callable:
    @cuda.jit(cache=_CACHE)
    def float_sum(lo, hi, seed, out):  # pragma: no cover - compiled
        i = lo + index_type(cuda.grid(1))
        stride = index_type(cuda.gridsize(1))
        row = cuda.local.array(FLOAT_ROW, np.int64)
        for k in range(FLOAT_ROW):
            row[k] = 0
        while i < hi:
            _add_float(row, f64_bits(as_float64(element(i, seed))))
            i += stride
        for k in range(LIMBS - 1):  # carry: each limb in [0, 2**32) but the last
            carry = row[k] >> 32
            row[k] -= carry << 32
            row[k + 1] += carry
        _add_row(row, FLOAT_ROW, out)

    return float_sum


@cuda.jit(device=True)
def _int_order(x):  # pragma: no cover - compiled
    return x


@cuda.jit(device=True)
def _float_order(x):  # pragma: no cover - compiled
    # IEEE totalOrder as an int64 (-0.0 < +0.0): the bits, the magnitude reversed when negative
    bits = f64_bits(x)
    return bits ^ ((bits >> 63) & MAGNITUDE)


def _extreme(element: Callable, index_type: type, convert: Callable, order: Callable) -> Callable:
    """The min/max kernel: the smallest ``order(convert(value)) ^ flip`` (flip 0: min; -1: max,
    as ~key reverses the order) with its first index, and the first NaN index apart (never for
    ints: ``x != x`` is false)."""

    @cuda.jit(cache=_CACHE)
    def extreme(lo, hi, seed, flip, out):  # pragma: no cover - compiled
        i = lo + index_type(cuda.grid(1))
        stride = index_type(cuda.gridsize(1))
        best = np.int64(0)
        at = np.int64(-1)
        nan_at = np.int64(-1)
        while i < hi:
            x = convert(element(i, seed))
            if x != x:
                if nan_at < 0:
                    nan_at = np.int64(i)
            else:
                key = order(x) ^ flip
                if at < 0 or key < best:
                    best = key
                    at = np.int64(i)
            i += stride
        _block_extreme(best, at, nan_at, out)

    return extreme


_MAKERS = {
    "count": _count,
    "int_sum": _int_sum,
    "float_sum": _float_sum,
    "int_extreme": functools.partial(_extreme, convert=as_int64, order=_int_order),
    "float_extreme": functools.partial(_extreme, convert=as_float64, order=_float_order),
}


def _check_values(element: Callable, index_type: type, name: str) -> None:
    """Raise TypeError when the element function returns values the reduction cannot take as
    Python converts them (a float for an int reduction, a uint64 that may not fit int64 ...)."""
    if SIMULATED or name == "count":
        return
    index = types.uint64 if index_type is np.uint64 else types.int64
    returned = element.compile_device((index, index)).signature.return_type
    if name.startswith("int"):
        fits = isinstance(returned, types.Boolean) or (
            isinstance(returned, types.Integer) and (returned.signed or returned.bitwidth < 64)
        )
        accepted = "values that operator.index() converts to a signed 64-bit int"
    else:
        fits = isinstance(returned, (types.Boolean, types.Integer, types.Float))
        accepted = "values that float() converts (float, int, bool)"
    if not fits:
        raise TypeError(
            f"the function returns {returned} values, and this reduction takes {accepted}"
        )


def signature(name: str, index_type: type) -> tuple:
    """The argument types kernel ``name`` is compiled for: lo, hi, seed (, flip), out."""
    index = types.uint64 if index_type is np.uint64 else types.int64
    out = types.Array(
        types.uint64 if name == "count" else types.int64, 2 if name.endswith("extreme") else 1, "C"
    )
    flip = (types.int64,) if name.endswith("extreme") else ()
    return (index, index, index, *flip, out)


def make(workload: Workload, name: str) -> tuple[Callable, type]:
    """``workload``'s kernel ``name`` (one of ``KERNELS``), not compiled yet, and the integer
    type it takes lo, hi and seed in."""
    if name not in _MAKERS:
        raise ValueError(f"no numba-cuda kernel {name!r}; expected one of {KERNELS}")
    if name == "count" and workload.folds:
        return fold_kernel, np.uint64
    index_type = np.uint64 if workload.unsigned else np.int64
    element = cuda.jit(device=True)(workload.element(index_type, cuda.jit(device=True)))
    _check_values(element, index_type, name)
    return _MAKERS[name](element, index_type), index_type


def kernel(workload: Workload, name: str) -> tuple[Callable, type]:
    """``make``'s kernel compiled for ``signature`` without FMA contraction (on a GPU; the
    simulator compiles nothing). TypeError: the function's values do not fit the reduction;
    numba-cuda's own errors propagate."""
    made, index_type = make(workload, name)
    if not SIMULATED:
        with _no_fma():
            made.compile(signature(name, index_type))
    return made, index_type


def launch(
    kernel: Callable,
    index_type: type,
    name: str,
    slices: Iterable[tuple[int, int]],
    seed: int,  # already as the kernel takes it (Workload.compiled_seed)
    blocks: int,
    threads: int,
    flip: int = 0,
) -> int | np.ndarray:
    """Run kernel ``name`` over each [a, b) of ``slices`` (each at most ``MAX_LAUNCH`` long):
    count returns the count; the others ``_exact_rows``' rows (one row per launch for sums, one
    per block and launch for extremes), to be read by ``_exact_rows``.

    Synchronises after each slice, so that Python gets control back (and sees Ctrl-C) between them.
    """
    if not 1 <= threads <= MAX_BLOCK:
        raise ValueError(f"threads per block must be in [1, {MAX_BLOCK}], got {threads}")
    if blocks < 1:
        raise ValueError(f"blocks must be >= 1, got {blocks}")
    configured = kernel[blocks, threads]
    if name == "count":
        out = cuda.to_device(np.zeros(1, dtype=np.uint64))
        for a, b in slices:
            configured(index_type(a), index_type(b), index_type(seed), out)
            cuda.synchronize()
        return int(out.copy_to_host()[0])
    extreme = name.endswith("extreme")
    width = {"int_sum": 2, "float_sum": FLOAT_ROW}.get(name, 3)
    zeros = np.zeros((blocks, 3) if extreme else width, dtype=np.int64)
    out = cuda.to_device(zeros)
    rows = []
    for a, b in slices:
        if b - a > MAX_LAUNCH:
            raise ValueError(f"a launch takes at most {MAX_LAUNCH} elements, got {b - a}")
        if extreme:
            configured(index_type(a), index_type(b), index_type(seed), np.int64(flip), out)
        else:
            configured(index_type(a), index_type(b), index_type(seed), out)
        cuda.synchronize()
        rows.append(out.copy_to_host())
        out.copy_to_device(zeros)
    if name == "int_sum":  # [low, rest] is the row w0 + w1 * 2**32 of _exact_rows.int_sum
        rows = [np.append(row, 0) for row in rows]
        width = 3
    return np.concatenate([np.atleast_2d(row) for row in rows]) if rows else np.zeros((0, width), np.int64)
