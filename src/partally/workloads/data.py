"""The user's data: ``compute(n, workload=f, args=(x, y, 2.5))`` calls ``f(i, seed, x, y, 2.5)``.

Accepted: NumPy arrays of bool, signed and unsigned integers and float32/float64, of any number
of dimensions, contiguous or strided, writable or read-only (``np.memmap`` included), anything
``numpy.asarray`` takes as one of those without a copy, and int (within int64), float and bool
scalars (NumPy's too). Anything else is a ``TypeError`` naming the argument, before anything
runs. Inside the function every array is a read-only view of the caller's: the Python backends
read it in place, the others receive it once per call (each backend says how, ``Backend.args``).
"""

from __future__ import annotations

import numbers
from typing import Any

_KINDS = "biu"  # bool, signed, unsigned; with the float dtypes below: what numba compiles
_FLOATS = ("float32", "float64")
ACCEPTED = (
    "a NumPy array of bool, int8..int64, uint8..uint64, float32 or float64 (any shape, strided "
    "or not, a memmap too), or an int, float or bool scalar"
)
INT64 = (-(2**63), 2**63 - 1)


def check(args: object) -> tuple[Any, ...]:
    """``args`` as the workload receives them: arrays as read-only views (no copy), scalars as
    Python's bool, int or float; ``TypeError`` for anything else, naming the argument."""
    if not isinstance(args, tuple):
        raise TypeError(
            f"args is a tuple of the arguments after (i, seed), e.g. args=(x, 0.5), "
            f"not {type(args).__name__}"
        )
    return tuple(_one(value, k) for k, value in enumerate(args))


def _one(value: object, k: int) -> Any:
    import numpy as np

    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        if not INT64[0] <= int(value) <= INT64[1]:
            raise TypeError(f"args[{k}] = {value} does not fit a signed 64-bit integer")
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, (str, bytes, dict, set, numbers.Complex)) or value is None:
        raise TypeError(f"args[{k}] is a {type(value).__name__}; accepted: {ACCEPTED}")
    try:
        array = np.asarray(value, copy=False) if not isinstance(value, np.ndarray) else value
    except (ValueError, TypeError) as exc:
        raise TypeError(
            f"args[{k}] ({type(value).__name__}) is not an array NumPy can read without a copy "
            f"({exc}); pass numpy.asarray(...) of it; accepted: {ACCEPTED}"
        ) from None
    if array.dtype.kind not in _KINDS and array.dtype.name not in _FLOATS:
        raise TypeError(f"args[{k}] is an array of {array.dtype}; accepted: {ACCEPTED}")
    view = array.view(np.ndarray)  # a memmap's or subclass's data, as a plain array
    view.flags.writeable = False
    return view


def signature(args: tuple[Any, ...]) -> str:
    """What the compiled code and ``auto`` depend on: each argument's type, not its values
    (``float64[2d,C]``, ``int``, ...)."""
    words = []
    for value in args:
        if hasattr(value, "dtype"):
            layout = "C" if value.flags.c_contiguous else "F" if value.flags.f_contiguous else "A"
            words.append(f"{value.dtype}[{value.ndim}d,{layout}]")
        else:
            words.append(type(value).__name__)
    return ",".join(words)


def identity(args: tuple[Any, ...]) -> str:
    """Which data these are, by place (each array's address, shape and strides, each scalar's
    value): the trust sample is taken again for other data; an array changed in place is the
    same data (a sample cannot see that, as it cannot see a value it did not visit)."""
    words = []
    for value in args:
        if hasattr(value, "dtype"):
            words.append(f"{value.__array_interface__['data'][0]}:{value.shape}:{value.strides}")
        else:
            words.append(repr(value))
    return "|".join(words)


def arrays(args: tuple[Any, ...]) -> list[int]:
    """The positions of the arrays among ``args``."""
    return [k for k, value in enumerate(args) if hasattr(value, "dtype")]


def words(args: tuple[Any, ...]) -> str:
    """The args in words: "2 arrays (16.0 MB) and 1 scalar"."""
    found = arrays(args)
    size = sum(args[k].nbytes for k in found)
    scalars = len(args) - len(found)
    text = f"{len(found)} array{'s' if len(found) != 1 else ''} ({size / 1e6:.1f} MB)"
    return text + (f" and {scalars} scalar{'s' if scalars != 1 else ''}" if scalars else "")
