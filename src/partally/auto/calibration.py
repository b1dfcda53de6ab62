"""Calibration for ``backend="auto"``: time each backend at a few sizes, fit t(n), cache it.

The model of one backend on one workload is t(n) = overhead + n / rate, fitted piecewise: the
calibration times [0, n) at a ladder of sizes (32, 100, 1e3, 1e4, ...) and each pair of adjacent
sizes gives one (overhead, rate) line. One line is not enough on real machines: the C++ backend
runs small ranges on one thread and spawns threads above a block size, so its time jumps 20x
between 1e4 and 1e5 while Numba's persistent pool does not. Between timed sizes the model
interpolates; past the largest it extrapolates the last line (the large-n overhead and rate), below
the smallest the first. A backend's first call in a process (JIT compile or load, pool or context
start) is timed separately as ``startup`` and kept out of the fit.

Bounds: about ``Workload.calibration_s`` seconds for all backends of one workload (a one-time JIT compile on
the very first run on a machine can add to it; one-time starts are outside the budget). A
backend's ladder stops once one run takes ``ENOUGH_S`` and the time grows with n (so work, not a
stall of a busy machine, dominates), or when the next size would not fit its share of the budget.

Which backends: every available one, except a remote one (Ray, Celery) unless its cluster is
configured (``RAY_ADDRESS``, ``CELERY_BROKER_URL``: calibration never starts a local Ray), and
except the pool backends running the pure-Python loop (``threads``, ``processes``) when the
measured models prove they cannot win at any n (their best case is the Python loop's time divided
by the cores, plus a hand-off cost): that skip is recorded with its reason. A backend whose count disagrees with the Python loop is left out.

Cache: one JSON file per machine key (CPU model, cores, GPU name, Python, partally version, which
optional packages are installed) in platformdirs' user cache directory. A corrupt or unreadable
file is ignored (and rewritten by the next calibration); an unwritable directory only means the
models live in memory for this process.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from partally import _timing
from partally._machine import cores, load_average
from partally.auto.models import Model, fastest, fit
from partally.backends import Backend
from partally.backends import get as get_backend
from partally.backends import names as backend_names
from partally.workloads import INDEX_LIMIT, Workload

ENOUGH_S = 0.01  # a backend's ladder stops once one run takes this long (and grows as work)
SAMPLE_S = 1e-3  # a timed sample lasts at least this: short calls are timed in batches
DISAGREE = 2.0  # a size whose median sample is over this times its fastest is timed again
LADDER = (32, *(10**k for k in range(2, 13)))
NOT_CONFIGURED = "not timed: no cluster configured"  # a remote backend without its address
HANDOFF_S = 20e-6  # least cost of handing work to a pool thread or process (measured: 0.3 ms)

clock = time.perf_counter  # the budget's clock (tests replace it)


# --- measuring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """The fitted models of one workload, and the backends left out with the reason why."""

    models: dict[str, Model]
    skipped: dict[str, str] = field(default_factory=dict)
    workers: int = 1  # the workers the backends were timed with (every core)
    elapsed_s: float = 0.0  # how long the calibration took
    load: float = 0.0  # the 1-minute load average when it started
    domain: int = INDEX_LIMIT  # the largest n timed: a user function's range [0, n) ends there
    noisy: bool = False  # some timings disagreed with each other: kept in memory, never cached

    def to_json(self) -> dict[str, object]:
        return {
            "models": {
                name: {
                    "sizes": list(m.sizes),
                    "seconds": list(m.seconds),
                    "startup": m.startup,
                    "source": m.source,
                    "at": m.at,
                }
                for name, m in self.models.items()
            },
            "skipped": dict(self.skipped),
            "workers": self.workers,
            "elapsed_s": self.elapsed_s,
            "load": self.load,
            "domain": self.domain,
        }


def limit(workload: Workload, n: int | None = None) -> int:
    """The largest n to calibrate or chart crossovers for: a user function only inside the
    range [0, n) of the call that asked (it may be defined nowhere else), a built-in anywhere."""
    domain = n if n is not None and not workload.builtin else INDEX_LIMIT
    return min(workload.limit, 10**12, domain)


def ladder(workload: Workload, n: int | None = None) -> list[int]:
    """The sizes to time, up to ``limit(workload, n)`` (which is one of them), at least two."""
    top = limit(workload, n)
    sizes = [size for size in LADDER if size < top]
    if top <= LADDER[-1]:
        sizes.append(top)
    return sizes if len(sizes) >= 2 else [max(1, top // 2), top]


def _dominated(
    name: str,
    models: Mapping[str, Model],
    workload: Workload,
    workers: int,
    gil_bound: bool,
    domain: int,
) -> str | None:
    """Why the pool backend ``name`` cannot beat the measured models at any n, or None."""
    speedup = 1 if gil_bound else workers
    python = models["python"]
    hi = limit(workload, domain)
    sizes = [n for n in (round(10 ** (e / 10)) for e in range(15, 130)) if n <= hi] + [hi]
    for n in sizes:  # its best case: the Python loop split over every core, plus a hand-off
        if min(m.predict(n) for m in models.values()) > python.predict(n) / speedup + HANDOFF_S:
            return None
    best = max(models.values(), key=lambda m: m.rate)
    if best.rate < python.rate * speedup:
        return None
    return (
        f"not timed: the pure-Python loop on {speedup} core(s) cannot beat "
        f"{fastest(models, hi)} at any n"
    )


def _repeats(estimate: float) -> int:
    """Samples per size: 3 for long runs, up to 15 for short, noisy ones."""
    return 3 if estimate > ENOUGH_S / 2 else min(15, max(5, int(2e-3 / max(estimate, 1e-9))))


def _batch(estimate: float) -> int:
    """Calls per sample: a sample lasts at least ``SAMPLE_S``, so that microsecond calls are
    timed above the clock's and the scheduler's noise, never one call at a time."""
    return max(1, min(1000, math.ceil(SAMPLE_S / max(estimate, 1e-9))))


def _grows_as_work(sizes: list[int], medians: list[float]) -> bool:
    """Whether the last step up the ladder took long enough and grew as work does: at least
    ``ENOUGH_S``, and by a factor within 4x either way of the sizes' (a loop over n that grows
    much faster than n was stalled by a busy machine; one that barely grows is per-call cost)."""
    if len(sizes) < 2 or medians[-1] < ENOUGH_S or medians[-2] <= 0:
        return False
    ratio = sizes[-1] / sizes[-2]
    return ratio / 4 <= medians[-1] / medians[-2] <= ratio * 4


def _disagree(timing: _timing.Timing) -> bool:
    """Whether a size's samples disagree with each other: their median over ``DISAGREE`` times
    the fastest (half of them slowed down: a busy machine, not one stray sample)."""
    return timing.median > DISAGREE * min(timing.samples)


_FRESH_START = """
import pickle, sys, time
began = time.perf_counter()
from partally.backends import get
backend = get(sys.argv[1])
workload = pickle.loads(sys.stdin.buffer.read())
backend.run(workload, 0, 32, workers=1, seed=0)
first = time.perf_counter() - began
began = time.perf_counter()
backend.run(workload, 0, 32, workers=1, seed=0)
print(max(first - (time.perf_counter() - began), 0.0))
"""


def fresh_startup(name: str, workload: Workload, timeout: float = 120.0) -> float | None:
    """The one-time start of backend ``name`` as a new process pays it (import, JIT or cache
    load, pool), measured in a new process; None if that process failed."""
    import subprocess

    import cloudpickle

    try:
        done = subprocess.run(
            [sys.executable, "-c", _FRESH_START, name],
            input=cloudpickle.dumps(workload),
            capture_output=True,
            timeout=timeout,
            check=True,
        )
        return float(done.stdout.decode().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None


def _ladder(
    backend: Backend,
    workload: Workload,
    workers: int,
    share: float,
    reference: dict[int, Any],
    startups: dict[str, float],
    sizes_allowed: list[int],
) -> tuple[Model, bool]:
    """Time ``backend`` up the size ladder until a run takes ``ENOUGH_S`` and grows as work,
    or ``share`` s pass; the model, and whether some size's samples disagreed (timed twice).

    The first call (the one-time start) is timed on its own and is not part of the share. A
    backend already started in this process (by the bench, an earlier calibration) has its start
    measured in a new process instead, so that the model holds for the processes that use it.
    """

    reduction = workload.reduction

    def run(n: int) -> Callable[[], Any]:
        return lambda: reduction.finish(backend.run(workload, 0, n, workers=workers, seed=0), n)

    def batched(n: int, calls: int) -> Callable[[], Any]:
        one = run(n)

        def batch() -> Any:
            for _ in range(calls):
                result = one()
            return result

        return batch

    was_started = backend.has_startup and backend.started
    first_n = sizes_allowed[0]
    start = clock()
    first = run(first_n)()  # the one-time start: JIT, pool, context
    first_s = clock() - start
    deadline = clock() + share
    sizes: list[int] = []
    medians: list[float] = []
    noisy = False
    for n in sizes_allowed:
        if len(sizes) >= 2:
            if _grows_as_work(sizes, medians):
                break  # long enough, and growing with n as work does: not a stall
            estimate = fit(sizes[-2:], medians[-2:]).predict(n)
            if medians[-1] > 4 * medians[-2] * sizes[-1] / sizes[-2]:  # a stall, not work:
                estimate = max(medians[-1], medians[-2] * n / sizes[-2])  # its line cuts nothing
        else:
            estimate = medians[-1] if medians else first_s
        repeat, calls = _repeats(estimate), _batch(estimate)
        if len(sizes) >= 2 and clock() + estimate * repeat * calls > deadline:
            break  # two sizes at least: a line to fit
        timing, result = _timing.measure(batched(n, calls), repeat)
        if _disagree(timing):  # a stall of a busy machine: once more, then say so
            timing, result = _timing.measure(batched(n, calls), repeat)
            noisy = noisy or _disagree(timing)
        if n == first_n and not reduction.same(first, result):
            raise ValueError(f"gave {first!r}, then {result!r} over [0, {n})")
        if n in reference and not reduction.same(reference[n], result):
            raise ValueError(f"gave {result!r} over [0, {n}), the Python loop {reference[n]!r}")
        reference.setdefault(n, result)
        sizes.append(n)
        medians.append(timing.median / calls)
    if not backend.has_startup:
        startup = 0.0
    elif backend.name in startups:
        startup = startups[backend.name]
    elif was_started:
        startup = fresh_startup(backend.name, workload) or 0.0
    else:
        startup = max(first_s - medians[0], 0.0)
    startups.setdefault(backend.name, startup)
    return fit(sizes, medians, startup, at=time.time()), noisy


def candidates(
    workload: Workload, names: Iterable[str] | None = None, n: int | None = None
) -> tuple[list[str], dict[str, str]]:
    """The backends to calibrate here for ``workload`` (up to n), and those left out with the
    reason why."""
    chosen, skipped = [], {}
    for name in backend_names() if names is None else names:
        try:
            backend = get_backend(name)
            if backend.remote and not backend.configured():
                skipped[name] = f"{NOT_CONFIGURED} (set {backend.setting})"
                continue
            reason = backend.refusal(workload, None if n is None else limit(workload, n))
        except Exception as exc:  # a probe must not stop the others  # noqa: BLE001
            reason = f"its availability probe failed: {exc!r}"
        if reason is None:
            chosen.append(name)
        else:
            skipped[name] = f"unavailable: {reason}"
    return chosen, skipped


def newly_configured(found: Calibration) -> bool:
    """Whether a remote backend that ``found`` left out for want of a cluster has one now."""
    return any(
        why.startswith(NOT_CONFIGURED) and name in backend_names() and get_backend(name).configured()
        for name, why in found.skipped.items()
    )


def calibrate(
    workload: Workload,
    names: Iterable[str] | None = None,
    *,
    budget: float | None = None,
    workers: int | None = None,
    backends: Mapping[str, Backend] | None = None,
    startups: dict[str, float] | None = None,
    n: int | None = None,
) -> Calibration:
    """Time every available backend (or ``names``) on ``workload`` and fit their models, in about
    ``budget`` seconds (default: the workload's ``calibration_s``); a user workload only inside
    [0, n) of the call that asked (``limit``).

    ``backends`` maps names to backends instead of the registry (tests use fakes); ``startups``
    holds the one-time starts already measured in this process, and gets the new ones.
    """
    budget = workload.calibration_s if budget is None else budget
    workers = workers or cores()
    load = load_average()
    startups = {} if startups is None else startups
    if backends is not None:
        names, skipped = list(backends), {}
        get = backends.__getitem__
    else:  # asking may compile (numba on a user workload): a one-time start, outside the budget
        names, skipped = candidates(workload, names, n)
        get = get_backend
    began = clock()
    if "python" not in names:
        names.insert(0, "python")
    pools = [name for name in names if name != "python" and get(name).runs_python]
    order = ["python", *(n for n in names if n != "python" and n not in pools), *pools]
    models: dict[str, Model] = {}
    reference: dict[int, Any] = {}
    starts = 0.0  # one-time starts: outside the budget
    sizes = ladder(workload, n)
    noisy = False
    for k, name in enumerate(order):
        backend = get(name)
        if name in pools:
            why = _dominated(name, models, workload, workers, backend.gil_bound, sizes[-1])
            if why is not None:
                skipped[name] = why
                continue
        share = (budget - (clock() - began - starts)) / (len(order) - k)
        try:
            models[name], disagreed = _ladder(
                backend, workload, workers, share, reference, startups, sizes
            )
            noisy = noisy or disagreed
            starts += models[name].startup
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # a failing backend is left out, never a crash  # noqa: BLE001
            if name == "python":
                raise
            skipped[name] = f"failed during calibration: {exc}"
    return Calibration(models, skipped, workers, clock() - began, load, sizes[-1], noisy)
