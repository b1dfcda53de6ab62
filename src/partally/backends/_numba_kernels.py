"""Numba CPU kernels: a workload's Python function compiled and inlined into a ``prange`` loop
that reduces its element values exactly (count, int sum, float sum, min/max).

Imported only by the ``numba`` backend, on first use (importing numba costs about half a second).

Every kernel cuts [lo, hi) into chunks serially, runs the chunks in a ``prange`` and writes one
row of int64 words per chunk (``_exact_rows`` has the layouts and reads them exactly): no scalar
reduction for Numba's parfor pass to infer (that inference fails on Python 3.12+ and is where
Numba's reduction bugs live), and no float addition anywhere, so the result does not depend on
the chunks, the threads or their order. Each accumulator is normalised often enough that no int64
word can overflow, however long the range (a slice may grow to 2**40 elements). The float sum and
min/max take values in windows of ``WINDOW``: a plain int64 sum or min over a window vectorises,
and the exact bookkeeping (limbs, the first index) is done once per window where it can be.

Element values are converted as the Python backends convert them: ``float()`` for float
reductions (a float64), ``operator.index`` for int ones (a value that may not fit int64, such as
a float or a uint64, is refused when the kernel is compiled, with the type it has). No fastmath:
Numba on the CPU does not contract ``a*b+c`` into an FMA without it.

Numba's disk cache keys a closure by its pickled cells, and a pickled dispatcher differs in every
process, so a kernel made by closing over the element function would compile anew each time
(about a second). Each (workload, reduction) kernel is therefore a module of its own: the
kernels' source, written once to the cache folder under a name made from the workload's key, a
hash of its code and of this file, with the compiled element function as a module global. Numba
caches it beside that file; an edited function (or an edited partally) gets a new file. Where no
folder can be written (a read-only home), kernels compile in memory each process.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import llvmlite.ir
import numba
import numpy as np
from numba import njit, types
from numba.core.errors import TypingError
from numba.extending import intrinsic, overload

from partally._settings import cache_folder
from partally.backends import _exact_rows
from partally.workloads import Workload
from partally.workloads.user import digest

_REFUSED = "partally:"  # marks the line of a compile error that says why, for ``refusal``


@intrinsic
def f64_bits(typingctx, x):  # pragma: no cover - compiled
    """The IEEE-754 bits of a float64, as an int64 (a register move, no memory round trip)."""
    if not isinstance(x, types.Float) or x.bitwidth != 64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llvmlite.ir.IntType(64))

    return types.int64(types.float64), codegen


def as_int64(value):
    """An element value as the int reductions take it (Python: ``operator.index``)."""
    raise NotImplementedError("compiled only")


def as_float64(value):
    """An element value as the float reductions take it (Python: ``float()``)."""
    raise NotImplementedError("compiled only")


@overload(as_int64)
def _as_int64(value):
    if isinstance(value, types.Boolean) or (
        isinstance(value, types.Integer) and (value.signed or value.bitwidth < 64)
    ):
        return lambda value: np.int64(value)
    raise TypingError(
        f"{_REFUSED} the function returns {value} values, and an int reduction takes values that "
        "operator.index() converts to a signed 64-bit int (int, bool, int64 ...)"
    )


@overload(as_float64)
def _as_float64(value):
    if isinstance(value, (types.Boolean, types.Integer, types.Float)):
        return lambda value: np.float64(value)
    raise TypingError(
        f"{_REFUSED} the function returns {value} values, and a float reduction takes values "
        "that float() converts (float, int, bool)"
    )


_SOURCE = '''"""partally's Numba kernels for one workload and reduction (generated; safe to delete)."""
import numpy as np
from numba import njit, prange

from partally.backends._numba_kernels import as_float64, as_int64, f64_bits

