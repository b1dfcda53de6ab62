"""Reductions: how a run combines the element values v(i) = f(i, seed) over [0, n).

Definitions: docs/definitions.md, "Reductions". A ``Reduction`` is one (reduce name, element kind)
pair: ``count`` of truth values, ``sum`` / ``mean`` / ``min`` / ``max`` of ints or of floats. It
has Spark's and Dask's pieces: ``zero()`` the identity partial, ``fold`` one element into a
partial, ``merge`` two partials (associative and commutative: partials merge in any order),
``finish(partial, n)`` the result, ``same(a, b)`` for verification (NaN equals NaN, -0.0 differs
from +0.0) and ``convert(value, i)`` an element value as the run's type.

Partials are exact Python objects, whatever computed them:

- count: ``int``; sum / mean of ints: ``int`` (exact, unbounded);
- sum / mean of floats: ``FloatSum`` (the exact sum of the finite values times 2**1074, an
  integer, and how many NaN, +inf and -inf were met);
- min / max: ``Extreme(key, index)`` or ``None`` for an empty range, with an integer order key
  (ints: the value; floats: IEEE totalOrder of the bits; NaN: a sentinel beyond every key).
"""

from __future__ import annotations

import functools
import math
import operator
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from partally._errors import WorkloadError

NAMES = ("count", "sum", "mean", "min", "max")
KINDS = ("int", "float")  # the element kinds of sum, mean, min and max (count's is "bool")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
SCALE_BITS = 1074  # every finite float64 is a whole multiple of 2**-1074
NAN_MIN_KEY, NAN_MAX_KEY = -(2**64), 2**64  # NaN's key for min and for max: it always wins
_BATCH = 4096  # elements a Python loop converts and adds at once
_DOUBLE = struct.Struct("<d")
_INT64 = struct.Struct("<q")
_LOW63 = 0x7FFF_FFFF_FFFF_FFFF
_FRACTION = (1 << 52) - 1  # a float64's stored significand bits
_DIGIT_BITS = 18  # exact_sum cuts 53-bit significands into three digits of this many bits
_DIGIT = (1 << _DIGIT_BITS) - 1


class FloatSum(NamedTuple):
    """The exact sum of float64 values: ``scaled`` = the finite values' sum times 2**1074, and
    how many NaN, +inf and -inf values were met."""

    scaled: int
    nan: int
    pos_inf: int
    neg_inf: int


class Extreme(NamedTuple):
    """A min or max partial: the winner's integer order key and its index."""

    key: int
    index: int


class Extremum(NamedTuple):
    """The result of ``min`` / ``max``: the value and the smallest i that has it."""

    value: Any
    index: int


def float_key(value: float) -> int:
    """The IEEE totalOrder key of a float64 (-0.0 < +0.0), an integer in [-2**63, 2**63)."""
    bits = _INT64.unpack(_DOUBLE.pack(value))[0]
    return bits if bits >= 0 else bits ^ _LOW63


def key_float(key: int) -> float:
    """The float64 whose totalOrder key is ``key`` (the NaN sentinels give NaN)."""
    if key in (NAN_MIN_KEY, NAN_MAX_KEY):
        return math.nan
    bits = key if key >= 0 else key ^ _LOW63
    return _DOUBLE.unpack(_INT64.pack(bits))[0]


def scaled(value: float) -> int:
    """A finite float64 times 2**1074, exactly (an int)."""
    numerator, denominator = value.as_integer_ratio()  # denominator: a power of two <= 2**1074
    return numerator << (SCALE_BITS + 1 - denominator.bit_length())


def divide(numerator: int, denominator: int) -> float:
    """numerator / denominator rounded once to the nearest float64 (ties to even), +-inf past the
    float range (CPython's int / int is correctly rounded; it raises OverflowError past it)."""
    try:
        return numerator / denominator
    except OverflowError:  # denominator > 0 here
        return math.inf if numerator > 0 else -math.inf


