"""Trusting a compiled backend (numba, numba-cuda) with a user's function.

Numba does not compute exactly what Python computes: it wraps at 64 bits, shifts by 64 or more
bits differently, truncates an int raised to a negative int power, and freezes globals at compile
time. Two guards keep a compiled backend from returning another answer silently:

- ``Guard.current``: a kernel is followed after it is compiled. Every global, module attribute and
  closure cell the function reads (through every function it calls) is noted when it is compiled;
  once one of them is rebound (or a small global array changed in place), the workload is compiled
  again under a new key, with the new values (the user's own Numba dispatchers recompiled too).
- ``Guard.trusted``: trust is per range. A user function is defined on the call's range [0, n)
  only, so before a call over [0, n) runs compiled, its element values are compared with
  Python's on a sample of [0, n) (``sample``: the ends, small i, powers of two and their
  neighbours, random i; several seeds), for at most ``BUDGET_S`` of Python time; the function is
  then trusted up to n, a larger n has its new part sampled first, a smaller one needs no check.
  A disagreement at i is the backend's refusal of every range that holds i, with the index, the
  seed and both values.

A sample cannot prove agreement everywhere (a difference at i = 123456789 alone goes unseen): the
bench compares whole ranges.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from partally.workloads import INDEX_LIMIT, Workload, data
from partally.workloads import user

BUDGET_S = 0.005  # Python time spent on a workload's sample (the compiled side is cheaper)
_SEEDS = (0, 1, 12345)  # seeds past 2**63 reach compiled code as negative int64, documented
_RANDOM = 64  # random indices after the structured ones
_AT_LEAST = 32  # indices compared whatever the budget: the ends and the largest powers of two
_RECORDS = 1024  # trust records kept (per workload and data): the oldest go first

Values = Callable[[Sequence[int], int], Sequence[object]]  # (indices, seed) -> compiled values


@dataclasses.dataclass(frozen=True)
class _Raised:
    """Python's outcome at an index where the function (or the conversion of its value) raised."""

    exc: Exception

    @property
    def why_numba_does_not(self) -> str:
        """The Numba semantics that give a value where Python raised this, in words."""
        cause = self.exc.__cause__ or self.exc
        if isinstance(cause, ZeroDivisionError):
            return "Numba's parallel kernels divide by zero without raising: n // 0 is 0"
        if isinstance(cause, IndexError):
            return "Numba does not check indices: it reads past the end"
        return "Numba's integers wrap at 64 bits where Python's grow"

    @property
    def error(self) -> str:
        cause = self.exc.__cause__ or self.exc
        return f"{type(cause).__name__}: {str(cause).splitlines()[0][:200] if str(cause) else ''}"


def sample(workload: Workload, lo: int, hi: int) -> Iterator[int]:
    """Indices in [lo, hi) to compare, most telling first: the range's ends, 0..7 (where the
    range starts at 0), each power of two with its neighbours from hi down, 8..31, then random
    ones, spread over the range's magnitudes (the same for a workload and range in any
    process). Never an index outside [lo, hi): a user function is defined on the call's range
    only (it may read ``DATA[i]`` for n = len(DATA))."""
    seen: set[int] = set()
    structured = [hi - 1, hi - 2, lo, lo + 1, *range(8)]
    for k in range(63, 4, -1):
        structured += [2**k - 1, 2**k, 2**k + 1]
    structured += range(8, 32)
    for i in structured:
        if lo <= i < hi and i not in seen:
            seen.add(i)
            yield i
    span = hi - lo
    if span <= len(seen):
        return
    draw = random.Random(f"{workload.key}|{lo}|{hi}")
    for k in range(_RANDOM):
        reach = min(span, 2 ** draw.randrange(3, 64))  # log-uniform: small and large alike
        offset = draw.randrange(reach)
        yield lo + offset if k % 2 else hi - 1 - offset


def _python_partials(
    workload: Workload, lo: int, hi: int, budget_s: float, most: int
) -> dict[int, list[tuple[int, object]]]:
    """Python's partial of each sampled single element [i, i + 1) of [lo, hi) (its value as the
    reduction takes it: truth for count, the int or float for the others), by seed, within
    ``budget_s`` of time; where Python raises, the partial is that exception (the compiled side
    must fail there too: Numba wraps an int past 64 bits, or reads past an array, where Python
    raises)."""
    values: dict[int, list[tuple[int, object]]] = {seed: [] for seed in _SEEDS}
    deadline = time.thread_time() + budget_s  # CPU time: a busy machine does not cut it short
    for k, i in enumerate(sample(workload, lo, hi)):
        seed = _SEEDS[k % len(_SEEDS)] if k >= 32 else 0
        try:
            values[seed].append((i, workload.run_range(i, i + 1, seed)))
        except Exception as exc:  # noqa: BLE001 - compared below: compiled must not give a value
            values[seed].append((i, _Raised(exc)))
        if (time.thread_time() > deadline and k >= _AT_LEAST) or k + 1 >= most:
            break
    return values


def _words(workload: Workload, partial: object) -> str:
    """A single element's partial as its value: True/False for count, else the value."""
    value = workload.reduction.finish(partial, 1)
    return repr(bool(value)) if workload.reduce == "count" else repr(value)