element = None  # the compiled element function, set before the first compile
index_type = None  # np.uint64 or np.int64, set likewise
LIMBS = {limbs}
INT_BLOCK = 2**30  # int sum: 2**30 values of |x| < 2**63 keep both halves' sums under 2**62
WINDOW = 256  # values a window takes (float sum: its two sums stay under 2**41)
SPAN = 10  # float sum: binades a window may span: a significand shifted by 10 is < 2**63
CARRY_EVERY = 4096  # float sum: windows between carries: < 4096 * 256 adds of < 2**33 a limb
MANTISSA = 0xFFFFFFFFFFFFF
DIGIT = 0xFFFFFFFF
MAGNITUDE = 0x7FFFFFFFFFFFFFFF
LARGEST = 0x7FFFFFFFFFFFFFFF
INFINITY = 0x7FF0000000000000  # the bits of +inf: a NaN's magnitude bits are above them


@njit(inline="always")
def chunk_bounds(lo, hi, chunks):
    # Chunk bounds are computed serially: bound arithmetic inside the prange body, with the
    # unsigned loop index, miscounted ranges that cross 2**31 (numba 0.68).
    step, extra = divmod(hi - lo, chunks)
    bounds = np.empty(chunks + 1, np.int64)
    bounds[0] = lo
    for c in range(chunks):
        bounds[c + 1] = bounds[c] + step + (1 if c < extra else 0)
    return bounds


@njit(inline="always")
def first_failed(bounds, failed):
    # (lo, hi) of the first chunk whose function raised, or (-1, -1): two ints, not an array,
    # so that returning them to Python runs no Python code (a Ctrl-C pending then would be
    # raised inside Numba's boxing, as a SystemError).
    for c in range(failed.size):
        if failed[c]:
            return bounds[c], bounds[c + 1]
    return np.int64(-1), np.int64(-1)


def count_chunk(a, b, seed, partials, c, *args):
    try:
        s = np.uint64(0)
        for i in range(a, b):  # `count`'s loop: LLVM folds it to b - a
            if element(index_type(i), seed, *args):
                s += np.uint64(1)
        partials[c] = s
    except Exception:
        return 1
    return 0


def count(lo, hi, seed, chunks, *args):
    bounds = chunk_bounds(lo, hi, chunks)
    # One partial row per chunk, written by its own iteration and added after the prange: no
    # scalar reduction for Numba's parfor pass to infer (that inference fails on Python 3.12+).
    partials = np.zeros(chunks, np.uint64)
    failed = np.zeros(chunks, np.uint8)
    for c in prange(chunks):
        failed[c] = count_chunk(bounds[c], bounds[c + 1], seed, partials, c, *args)
    total = np.uint64(0)
    for c in range(chunks):
        total += partials[c]
    return total, first_failed(bounds, failed)


def int_sum(lo, hi, seed, chunks, *args):
    bounds = chunk_bounds(lo, hi, chunks)
    rows = np.zeros((chunks, 3), np.int64)
    failed = np.zeros(chunks, np.uint8)
    for c in prange(chunks):
        failed[c] = int_sum_chunk(bounds[c], bounds[c + 1], seed, rows, c, *args)
    return rows, first_failed(bounds, failed)


def int_sum_chunk(start, end, seed, rows, c, *args):
    # Each value splits into its low 32 bits (>= 0) and the rest (signed): two plain int64 sums
    # that vectorise, carried into three 32-bit-digit words after every block.
    try:
        w0 = np.int64(0)
        w1 = np.int64(0)
        w2 = np.int64(0)
        a = start
        while a < end:
            b = a + min(INT_BLOCK, end - a)  # no a + INT_BLOCK: it wraps near 2**63
            low = np.int64(0)
            high = np.int64(0)
            for i in range(a, b):
                x = as_int64(element(index_type(i), seed, *args))
                low += x & DIGIT
                high += x >> 32
            w0 += low
            w1 += high + (w0 >> 32)
            w0 &= DIGIT
            w2 += w1 >> 32
            w1 &= DIGIT
            a = b
        rows[c, 0] = w0
        rows[c, 1] = w1
        rows[c, 2] = w2
    except Exception:
        return 1
    return 0