def same(a: object, b: object) -> bool:
    """Whether two results (or partials) are identical: floats bit for bit but NaN equals NaN
    (-0.0 differs from +0.0); tuples item by item; anything else by ``==`` and type."""
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return _DOUBLE.pack(a) == _DOUBLE.pack(b)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _batches(lo: int, hi: int) -> range:
    return range(lo, hi, _BATCH)


def _values(function: Callable, start: int, end: int, seed: int, workload: str) -> list:
    """``[function(i, seed) for i in [start, end)]``; its error as a WorkloadError naming i."""
    try:
        return [function(i, seed) for i in range(start, end)]
    except Exception as exc:  # find i: the function is called again, one element at a time
        for i in range(start, end):
            try:
                function(i, seed)
            except Exception as again:
                raise WorkloadError(workload, i, again) from again
        raise WorkloadError(workload, None, exc, where=f"somewhere in [{start}, {end})") from exc


@dataclass(frozen=True)
class Reduction:
    """One reduce name over one element kind (see the module); made by ``get(name, kind)``."""

    name: str
    kind: str  # "bool" (count), "int" or "float"

    def __repr__(self) -> str:
        return f"<reduction {self.name} of {self.kind}>"

    def __reduce__(self) -> tuple[Any, ...]:
        return get, (self.name, self.kind)

    def zero(self) -> Any:
        """The identity partial: what an empty range gives."""
        raise NotImplementedError

    def convert(self, value: object, i: int, workload: str = "") -> Any:
        """``value`` (v(i)) as the run's element type (``WorkloadError`` naming i if it cannot
        be)."""
        raise NotImplementedError

    def fold(self, partial: Any, i: int, value: object, workload: str = "") -> Any:
        """``partial`` with element i's value ``value`` added."""
        return self.merge(partial, self.partial(self.convert(value, i, workload), i))

    def partial(self, value: Any, i: int) -> Any:
        """The partial of one converted element value at i."""
        raise NotImplementedError

    def merge(self, a: Any, b: Any) -> Any:
        """Two partials (of disjoint ranges) as one, in any order."""
        raise NotImplementedError

    def finish(self, partial: Any, n: int) -> Any:
        """The result over [0, n) (or any n elements) from their merged partial."""
        raise NotImplementedError

    def same(self, a: object, b: object) -> bool:
        """Whether two results are identical (NaN equals NaN; -0.0 differs from +0.0)."""
        return same(a, b)

    def loop(self, function: Callable, lo: int, hi: int, seed: int, workload: str = "") -> Any:
        """The partial over [lo, hi) of ``function(i, seed)``, in pure Python."""
        partial = self.zero()
        for start in _batches(lo, hi):
            end = min(hi, start + _BATCH)
            values = _values(function, start, end, seed, workload)
            partial = self.merge(partial, self.batch(values, start, workload))
        return partial

    def batch(self, values: list, start: int, workload: str) -> Any:
        """The partial of element values ``values`` at start, start + 1, ..."""
        partial = self.zero()
        for i, value in enumerate(values, start):
            partial = self.fold(partial, i, value, workload)
        return partial


class Count(Reduction):
    """How many element values are true."""

    def zero(self) -> int:
        return 0

    def convert(self, value: object, i: int, workload: str = "") -> bool:
        try:
            return bool(value)
        except Exception as exc:
            raise WorkloadError(workload, i, exc) from exc

    def partial(self, value: bool, i: int) -> int:
        return 1 if value else 0

    def merge(self, a: int, b: int) -> int:
        return a + b

    def finish(self, partial: int, n: int) -> int:
        return int(partial)

    def loop(self, function: Callable, lo: int, hi: int, seed: int, workload: str = "") -> int:
        result = 0
        i = lo
        try:
            for i in range(lo, hi):
                if function(i, seed):
                    result += 1
        except Exception as exc:
            raise WorkloadError(workload, i, exc) from exc
        return result


