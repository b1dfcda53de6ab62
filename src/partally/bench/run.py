"""``partally bench``: time every backend on every workload and size, verifying every result.

For each workload, size n (ascending) and backend: a small warm-up call (Numba's JIT or its disk
cache, the process pool, a CUDA context, the dispatcher's calibration; for auto, its race at that
n: see ``partally.auto.race``), then ``repeat`` samples. A sample is one call, or several back
to back when one call is shorter than ``MIN_SAMPLE_S`` (timer resolution); times are per call.
The median and the spread are kept. A misprediction never costs more than the budget: a sample's
calls stop once it has run past the per-call budget, and a cell's samples once it has spent
``repeat`` times that. Warm-up probes and every call stay inside the bench's own sizes (a user
function may be defined nowhere else).

Every result (each call's, not only the last) is checked against the reference for (workload, n)
before its time is reported; the reference is the first of these that applies:

1. a known value: a folding workload (``count``) counts n; the others' ``Workload.known`` (seed 0);
2. the definition itself, the pure-Python ``Workload.run_range``, when it is predicted to take at
   most ``REFERENCE_BUDGET_S`` (at about a microsecond per element it cannot check 10**9);
3. agreement of independent implementations. The Python predicates (``python``, ``threads``,
   ``processes``), the same predicates compiled by Numba (``numba``, ``numba-cuda``) and the C++
   kernels (``native``, ``cuda``) are three code paths; the same wrong count from two of them is
   unlikely. A backend's result votes only if that backend matched the reference at every smaller
   size of this run; ``numba`` and ``native`` are run, untimed, as checkers when they are not being
   benchmarked. Disagreement makes every result at that size a mismatch;
4. a sample, where only one implementation other than Python counted the size: that backend
   counts ``SAMPLE_RANGES`` random sub-ranges of [0, n) (within ``REFERENCE_BUDGET_S`` of pure
   Python between them) and must match the pure-Python count on each. That checks the
   implementation, not the whole range's total, and the row says so ("✓ sample"). Where only the
   Python predicates, or nothing, counted the size, its results are reported as unverified.

A (backend, n) whose predicted time per call exceeds the budget is skipped, and said so. The
prediction is t(n) = overhead + n / rate through that backend's two largest smaller sizes (timed
warm-up probes at 10**3 and 10**4, the fastest of three calls each, seed it), so a compiled
``count``, whose time does not grow with n, is not skipped for growing n.
"""

from __future__ import annotations

import functools
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from partally._errors import BackendUnavailable
from partally._timing import Timing, measure
from partally.workloads import Workload

SEED = 0
AUTO = "auto"

CHECKERS = ("native", "numba")  # run untimed to cross-check large sizes when not benchmarked

REFERENCE_BUDGET_S = 0.5
SAMPLE_RANGES = 3

DEFAULT_WORKLOADS = ("count", "primes", "pi")
DEFAULT_SIZES = (10**3, 10**4, 10**5, 10**6, 10**7)
DEFAULT_REPEAT = 5
DEFAULT_BUDGET_S = 0.5
QUICK_SIZES = (10**3, 10**4)
QUICK_REPEAT = 3
QUICK_BUDGET_S = 0.05

WARMUP_N = 1_000
PROBE_SIZES = (1_000, 10_000)
PROBE_REPEAT = 3
MIN_SAMPLE_S = 0.002  # shorter calls are repeated back to back within one sample
MAX_CALLS_PER_SAMPLE = 1_000

# Statuses of a Measurement.
OK, UNVERIFIED, MISMATCH, ERROR, SKIPPED = "ok", "unverified", "mismatch", "error", "skipped"


@dataclass
class Measurement:
    """One (workload, backend, n): its timing, or why there is none."""

    workload: str
    backend: str
    n: int
    status: str
    samples: tuple[float, ...] = ()  # seconds per call, one per sample
    calls_per_sample: int = 0
    result: Any = None  # None: no single result (an error, or runs that disagreed)
    expected: Any = None
    reference: str = ""  # where ``expected`` came from
    predicted_s: float | None = None
    chose: str | None = None  # for "auto": the backend the dispatcher picked, when it says
    message: str = ""

    @property
    def timed(self) -> bool:
        return bool(self.samples) and self.status in (OK, UNVERIFIED)

    @property
    def median(self) -> float | None:
        return Timing(self.samples).median if self.samples else None

    @property
    def spread(self) -> float | None:
        return Timing(self.samples).spread if self.samples else None