@njit(inline="always")
def add_at(limbs, place, total, negative):
    # total * 2**(place - 1074), 0 <= total < 2**63, negated if negative, into the limbs'
    # 32-bit digits: < 2**33 into each of three limbs.
    k = place >> 5
    shift = place & 31
    low = (total & DIGIT) << shift  # < 2**63
    high = (total >> 32) << shift  # < 2**62
    sign = -np.int64(negative)  # 0 or -1: (d ^ sign) - sign is d or -d
    limbs[k] += ((low & DIGIT) ^ sign) - sign
    limbs[k + 1] += (((low >> 32) + (high & DIGIT)) ^ sign) - sign
    limbs[k + 2] += ((high >> 32) ^ sign) - sign


def float_sum(lo, hi, seed, chunks, *args):
    bounds = chunk_bounds(lo, hi, chunks)
    rows = np.zeros((chunks, LIMBS + 3), np.int64)
    failed = np.zeros(chunks, np.uint8)
    for c in prange(chunks):
        failed[c] = float_sum_chunk(bounds[c], bounds[c + 1], seed, rows, c, *args)
    return rows, first_failed(bounds, failed)


def float_sum_chunk(start, end, seed, rows, c, *args):
    # Each finite value is its integer significand (< 2**53) at its exponent's place, in units of
    # 2**-1074. Values come in windows of WINDOW: where a window's nonzero values span at most
    # SPAN binades (no NaN, infinity or subnormal), each is its significand shifted to the
    # window's lowest place (< 2**63), signed, and cut into its low 32 bits and the rest: two
    # plain int64 sums (they vectorise) added into the limbs once per window. Any other window
    # adds value by value, NaN and infinities counted apart. Limbs are carried every CARRY_EVERY
    # windows.
    try:
        window = np.empty(WINDOW, np.int64)
        limbs = np.zeros(LIMBS, np.int64)
        nan = np.int64(0)
        pos_inf = np.int64(0)
        neg_inf = np.int64(0)
        windows = 0
        a = start
        while a < end:
            m = min(WINDOW, end - a)
            lowest = np.int64(0x7FF)  # the lowest exponent of a nonzero value
            highest = np.int64(0)
            for j in range(m):
                bits = f64_bits(as_float64(element(index_type(a + j), seed, *args)))
                window[j] = bits
                e = (bits >> 52) & 0x7FF
                lowest = min(lowest, e + np.int64((bits & MAGNITUDE) == 0) * 0x7FF)
                highest = max(highest, e)
            if highest < 0x7FF and lowest >= 1 and highest - lowest <= SPAN:
                base = lowest - 1  # the place of exponent `lowest`
                low = np.int64(0)
                rest = np.int64(0)
                for j in range(m):
                    bits = window[j]
                    e = (bits >> 52) & 0x7FF
                    nonzero = np.int64(e != 0)  # e == 0 here: a zero (shift and all masked off)
                    v = (((bits & MANTISSA) | (nonzero << 52)) << ((e - 1 - base) & 63)) & -nonzero
                    sign = bits >> 63
                    v = (v ^ sign) - sign
                    low += v & DIGIT
                    rest += v >> 32
                add_at(limbs, base, low, False)
                add_at(limbs, base + 32, abs(rest), rest < 0)
            else:
                for j in range(m):
                    bits = window[j]
                    e = (bits >> 52) & 0x7FF
                    if e == 0x7FF:
                        if bits & MANTISSA:
                            nan += 1
                        elif bits < 0:
                            neg_inf += 1
                        else:
                            pos_inf += 1
                        continue
                    normal = np.int64(e != 0)
                    add_at(limbs, e - normal, (bits & MANTISSA) | (normal << 52), bits < 0)
            windows += 1
            if windows == CARRY_EVERY or a + m >= end:
                for k in range(LIMBS - 1):
                    carry = limbs[k] >> 32
                    limbs[k] -= carry << 32
                    limbs[k + 1] += carry
                windows = 0
            a += m
        for k in range(LIMBS):
            rows[c, k] = limbs[k]
        rows[c, LIMBS] = nan
        rows[c, LIMBS + 1] = pos_inf
        rows[c, LIMBS + 2] = neg_inf
    except Exception:
        return 1
    return 0