def _empty(n: int) -> None:
    if n == 0:
        raise ValueError("empty range: the mean, min or max of no values is undefined (n = 0)")


class _IntConverting(Reduction):
    def convert(self, value: object, i: int, workload: str = "") -> int:
        try:
            number = operator.index(value)
        except TypeError as exc:
            raise WorkloadError(
                workload, i, TypeError(f"an int element value is expected, got {value!r} "
                                       "(declare returns=float for float values)")
            ) from exc
        if not INT64_MIN <= number <= INT64_MAX:
            raise WorkloadError(
                workload, i,
                OverflowError(f"element value {number} does not fit a signed 64-bit integer"),
            )
        return number

    def ints(self, values: list, start: int, workload: str, checked: bool = True) -> list[int]:
        """``values`` converted (and, if ``checked``, each in the int64 range); a bad one is a
        WorkloadError naming its i."""
        try:
            ints = list(map(operator.index, values))
        except TypeError:
            ints = [self.convert(value, i, workload) for i, value in enumerate(values, start)]
        if checked and ints and (min(ints) < INT64_MIN or max(ints) > INT64_MAX):
            self.out_of_range(ints, start, workload)
        return ints

    def out_of_range(self, ints: list[int], start: int, workload: str) -> None:
        """Raise the WorkloadError for the first of ``ints`` outside the int64 range."""
        for i, value in enumerate(ints, start):
            self.convert(value, i, workload)


class _FloatConverting(Reduction):
    def convert(self, value: object, i: int, workload: str = "") -> float:
        try:
            return float(value)  # type: ignore[arg-type]
        except Exception as exc:
            raise WorkloadError(workload, i, exc) from exc

    def floats(self, values: list, start: int, workload: str) -> list[float]:
        try:
            return list(map(float, values))
        except Exception:
            return [self.convert(value, i, workload) for i, value in enumerate(values, start)]


class IntSum(_IntConverting):
    """The exact sum (or mean) of int element values."""

    def zero(self) -> int:
        return 0

    def partial(self, value: int, i: int) -> int:
        return value

    def merge(self, a: int, b: int) -> int:
        return a + b

    def finish(self, partial: int, n: int) -> int | float:
        if self.name == "sum":
            return int(partial)
        _empty(n)
        return divide(int(partial), n)

    def batch(self, values: list, start: int, workload: str) -> int:
        if not values:
            return 0
        try:  # the common case first: plain ints (a float among them makes the total a float)
            total = sum(values)
        except TypeError:
            total = None
        if type(total) is int and INT64_MIN <= min(values) and max(values) <= INT64_MAX:
            return total
        return sum(self.ints(values, start, workload))


def exact_sum(floats: Sequence[float]) -> FloatSum:
    """The exact sum of at most 2**30 float64 values as a ``FloatSum`` (NumPy, no rounding).

    A finite x with exponent field e and significand m (the implicit bit included) is
    m * 2**(p - 1074) with p = max(e, 1) - 1, so x * 2**1074 = +-m << p. The significands are
    cut into three 18-bit digits and each digit, signed, is added per position p with
    ``bincount``: a float64 adds integers below 2**53 exactly, and 2**30 digits below 2**18 stay
    below that. The few positions met are then assembled into one Python int. A batch with NaN or
    an infinity takes the slow path, one value at a time.
    """
    import numpy as np

    values = np.asarray(floats, dtype=np.float64)
    bits = values.view(np.int64)
    exponent = (bits >> 52) & 0x7FF
    if (exponent == 0x7FF).any():
        return _exact_slowly(values.tolist())
    position = np.maximum(exponent, 1) - 1
    significand = (bits & _FRACTION) | ((exponent != 0).astype(np.int64) << 52)
    sign = np.where(bits < 0, -1.0, 1.0)
    digits = [
        np.bincount(position, weights=((significand >> shift) & _DIGIT) * sign, minlength=2046)
        for shift in (0, _DIGIT_BITS, 2 * _DIGIT_BITS)
    ]
    used = np.flatnonzero((digits[0] != 0) | (digits[1] != 0) | (digits[2] != 0))
    total = 0
    for p, low, middle, high in zip(
        used.tolist(), *(digit[used].tolist() for digit in digits), strict=True
    ):
        total += (int(low) + (int(middle) << _DIGIT_BITS) + (int(high) << 2 * _DIGIT_BITS)) << p
    return FloatSum(total, 0, 0, 0)