@dataclass
class Bench:
    """Everything one ``partally bench`` run measured."""

    workloads: list[Workload]
    sizes: list[int]
    backends: list[str]  # benchmarked, in order
    unavailable: dict[str, str]  # backend -> why it was skipped
    repeat: int
    workers: int
    budget_s: float
    measurements: list[Measurement] = field(default_factory=list)
    guide: bool = False
    # Single timed warm-up calls: (workload, backend) -> {n: seconds}; they seed the budget's
    # prediction and show a flat time even where only one size was asked for.
    probes: dict[tuple[str, str], dict[int, float]] = field(default_factory=dict)

    @property
    def failures(self) -> list[Measurement]:
        return [m for m in self.measurements if m.status in (MISMATCH, ERROR)]

    @property
    def ok(self) -> bool:
        return not self.failures

    def rows(self, workload: str) -> list[Measurement]:
        """The measurements of the workload called ``workload``."""
        return [m for m in self.measurements if m.workload == workload]


def predict(points: Sequence[tuple[int, float]], n: int) -> float | None:
    """Predicted seconds per call at ``n`` from (size, seconds) points; None without any.

    Through the two largest sizes: t = overhead + n * per_element, neither negative. With one
    point, time proportional to n (conservative).
    """
    if not points:
        return None
    ordered = sorted(points)
    n2, t2 = ordered[-1]
    if len(ordered) == 1 or n2 == ordered[-2][0]:
        return t2 * n / n2 if n2 else t2
    n1, t1 = ordered[-2]
    per_element = max(0.0, (t2 - t1) / (n2 - n1))
    overhead = max(0.0, t2 - per_element * n2)
    return overhead + per_element * n


def select_backends(
    requested: Sequence[str] | None, workloads: Sequence[Workload] = ()
) -> tuple[list[str], dict[str, str]]:
    """(runnable backends in registry order, then "auto"; {unavailable: reason}).

    A backend that runs none of ``workloads`` is unavailable; one that runs some is timed on those.
    """
    from partally.backends import get, names

    wanted = list(requested) if requested else [*names(), AUTO]
    runnable, unavailable = [], {}
    for name in [*names(), AUTO]:
        if name not in wanted:
            continue
        if name == AUTO:
            runnable.append(name)
            continue
        try:
            backend = get(name)
            reason = backend.unavailable()
            if reason is None and workloads:
                reasons = [backend.supports(workload) for workload in workloads]
                if all(reasons):
                    reason = reasons[0]
        except Exception as exc:  # a probe must not raise; if one does, say so and go on
            reason = f"its availability check failed: {exc!r}"
        if reason is None:
            runnable.append(name)
        else:
            unavailable[name] = reason
    return runnable, unavailable


def over(workload: Workload, n: int) -> Workload:
    """``workload`` over its data for n (an example's ``data(n, seed)``, made once per n), or
    itself where it has none."""
    if workload.data is None:
        return workload
    return _over(workload, n)


@functools.lru_cache(maxsize=4)  # the sizes a bench is at now: data for the largest can be big
def _over(workload: Workload, n: int) -> Workload:
    from partally.workloads import data

    return workload.with_args(data.check(workload.data(n, SEED)))


def _caller(backend: str, workload: Workload, workers: int) -> Callable[[int], Any]:
    """Every row times ``partally.compute(n, backend=...)``, as a user calls it: auto's and a named
    backend's per-call costs (checking the arguments) are the same. A workload with data gets
    its args for each n, made before the call (never timed)."""
    from partally._api import compute

    if backend != AUTO:
        from partally.backends import get

        probe = over(workload, WARMUP_N) if workload.data is not None else workload
        reason = get(backend).args_refusal(probe) or get(backend).supports(workload)
        if reason is not None:
            raise _NotSupported(reason)
    if workload.data is None:
        return lambda n: compute(n, backend=backend, workload=workload, workers=workers, seed=SEED)
    return lambda n: compute(
        n, backend=backend, workload=workload, workers=workers, seed=SEED,
        args=over(workload, n).args,
    )


class _NotSupported(Exception):
    """This backend does not run this workload: skipped, not an error."""