def disagreement(
    workload: Workload,
    backend: str,
    compiled: Values,
    lo: int,
    hi: int,
    budget_s: float = BUDGET_S,
    most: int = 1024,
) -> tuple[int, str] | None:
    """Where ``compiled`` (the backend's partial of each single element) differs from Python's
    on the sample of [lo, hi) (at most ``most`` indices): the least such index and the
    difference in words, or None. Partials compare exactly (a float's bits: NaN equals NaN,
    -0.0 differs from +0.0 where the reduction tells them apart). A compiled value that cannot
    be had (an error) is a disagreement too."""
    found: list[tuple[int, str]] = []
    for seed, every in _python_partials(workload, lo, hi, budget_s, most).items():
        for i, raised in every:
            if isinstance(raised, _Raised):
                try:
                    value = compiled([i], seed)[0]
                except Exception:  # noqa: BLE001 - both fail there: they agree
                    continue
                found.append((i, (
                    f"its compiled code gives a value where Python raises, at i = {i}, seed = "
                    f"{seed}: {workload.name}(i, seed) is {_words(workload, value)} compiled, "
                    f"Python raises {raised.error} ({raised.why_numba_does_not}); run it on a "
                    "Python backend (python, threads, processes)"
                )))
        pairs = [(i, partial) for i, partial in every if not isinstance(partial, _Raised)]
        if not pairs:
            continue
        indices = [i for i, _ in pairs]
        try:
            got = compiled(indices, seed)
        except Exception as exc:  # noqa: BLE001 - Python computed these without an error
            found.append((min(indices), (
                f"{backend} raised {type(exc).__name__}: {exc} on indices where Python does not "
                f"(seed {seed})"
            )))
            continue
        for (i, expected), value in zip(pairs, got):
            if value != expected:
                found.append((i, (
                    f"its compiled code disagrees with Python at i = {i}, seed = {seed}: "
                    f"{workload.name}(i, seed) is {_words(workload, value)} compiled, "
                    f"{_words(workload, expected)} in Python (Numba's integer arithmetic wraps "
                    "at 64 bits, shifts and negative powers differ); run it on a Python backend "
                    "(python, threads, processes), or on a range below i"
                )))
                break
    return min(found, key=lambda pair: pair[0]) if found else None


@dataclasses.dataclass
class _Trust:
    """How far a compiled backend is trusted with one workload: its values agree with Python's
    on the sample of [0, checked); they disagree at ``refused_from`` (the least index found)."""

    checked: int = 0
    refused_from: int = INDEX_LIMIT + 1
    reason: str | None = None


class Guard:
    """What a compiled backend keeps to trust its kernels of user workloads: what each kernel
    froze when it was compiled, and where a workload moved once one of those values changed."""

    def __init__(self) -> None:
        self._frozen: dict[str, user.Frozen] = {}  # by Workload.key, noted before compiling
        self._moved: dict[str, Workload] = {}  # a key -> the workload as compiled since a change
        self._trust: dict[str, _Trust] = {}  # by Workload.key (of the workload as compiled)
        self._lock = threading.Lock()
        self._checking = threading.Lock()  # one sample at a time: each extends the last

    def trusted(
        self, workload: Workload, hi: int, backend: str, compiled: Values, most: int = 1024
    ) -> str | None:
        """Why ``compiled`` cannot be trusted with ``workload`` over [0, hi), or None. A range
        already checked needs no check; a larger one has its new part [checked, hi) sampled
        (``disagreement``); a disagreement at i refuses every range that holds i, and only
        those. Kept per workload and, with args, per data (``data.identity``)."""
        key = workload.key
        if workload.args:
            key += f"|{data.identity(workload.args)}"
        record = self._trust.get(key)
        if record is not None and hi <= min(record.checked, record.refused_from):
            return None  # the hot path: no lock
        with self._checking:
            if key not in self._trust and len(self._trust) >= _RECORDS:
                del self._trust[next(iter(self._trust))]  # the oldest: other data, long ago
            record = self._trust.setdefault(key, _Trust())
            if hi > record.refused_from:
                return record.reason
            if hi > record.checked:
                found = disagreement(workload, backend, compiled, record.checked, hi, most=most)
                if found is None:
                    record.checked = hi
                else:
                    record.refused_from, record.reason = min(
                        (record.refused_from, record.reason or ""), found
                    )
                    return record.reason
            return None

    def current(self, workload: Workload) -> Workload:
        """``workload`` as its kernel must be compiled now: itself, or, once a value compiled
        into its kernel has changed, a copy keyed by the new values (compiled anew)."""
        if workload.function is None:
            return workload
        found = self._moved.get(workload.key, workload)
        frozen = self._frozen.get(found.key)
        if frozen is None:
            with self._lock:
                self._frozen.setdefault(found.key, user.fingerprint(found.function)[1])
            return found
        if frozen.changed() is None:
            return found
        with self._lock:
            digest, fresh = user.fingerprint(workload.function)
            key = f"{workload.name}@{digest}"
            if key != found.key:
                for dispatcher in frozen.dispatchers:  # Numba froze the old values in them too
                    if getattr(dispatcher, "overloads", None):
                        dispatcher.recompile()
                found = dataclasses.replace(workload, cache_key=key)
            self._frozen[key] = fresh
            self._moved[workload.key] = found
            return found