def _exact_slowly(floats: Sequence[float]) -> FloatSum:
    total = nan = pos_inf = neg_inf = 0
    for value in floats:
        if math.isfinite(value):
            total += scaled(value)
        elif value != value:
            nan += 1
        elif value > 0:
            pos_inf += 1
        else:
            neg_inf += 1
    return FloatSum(total, nan, pos_inf, neg_inf)


class FloatSumReduction(_FloatConverting):
    """The correctly rounded exact sum (or mean) of float element values."""

    def zero(self) -> FloatSum:
        return FloatSum(0, 0, 0, 0)

    def partial(self, value: float, i: int) -> FloatSum:
        return _exact_slowly((value,))

    def merge(self, a: FloatSum, b: FloatSum) -> FloatSum:
        return FloatSum(a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3])

    def finish(self, partial: FloatSum, n: int) -> float:
        if self.name == "mean":
            _empty(n)
        total, nan, pos_inf, neg_inf = partial
        if nan or (pos_inf and neg_inf):
            return math.nan
        if pos_inf or neg_inf:
            return math.inf if pos_inf else -math.inf
        if self.name == "sum":
            return divide(int(total), 1 << SCALE_BITS)
        return divide(int(total), n << SCALE_BITS)

    def batch(self, values: list, start: int, workload: str) -> FloatSum:
        return exact_sum(self.floats(values, start, workload))


class _Extreme(Reduction):
    """min or max with the smallest index among ties (see ``Extreme``)."""

    def zero(self) -> None:
        return None

    def key(self, value: Any) -> int:
        """The element value's integer order key."""
        raise NotImplementedError

    def value(self, key: int) -> Any:
        """The element value of an order key."""
        raise NotImplementedError

    def partial(self, value: Any, i: int) -> Extreme:
        return Extreme(self.key(value), i)

    def merge(self, a: Extreme | None, b: Extreme | None) -> Extreme | None:
        if a is None:
            return b
        if b is None:
            return a
        if a[0] == b[0]:
            return a if a[1] <= b[1] else b
        better = a[0] < b[0] if self.name == "min" else a[0] > b[0]
        return a if better else b

    def finish(self, partial: Extreme | None, n: int) -> Extremum:
        _empty(n)
        if partial is None:
            raise ValueError("empty range: no element values were reduced")
        return Extremum(self.value(partial[0]), int(partial[1]))


class IntExtreme(_Extreme, _IntConverting):
    def key(self, value: int) -> int:
        return value

    def value(self, key: int) -> int:
        return int(key)

    def batch(self, values: list, start: int, workload: str) -> Extreme | None:
        import numpy as np

        ints = self.ints(values, start, workload, checked=False)
        if not ints:
            return None
        try:
            array = np.array(ints, dtype=np.int64)
        except OverflowError:  # past the int64 range
            self.out_of_range(ints, start, workload)
            raise
        offset = int(array.argmin() if self.name == "min" else array.argmax())  # the first
        return Extreme(ints[offset], start + offset)