def _auto_choice(workload: Workload, n: int) -> str | None:
    from partally.auto import dispatcher

    try:
        return dispatcher().choose(over(workload, n), n)
    except Exception:  # the label is only informative
        return None


class _References:
    """The reference count for each (workload, n), as the module docstring describes."""

    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._cache: dict[tuple[Workload, int], Any] = {}

    def cheap(self, workload: Workload, n: int) -> tuple[Any, str] | None:
        """A known value or the pure-Python result, when one is at hand; None otherwise."""
        if workload.folds and workload.reduce == "count":
            return n, f"n ({workload.name} counts every i)"
        known = workload.known.get(n) if workload.reduce == "count" else None
        if known is not None:
            return known, "known value"
        if n * workload.python_cost_s <= REFERENCE_BUDGET_S:
            if (workload, n) not in self._cache:
                self._cache[workload, n] = _python(over(workload, n), 0, n)
            return self._cache[workload, n], "pure-Python run_range"
        return None

    def resolve(
        self, workload: Workload, n: int, results: dict[str, Any]
    ) -> tuple[Any, str]:
        """(expected result or None, where it came from / why there is none).

        ``results``: backend -> its result at n, from trusted backends only.
        """
        cheap = self.cheap(workload, n)
        if cheap is not None:
            return cheap
        counted = [
            (name, _family(name), value) for name, value in results.items() if _family(name)
        ]
        for name in CHECKERS:
            family = _family(name)
            if family and family not in {family for _, family, _ in counted}:
                value = self._checker(name, workload, n)
                if value is not None:
                    counted.append((f"{name} (untimed check)", family, value))
        same = workload.reduction.same
        votes: dict[str, list[Any]] = {}
        voters: dict[str, list[str]] = {}
        for name, family, value in counted:
            votes[family] = _distinct([*votes.get(family, []), value], same)
            voters.setdefault(family, []).append(name)
        values = _distinct([value for _, _, value in counted], same)
        who = "; ".join(f"{family}: {', '.join(voters[family])}" for family in sorted(votes))
        if len(values) > 1:
            found = ", ".join(f"{name} = {value!r}" for name, _, value in sorted(counted, key=repr))
            return None, f"independent implementations disagree ({found})"
        if len(votes) >= 2:
            return values.pop(), f"agreement of {len(votes)} implementations ({who})"
        if len(votes) == 1 and "Python" not in votes:
            name = next(iter(voters.values()))[0].removesuffix(" (untimed check)")
            return self._sample(name, workload, n, values.pop())
        return None, (
            "unverified: fewer than two independent implementations could count this size "
            f"({who or 'none'})"
        )

    def _sample(
        self, name: str, workload: Workload, n: int, total: Any
    ) -> tuple[Any, str]:
        """``total`` (backend ``name``'s result at n) if that backend matches pure Python on
        random sub-ranges of [0, n); else None and the sub-range where they differ."""
        from partally.backends import get

        length = max(1, min(n, int(REFERENCE_BUDGET_S / SAMPLE_RANGES / workload.python_cost_s)))
        draw = random.Random(f"{workload.key}:{n}")  # the same sub-ranges on every run
        for _ in range(SAMPLE_RANGES):
            lo = draw.randrange(n - length + 1)
            hi = lo + length
            try:
                bound = over(workload, n)
                partial = get(name).run(bound, lo, hi, workers=self._workers, seed=SEED)
                got = workload.reduction.finish(partial, hi - lo)
            except Exception as exc:
                return None, f"sample check failed: {name} on [{lo}, {hi}): {_one_line(exc)}"
            python = _python(bound, lo, hi)
            if not workload.reduction.same(got, python):
                return None, (
                    f"sample check failed: {name} gave {got!r} on [{lo}, {hi}), "
                    f"pure Python {python!r}"
                )
        return total, (
            f"sample: {name} matched the pure-Python count on {SAMPLE_RANGES} random sub-ranges "
            f"of {length:,} elements; the whole range was counted by {_family(name)} alone"
        )

    def _checker(self, name: str, workload: Workload, n: int) -> Any:
        from partally.backends import get, names

        if name not in names():
            return None
        backend = get(name)
        try:
            bound = over(workload, n)
            if backend.refusal(bound, n):
                return None
            partial = backend.run(bound, 0, n, workers=self._workers, seed=SEED)
            return workload.reduction.finish(partial, n)
        except Exception:
            return None