def int_extreme(lo, hi, seed, chunks, flip, *args):
    bounds = chunk_bounds(lo, hi, chunks)
    rows = np.empty((chunks, 3), np.int64)
    failed = np.zeros(chunks, np.uint8)
    for c in prange(chunks):
        failed[c] = int_extreme_chunk(bounds[c], bounds[c + 1], seed, rows, c, flip, *args)
    return rows, first_failed(bounds, failed)


def int_extreme_chunk(start, end, seed, rows, c, flip, *args):
    # The smallest key ^ flip (flip 0: min; -1: max, as ~key reverses the order) and the first
    # index holding it. Values come in windows: the window's smallest key is a plain int64 min
    # (it vectorises); only a window that beats the best so far is searched for its first index.
    try:
        window = np.empty(WINDOW, np.int64)
        best = np.int64(0)
        at = np.int64(-1)
        a = start
        while a < end:
            m = min(WINDOW, end - a)
            least = LARGEST
            for j in range(m):
                key = as_int64(element(index_type(a + j), seed, *args)) ^ flip
                window[j] = key
                least = min(least, key)
            if at < 0 or least < best:
                for j in range(m):
                    if window[j] == least:
                        best = least
                        at = a + j
                        break
            a += m
        rows[c, 0] = best
        rows[c, 1] = at
        rows[c, 2] = -1
    except Exception:
        return 1
    return 0


def float_extreme(lo, hi, seed, chunks, flip, *args):
    bounds = chunk_bounds(lo, hi, chunks)
    rows = np.empty((chunks, 3), np.int64)
    failed = np.zeros(chunks, np.uint8)
    for c in prange(chunks):
        failed[c] = float_extreme_chunk(bounds[c], bounds[c + 1], seed, rows, c, flip, *args)
    return rows, first_failed(bounds, failed)


def float_extreme_chunk(start, end, seed, rows, c, flip, *args):
    # As int_extreme, with IEEE totalOrder keys (-0.0 < +0.0) from the bits; NaN values take the
    # largest key in the window's min and are searched for apart (the first NaN wins).
    try:
        window = np.empty(WINDOW, np.int64)
        best = np.int64(0)
        at = np.int64(-1)
        nan_at = np.int64(-1)
        a = start
        while a < end:
            m = min(WINDOW, end - a)
            least = LARGEST
            nans = np.int64(0)
            for j in range(m):
                bits = f64_bits(as_float64(element(index_type(a + j), seed, *args)))
                window[j] = bits
                nan = np.int64((bits & MAGNITUDE) > INFINITY)
                nans += nan
                key = (bits ^ ((bits >> 63) & MAGNITUDE)) ^ flip
                least = min(least, key if nan == 0 else LARGEST)
            if nans > 0 and nan_at < 0:
                for j in range(m):
                    if (window[j] & MAGNITUDE) > INFINITY:
                        nan_at = a + j
                        break
            if at < 0 or least < best:
                for j in range(m):
                    bits = window[j]
                    if (bits & MAGNITUDE) <= INFINITY:
                        if (bits ^ ((bits >> 63) & MAGNITUDE)) ^ flip == least:
                            best = least
                            at = a + j
                            break
            a += m
        rows[c, 0] = best
        rows[c, 1] = at
        rows[c, 2] = nan_at
    except Exception:
        return 1
    return 0