class FloatExtreme(_Extreme, _FloatConverting):
    def key(self, value: float) -> int:
        if value != value:
            return NAN_MIN_KEY if self.name == "min" else NAN_MAX_KEY
        return float_key(value)

    def value(self, key: int) -> float:
        return key_float(key)

    def batch(self, values: list, start: int, workload: str) -> Extreme | None:
        import numpy as np

        floats = self.floats(values, start, workload)
        if not floats:
            return None
        array = np.array(floats, dtype=np.float64)
        nan = np.isnan(array)
        if nan.any():  # any NaN wins: the first
            return Extreme(self.key(math.nan), start + int(nan.argmax()))
        offset = int(array.argmin() if self.name == "min" else array.argmax())  # the first
        best = floats[offset]
        if best == 0.0:  # -0.0 and +0.0 compare equal: the sign decides, then the index
            signs = {math.copysign(1.0, v) for v in floats if v == 0.0}
            sign = min(signs) if self.name == "min" else max(signs)
            best = math.copysign(0.0, sign)
            offset = next(
                k for k, v in enumerate(floats) if v == 0.0 and math.copysign(1.0, v) == sign
            )
        return Extreme(self.key(best), start + offset)


_CLASSES: dict[tuple[str, str], type[Reduction]] = {
    ("count", "bool"): Count,
    ("sum", "int"): IntSum,
    ("mean", "int"): IntSum,
    ("sum", "float"): FloatSumReduction,
    ("mean", "float"): FloatSumReduction,
    ("min", "int"): IntExtreme,
    ("max", "int"): IntExtreme,
    ("min", "float"): FloatExtreme,
    ("max", "float"): FloatExtreme,
}


def check_name(reduce: object) -> str:
    """``reduce`` if it names a reduction; else ``TypeError`` / ``ValueError`` saying what is."""
    if not isinstance(reduce, str):
        raise TypeError(
            f"reduce must be one of {list(NAMES)} (a str), not {type(reduce).__name__} {reduce!r}"
        )
    if reduce not in NAMES:
        raise ValueError(f"unknown reduce {reduce!r}; expected one of {list(NAMES)}")
    return reduce


def check_kind(returns: object) -> str | None:
    """The element kind declared by ``returns=`` (int, float, "int", "float" or None)."""
    if returns is None:
        return None
    kinds: dict[object, str] = {int: "int", float: "float", "int": "int", "float": "float"}
    kind = kinds.get(returns) if isinstance(returns, (type, str)) else None
    if kind is None:
        raise ValueError(
            f"returns must be int or float (or 'int', 'float', or None to infer it), "
            f"not {returns!r}"
        )
    return kind


@functools.cache
def get(name: str, kind: str) -> Reduction:
    """The reduction ``name`` over element values of ``kind`` ("bool" for count)."""
    check_name(name)
    if name == "count":
        kind = "bool"
    cls = _CLASSES.get((name, kind))
    if cls is None:
        raise ValueError(
            f"reduce={name!r} takes element values of kind {list(KINDS)}, not {kind!r}"
        )
    return cls(name, kind)


def kind_of(value: object) -> str | None:
    """"int" or "float" for an element value, None for anything else (bool is an int)."""
    if isinstance(value, float):
        return "float"
    if isinstance(value, int):
        return "int"
    if hasattr(value, "__index__"):  # NumPy integers
        return "int"
    if hasattr(value, "__float__") and not isinstance(value, (str, bytes, complex)):  # NumPy floats
        return "float"
    return None


def infer_kind(function: Callable, workload: str, reduce: str) -> str:
    """Whether ``function``'s values are ints or floats, from ``function(0, 0)`` (once per
    workload); ``ValueError`` saying to declare ``returns=`` when that cannot tell."""
    hint = f"declare it: @partally.workload(reduce={reduce!r}, returns=float) or returns=int"
    try:
        value = function(0, 0)
    except Exception as exc:
        raise ValueError(
            f"cannot tell whether workload {workload!r} gives ints or floats: f(0, 0) raised "
            f"{type(exc).__name__}: {exc}; {hint}"
        ) from exc
    kind = kind_of(value)
    if kind is None:
        raise ValueError(
            f"workload {workload!r} gives {type(value).__name__} values (f(0, 0) = {value!r}); "
            f"reduce={reduce!r} takes ints or floats; {hint}"
        )
    return kind