def _python(workload: Workload, lo: int, hi: int) -> Any:
    """The pure-Python result over [lo, hi): the definition."""
    return workload.reduction.finish(workload.run_range(lo, hi, SEED), hi - lo)


def _distinct(values: Sequence[Any], same: Callable[[Any, Any], bool]) -> list[Any]:
    """``values`` without repeats (by ``same``: NaN equals NaN, -0.0 is not +0.0), in order."""
    kept: list[Any] = []
    for value in values:
        if not any(same(value, other) for other in kept):
            kept.append(value)
    return kept


def _family(name: str) -> str:
    """The code path backend ``name`` runs (same family, same per-element code); "" for none.

    Only different families check each other; a backend of no family (ray: it runs whichever
    local kernel is best; auto) never votes.
    """
    from partally.backends import get, names

    return get(name).family if name in names() else ""


def run_bench(
    workloads: Sequence[Workload],
    sizes: Sequence[int],
    backends: Sequence[str],
    unavailable: dict[str, str],
    *,
    repeat: int,
    workers: int,
    budget_s: float,
    advance: Callable[[str], None] = lambda description: None,
    alarm: Callable[[str], None] = lambda text: None,
    guide: bool = False,
) -> Bench:
    """Measure every (workload, n, backend); ``advance`` is told before each cell, ``alarm`` of
    every mismatch or error as it is found."""
    bench = Bench(
        list(workloads), sorted(set(sizes)), list(backends), dict(unavailable),
        repeat, workers, budget_s, guide=guide,
    )
    references = _References(workers)
    for workload in bench.workloads:
        _run_workload(bench, workload, references, advance, alarm)
    return bench


def _run_workload(
    bench: Bench,
    workload: Workload,
    references: _References,
    advance: Callable[[str], None],
    alarm: Callable[[str], None],
) -> None:
    label = workload.name
    points: dict[str, dict[int, float]] = {name: {} for name in bench.backends}  # n -> seconds
    callers: dict[str, Callable[[int], Any]] = {}
    broken: dict[str, str] = {}  # backend -> the error that stopped it
    trusted = set(bench.backends)
    largest = max(bench.sizes)  # a user function is called inside the bench's own sizes only
    probes = [n for n in PROBE_SIZES if n <= largest] or [largest]

    for name in bench.backends:
        advance(f"{label}: warming up {name}")
        try:
            call = _caller(name, workload, bench.workers)
            call(min(WARMUP_N, largest))
            for n in probes:
                call(n)  # untimed: a first call at a size may set something up (calibration)
                timing, result = measure(lambda n=n: call(n), PROBE_REPEAT)
                fastest = min(timing.samples)  # one slow call must not inflate the prediction
                points[name][n] = fastest
                bench.probes.setdefault((label, name), {})[n] = fastest
                expected = references.cheap(workload, n)
                if expected is not None and not workload.reduction.same(result, expected[0]):
                    trusted.discard(name)
                    measurement = Measurement(
                        label, name, n, MISMATCH, result=result, expected=expected[0],
                        reference=expected[1], message="wrong result in the warm-up probe",
                    )
                    bench.measurements.append(measurement)
                    alarm(describe_failure(measurement))
            callers[name] = call
        except (_NotSupported, BackendUnavailable) as exc:
            broken[name] = f"does not run {label}: {exc}"
            for n in bench.sizes:
                bench.measurements.append(
                    Measurement(label, name, n, SKIPPED, message=broken[name])
                )
        except Exception as exc:
            broken[name] = _one_line(exc)
            measurement = Measurement(label, name, WARMUP_N, ERROR, message=broken[name])
            bench.measurements.append(measurement)
            alarm(f"ERROR: backend {name!r} failed warming up on {label}: {broken[name]}")

    for n in bench.sizes:
        cell: dict[str, Measurement] = {}
        for name in bench.backends:
            advance(f"{label}: n={n:.0e} on {name}")
            if name in broken:
                continue  # recorded where it broke
            predicted = predict(list(points[name].items()), n)
            if predicted is not None and predicted > bench.budget_s:
                cell[name] = Measurement(
                    label, name, n, SKIPPED, predicted_s=predicted,
                    message=f"predicted {predicted:.3g} s per call > budget {bench.budget_s:g} s",
                )
                continue
            try:
                cell[name] = _measure(bench, workload, name, n, callers[name], predicted)
            except BackendUnavailable as exc:  # a compiled backend does not trust it this far
                cell[name] = Measurement(label, name, n, SKIPPED, message=_one_line(exc))
                continue
            except Exception as exc:
                broken[name] = _one_line(exc)
                cell[name] = Measurement(label, name, n, ERROR, message=broken[name])
                alarm(f"ERROR: backend {name!r} failed on {label} n={n}: {broken[name]}")
                continue
            points[name][n] = cell[name].median

        _verify(workload, n, cell, trusted, references, alarm)
        bench.measurements.extend(cell.values())


