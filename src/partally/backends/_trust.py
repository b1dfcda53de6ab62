"""Trusting a compiled backend (numba, numba-cuda) with a user's function.

Numba does not compute exactly what Python computes: it wraps at 64 bits, shifts by 64 or more
bits differently, truncates an int raised to a negative int power, and freezes globals at compile
time. Two guards keep a compiled backend from returning another answer silently:

- ``Guard.current``: a kernel is followed after it is compiled. Every global, module attribute and
  closure cell the function reads (through every function it calls) is noted when it is compiled;
  once one of them is rebound (or a small global array changed in place), the workload is compiled
  again under a new key, with the new values (the user's own Numba dispatchers recompiled too).
- ``Guard.check``: before the kernel is trusted, its element values are compared with Python's on
  a sample of indices (``sample``: small i, powers of two and their neighbours, the ends of the
  index range, random i; several seeds), for at most ``BUDGET_S`` of Python time. A disagreement
  is the backend's refusal of that workload, with the index, the seed and both values.

A sample cannot prove agreement everywhere (a difference at i = 123456789 alone goes unseen): the
bench compares whole ranges.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from partally.workloads import INDEX_LIMIT, Workload
from partally.workloads import user

BUDGET_S = 0.005  # Python time spent on a workload's sample (the compiled side is cheaper)
_SEEDS = (0, 1, 12345)  # seeds past 2**63 reach compiled code as negative int64, documented
_RANDOM = 64  # random indices after the structured ones
_AT_LEAST = 32  # indices compared whatever the budget: the ends and the largest powers of two

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


def sample(workload: Workload) -> Iterator[int]:
    """Indices to compare, most telling first: 0..7, the last two indices, each power of two with
    its neighbours from the index limit down, 8..31, then random ones (the same for a workload in
    any process)."""
    top = min(workload.limit, INDEX_LIMIT) - 1  # the largest index a range can hold
    seen: set[int] = set()
    structured = [*range(8), top, top - 1]
    for k in range(63, 4, -1):
        structured += [2**k - 1, 2**k, 2**k + 1]
    structured += range(8, 32)
    for i in structured:
        if 0 <= i <= top and i not in seen:
            seen.add(i)
            yield i
    draw = random.Random(workload.key)
    for _ in range(_RANDOM):
        bits = draw.randrange(8, 64)
        yield draw.randrange(0, min(top, 2**bits - 1) + 1)


def _python_partials(
    workload: Workload, budget_s: float, most: int
) -> dict[int, list[tuple[int, object]]]:
    """Python's partial of each sampled single element [i, i + 1) (its value as the reduction
    takes it: truth for count, the int or float for the others), by seed, within ``budget_s``
    of time; where Python raises, the partial is that exception (the compiled side must fail
    there too: Numba wraps an int past 64 bits, or reads past an array, where Python raises)."""
    values: dict[int, list[tuple[int, object]]] = {seed: [] for seed in _SEEDS}
    deadline = time.thread_time() + budget_s  # CPU time: a busy machine does not cut it short
    for k, i in enumerate(sample(workload)):
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
    workload: Workload, backend: str, compiled: Values, budget_s: float = BUDGET_S, most: int = 1024
) -> str | None:
    """Where ``compiled`` (the backend's partial of each single element) differs from Python's
    on the sample (at most ``most`` indices), in words, or None. Partials compare exactly (a
    float's bits: NaN equals NaN, -0.0 differs from +0.0 where the reduction tells them apart).
    A compiled value that cannot be had (an error) is a disagreement too."""
    for seed, every in _python_partials(workload, budget_s, most).items():
        for i, raised in every:
            if isinstance(raised, _Raised):
                try:
                    value = compiled([i], seed)[0]
                except Exception:  # noqa: BLE001 - both fail there: they agree
                    continue
                return (
                    f"its compiled code gives a value where Python raises, at i = {i}, seed = "
                    f"{seed}: {workload.name}(i, seed) is {_words(workload, value)} compiled, "
                    f"Python raises {raised.error} ({raised.why_numba_does_not}); run it on a "
                    "Python backend (python, threads, processes)"
                )
        pairs = [(i, partial) for i, partial in every if not isinstance(partial, _Raised)]
        if not pairs:
            continue
        indices = [i for i, _ in pairs]
        try:
            got = compiled(indices, seed)
        except Exception as exc:  # noqa: BLE001 - Python computed these without an error
            return (
                f"{backend} raised {type(exc).__name__}: {exc} on indices where Python does not "
                f"(seed {seed})"
            )
        for (i, expected), value in zip(pairs, got):
            if value != expected:
                return (
                    f"its compiled code disagrees with Python at i = {i}, seed = {seed}: "
                    f"{workload.name}(i, seed) is {_words(workload, value)} compiled, "
                    f"{_words(workload, expected)} in Python (Numba's integer arithmetic wraps "
                    "at 64 bits, shifts and negative powers differ); run it on a Python backend "
                    "(python, threads, processes), or, if it is meant only for smaller n, say "
                    "so: partally.workload(f, limit=n)"
                )
    return None


class Guard:
    """What a compiled backend keeps to trust its kernels of user workloads: what each kernel
    froze when it was compiled, and where a workload moved once one of those values changed."""

    def __init__(self) -> None:
        self._frozen: dict[str, user.Frozen] = {}  # by Workload.key, noted before compiling
        self._moved: dict[str, Workload] = {}  # a key -> the workload as compiled since a change
        self._lock = threading.Lock()

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
