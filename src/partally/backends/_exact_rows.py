"""What the compiled kernels (numba, numba-cuda) hand back, turned into exact Python values.

A kernel writes fixed-width int64 rows that no element count can overflow (docs/definitions.md,
"Reductions"); these functions read them with Python ints, so the result is exact whatever the
number of rows. Imports nothing heavier than NumPy, so each backend and the tests share them.

Row layouts (int64, one row per CPU chunk; the CUDA kernels write one row per launch):

- int sum: ``[w0, w1, w2]`` meaning ``w0 + w1 * 2**32 + w2 * 2**64``.
- float sum: ``LIMBS`` limbs then the NaN, +inf and -inf counts; limb k weighs ``2**(32k)`` in
  units of ``2**-1074`` (every finite float64 is a whole number of those).
- extreme: ``[key, index, nan_index]``: the smallest ``key ^ flip`` and the smallest index holding
  it (index -1: no value but NaN), and the smallest index whose value is NaN (-1: none).
  ``flip`` is 0 for min, -1 for max (``~key`` reverses the order of int64 keys).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: importing the numba backend must not import numpy
    import numpy as np

from partally.workloads.reductions import NAN_MAX_KEY, NAN_MIN_KEY, Extreme, FloatSum, Reduction

LIMBS = 68  # 32-bit digits in int64 limbs: 2**(32*68) > 2**63 values of 2**(1024+1074) each
SPECIALS = 3  # NaN, +inf, -inf counts after the limbs
FLOAT_ROW = LIMBS + SPECIALS
FLIP = {"min": 0, "max": -1}  # what the extreme kernels xor into each key


def kernel_name(reduction: Reduction) -> str:
    """The kernel that runs ``reduction``: "count", "int_sum", "float_sum", "int_extreme" or
    "float_extreme" (sum and mean share one, and so do min and max)."""
    if reduction.name == "count":
        return "count"
    return f"{reduction.kind}_{'sum' if reduction.name in ('sum', 'mean') else 'extreme'}"


def partial(reduction: Reduction, out: Any) -> Any:
    """The partial of ``reduction`` (``workloads.reductions``) from a kernel's output: the count,
    or rows as above."""
    name = kernel_name(reduction)
    if name == "count":
        return int(out)
    if name == "int_sum":
        return int_sum(out)
    if name == "float_sum":
        return FloatSum(*float_sum(out))
    found = extreme(out, reduction.name)
    return None if found is None else Extreme(*found)


def int_sum(rows: np.ndarray) -> int:
    """The exact sum held by int-sum rows (shape (r, 3))."""
    return sum(int(w0) + (int(w1) << 32) + (int(w2) << 64) for w0, w1, w2 in rows.tolist())


def float_sum(rows: np.ndarray) -> tuple[int, int, int, int]:
    """``(scaled, nan, pos_inf, neg_inf)`` from float-sum rows (shape (r, FLOAT_ROW)): scaled is
    the exact sum of the finite values times 2**1074."""
    scaled = 0
    for row in rows.tolist():
        scaled += sum(limb << (32 * k) for k, limb in enumerate(row[:LIMBS]))
    nan, pos_inf, neg_inf = (int(x) for x in rows[:, LIMBS:].sum(axis=0))
    return scaled, nan, pos_inf, neg_inf


def extreme(rows: np.ndarray, name: str) -> tuple[int, int] | None:
    """``(key, index)`` of the min or max (``name``) from extreme rows (shape (r, 3)), or None when
    no row saw a value. Any NaN wins, at the smallest index whose value is NaN, with key
    ``NAN_MIN_KEY`` for min and ``NAN_MAX_KEY`` for max; otherwise ties go to the smallest index."""
    flip = FLIP[name]
    nans = [at for _, _, at in rows.tolist() if at >= 0]
    if nans:
        return (NAN_MAX_KEY if flip else NAN_MIN_KEY), min(nans)
    found = [(key, at) for key, at, _ in rows.tolist() if at >= 0]
    if not found:
        return None
    key, at = min(found)  # flipped keys: the smallest wins, then the smallest index
    return key ^ flip, at