def _verify(
    workload: Workload,
    n: int,
    cell: dict[str, Measurement],
    trusted: set[str],
    references: _References,
    alarm: Callable[[str], None],
) -> None:
    """Give each timed measurement at n its status against the reference; untrust the wrong."""
    pending = {name: m for name, m in cell.items() if m.status == "pending"}
    if not pending:
        return  # every backend skipped or failed here: nothing to check, no checker to run
    votes = {
        name: m.result
        for name, m in pending.items()
        if name in trusted and m.result is not None
    }
    expected, source = references.resolve(workload, n, votes)
    for name, m in pending.items():
        m.expected, m.reference = expected, source
        if m.message:  # the runs of one backend disagreed among themselves
            m.status = MISMATCH
        elif expected is None and source.startswith("unverified"):
            m.status = UNVERIFIED
        elif not workload.reduction.same(m.result, expected):
            m.status = MISMATCH
        else:
            m.status = OK
        if m.status == MISMATCH:
            trusted.discard(name)
            alarm(describe_failure(m))


def _measure(
    bench: Bench,
    workload: Workload,
    name: str,
    n: int,
    call: Callable[[int], Any],
    predicted: float | None,
) -> Measurement:
    results: list[Any] = []
    estimate = predicted if predicted is not None else MIN_SAMPLE_S
    calls = int(min(MAX_CALLS_PER_SAMPLE, max(1, math.ceil(MIN_SAMPLE_S / max(estimate, 1e-7)))))
    if estimate < 0.05:  # one more untimed call at this very size: first-touch costs
        results.append(call(n))
    if name == AUTO:  # auto's own warm-up: the race among near-tied backends at this n
        from partally.auto import dispatcher

        results.extend(dispatcher().settle(over(workload, n), n, lambda: call(n)))

    samples = []
    spent = 0.0
    longest = max(MIN_SAMPLE_S, bench.budget_s)  # a sample: its calls stop past this
    for _ in range(bench.repeat):  # the cell stops once it has spent repeat x budget
        began = time.perf_counter()
        done = 0
        while done < calls and (done == 0 or time.perf_counter() - began < longest):
            results.append(call(n))
            done += 1
        took = time.perf_counter() - began
        samples.append(took / done)
        spent += took
        if spent > bench.repeat * bench.budget_s:
            break  # mispredicted: each call takes far longer than its probes said
    distinct = _distinct(results, workload.reduction.same)
    measurement = Measurement(
        workload.name, name, n, "pending",
        samples=tuple(samples),
        calls_per_sample=calls,
        result=distinct[0] if len(distinct) == 1 else None,
        predicted_s=predicted,
        chose=_auto_choice(workload, n) if name == AUTO else None,
    )
    if len(distinct) > 1:
        measurement.message = f"its runs returned different results: {distinct!r}"
    return measurement


def describe_failure(m: Measurement) -> str:
    """One loud line for a wrong result or a failed run."""
    if m.status == ERROR:
        return f"ERROR: backend {m.backend!r}, workload {m.workload!r}, n={m.n}: {m.message}"
    got = m.message if m.result is None else f"returned {m.result!r}, expected {m.expected!r}"
    if m.message and m.result is not None:
        got = f"{m.message}: {got}"
    return (
        f"MISMATCH: backend {m.backend!r}, workload {m.workload!r}, n={m.n}: {got} "
        f"(reference: {m.reference})"
    )


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return text if len(text) <= limit else text[: limit - 3] + "..."