'''.format(limbs=_exact_rows.LIMBS)

KERNELS = ("count", "int_sum", "float_sum", "int_extreme", "float_extreme")
_SOURCE_DIGEST = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


def _folder() -> Path | None:
    """A writable folder for kernel sources and Numba's cache of them, or None."""
    folder = cache_folder() / "numba-kernels"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder if os.access(folder, os.W_OK) else None


def _module(workload: Workload, name: str) -> ModuleType:
    """The module of ``workload``'s kernel ``name``, from its file in the cache folder (written
    once), or in memory. The file's name holds everything the compiled kernel depends on (sum
    and mean share the sum kernel's file, min and max the extreme kernel's)."""
    arity = len(workload.args)
    identity = f"{workload.cache_key or workload.name}|{digest(workload.element)}|{name}"
    identity += f"|{_SOURCE_DIGEST}|{arity}"
    module_name = f"partally_kernel_{workload.name if workload.name.isidentifier() else 'w'}"
    module_name += f"_{name}_{hashlib.sha256(identity.encode()).hexdigest()[:16]}"
    # The args as parameters of their own: Numba's parfor pass cannot take *args into a prange.
    source = _SOURCE.replace(", *args", "".join(f", a{k}" for k in range(arity)))
    folder = _folder()
    if folder is not None:
        path = folder / f"{module_name}.py"
        try:
            if not path.is_file() or path.read_text(encoding="utf-8") != source:
                fd, tmp = tempfile.mkstemp(suffix=".py", dir=folder)
                with os.fdopen(fd, "w", encoding="utf-8") as file:
                    file.write(source)
                os.replace(tmp, path)
            spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.modules[module_name] = module  # Numba's cache finds the module again by its name
            return module
        except OSError:
            pass
    module = ModuleType(module_name)
    exec(compile(source, f"<{module_name}>", "exec"), module.__dict__)  # noqa: S102 - our own
    return module


def kernel(workload: Workload, name: str) -> tuple[Callable, type]:
    """``workload``'s kernel ``name`` (one of ``KERNELS``), compiled (or loaded from the disk
    cache) for i and seed of the returned type. It takes ``(lo, hi, seed, chunks)``, and the
    extreme kernels a ``flip`` after them (``_exact_rows.FLIP``); it returns ``(out, bad)``:
    out the count (count) or ``_exact_rows``' rows, bad the [lo, hi) of the first chunk where
    the function raised, or [-1, -1]. Numba's errors propagate (TypingError ...).

    Each chunk runs in a serial function of its own, called from the ``prange``: inside a
    parallel region Numba uses NumPy's error model (``n // 0`` is 0, no exception) and drops an
    exception raised there (numba#9673). A user function's chunks are compiled with Python's
    error model and catch what it raises, so that an error Python raises inside the range is
    never a number; a built-in (which raises nowhere) keeps NumPy's model and its speed."""
    if name not in KERNELS:
        raise ValueError(f"no Numba kernel {name!r}; expected one of {KERNELS}")
    index_type = np.uint64 if workload.unsigned else np.int64
    module = _module(workload, name)
    checked = any(hasattr(value, "dtype") for value in workload.args)  # reads past an end raise
    module.element = njit(inline="always", boundscheck=checked)(workload.element(index_type, njit))
    module.index_type = index_type
    errors = "numpy" if workload.builtin else "python"
    chunk = f"{name}_chunk"
    made = njit(error_model=errors, nogil=True, boundscheck=checked)(getattr(module, chunk))
    setattr(module, chunk, made)
    cached = getattr(module, "__file__", None) is not None  # from a file Numba can cache beside
    compiled = njit(parallel=True, nogil=True, cache=cached)(getattr(module, name))
    numba_index = types.uint64 if index_type is np.uint64 else types.int64
    signature = (types.int64, types.int64, numba_index, types.int64)
    signature += (types.int64,) if name.endswith("extreme") else ()
    compiled.compile(signature + tuple(numba.typeof(value) for value in workload.args))
    return compiled, index_type


def refusal(error: BaseException, workload: Workload) -> str:
    """Why Numba cannot compile ``workload``, from its error: partally's own reason where the
    error holds one, else the first line that says."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    ours = [line for line in lines if _REFUSED in line]
    if ours:
        reason = ours[0][ours[0].index(_REFUSED) + len(_REFUSED) :].strip()
        return f"Numba cannot run {workload.name!r} with reduce={workload.reduce!r}: {reason}"
    first = next((line for line in lines if not line.startswith("\x1b")), type(error).__name__)
    return f"Numba cannot compile {workload.name!r} ({type(error).__name__}: {first[:300]})"
