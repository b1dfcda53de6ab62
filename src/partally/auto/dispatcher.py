"""``backend="auto"``: choose the backend for a workload and size.

The rules, first match wins:

1. ``PARTALLY_BACKEND=name`` forces that backend for every ``auto`` call (an unknown name is a
   ``ValueError``, an unavailable one ``BackendUnavailable``).
2. n < 32 runs the pure-Python loop: no model, no pool, no thread, no import.
3. ``PARTALLY_NO_CALIBRATE=1`` takes the first available of a fixed order: native, numba, python
   (those that can run the workload).
4. Otherwise the calibrated cost models (``calibration``; measured on first use of a workload and
   cached per machine) pick the least predicted time, counting the one-time start (JIT, pool) of a
   backend that has not started in this process yet; predictions within 10% of the least are a
   tie, won by the backend with the least per-call overhead (see ``models.pick``).
5. Where other started backends are predicted within 2x of that choice, the next calls at this n
   are shared among them in turn and timed (``race``); from then on the fastest by median runs.

The environment is read once per dispatcher, on its first ``auto`` call. The models are fitted with
every core as workers; ``workers`` does not change the choice. A decision that cannot change as
backends start up is remembered per (workload, n), so a repeated call costs one lookup.

A calibration measured while the machine was busy (a load average of at least the core count) is
measured again once it is quiet (under half that load): once per process and workload.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import os
import statistics
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from partally import _format
from partally._errors import BackendUnavailable
from partally._machine import cores, load_average
from partally._settings import Settings
from partally.auto import calibration as _calibration
from partally.auto.cache import CalibrationCache
from partally.auto.calibration import Calibration
from partally.auto.models import TIE, TINY, Model, corrected, fit, pick
from partally.auto.race import Race, contenders
from partally.backends import Backend
from partally.backends import get as get_backend
from partally.backends import names as backend_names
from partally.workloads import Workload, data

FIXED_ORDER = ("native", "numba", "python")
_STARTED_BELOW_S = 1e-3  # a one-time start cheaper than this counts as none
_MEMO_MAX = 4096
OUTGROWN = 100  # a user workload timed up to d is timed again for an n past d times this
OFF_BY = 3.0  # a real call this many times off its prediction (either way) refits the model
PROBE_SHARE = 0.1  # a backend predicted far slower is probed at an n costing this share of a call
PROBE_ABOVE_S = 5e-3  # ... when the call took at least this (below, a wrong choice costs little)
T = TypeVar("T")


@dataclass(frozen=True)
class Explanation:
    """Which backend ``compute(n, workload=workload)`` runs on with ``backend="auto"``, and why.

    ``predicted`` holds the seconds the cost model predicts for each calibrated backend, fastest
    first, including the one-time start of those in ``not_started``; it is empty when no model
    was consulted (forced, tiny n, fixed order).
    """

    n: int
    workload: str
    backend: str
    reason: str
    predicted: dict[str, float] = field(default_factory=dict)
    not_started: tuple[str, ...] = ()
    values: str = ""  # what is reduced, e.g. "sum of float values (inferred from f(0, 0))"
    sources: dict[str, str] = field(default_factory=dict)  # where each prediction came from
    args: str = ""  # how the call's args travel on the chosen backend ("" without args)

    def __str__(self) -> str:
        what = f"{self.workload}, {self.values}" if self.values else self.workload
        text = f"auto: {self.backend!r} for {what} at n = {self.n} ({self.reason})"
        if self.args:
            text += f"; args: {self.args}"
        if self.predicted:
            times = ", ".join(
                f"{name} {_format.seconds(t)}"
                + (" incl. first-call start" if name in self.not_started else "")
                + (f" ({self.sources[name]})" if name in self.sources else "")
                for name, t in self.predicted.items()
            )
            text += f"; predicted: {times}"
        return text


def values(workload: Workload) -> str:
    """What ``workload`` reduces, in words: "" for a count, else e.g. "sum of float values
    (inferred from f(0, 0))" or "min of int values (declared)"."""
    if workload.reduce == "count":
        return ""
    how = "declared" if workload.returns else "inferred from f(0, 0)"
    return f"{workload.reduce} of {workload.kind} values ({how})"


def _unconfigured(name: str) -> bool:
    """Whether ``name`` is a remote backend whose cluster is not configured: auto skips it."""
    if name not in backend_names():
        return False
    backend = get_backend(name)
    return backend.remote and not backend.configured()


def _stale(found: Calibration) -> bool:
    """Whether a cached calibration must be measured again: a cluster is configured now that it
    was measured without, or it was measured on a busy machine that is quiet now."""
    if _calibration.newly_configured(found):
        return True
    return found.load >= cores() and load_average() < found.load / 2


def _outgrown(found: Calibration, workload: Workload, n: int | None) -> bool:
    """Whether a user workload's calibration was timed on a range far smaller than [0, n)
    (it could time the function only inside the range of the call that asked)."""
    return n is not None and not workload.builtin and n > found.domain * OUTGROWN


def _provenance(model: Model) -> str:
    """Where a model's prediction came from, and its age: "calibration, 3 min ago"."""
    if not model.at:
        return model.source
    age = max(time.time() - model.at, 0.0)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if age >= size:
            return f"{model.source}, {age / size:.0f} {unit} ago"
    return f"{model.source}, {age:.0f} s ago"


def _off(predicted: float, seconds: float) -> bool:
    """Whether a real time is ``OFF_BY`` or more off its prediction, either way."""
    return seconds > predicted * OFF_BY or seconds * OFF_BY < predicted


def _ladder_of_calls(
    backend: Backend, workload: Workload, size: int, n: int, budget: float
) -> list[tuple[int, float]]:
    """(size, seconds) of warm calls up a ladder from ``size`` to at most n: first at size and
    twice it (the line through them: the per-call cost and the cost per element), then 10x the
    last while that line says the next call fits what is left of ``budget`` (twice its
    estimate). Under load a call can cost 20 ms whatever its size (threads waking up): the
    line tells that from work."""
    workers = backend.default_workers()
    backend.run(workload, 0, size, workers=workers, seed=0)  # its start, or first touch
    points: list[tuple[int, float]] = []
    spent = 0.0
    while True:
        began = time.perf_counter()
        backend.run(workload, 0, size, workers=workers, seed=0)
        took = time.perf_counter() - began
        points.append((size, took))
        spent += took
        if size >= n:
            return points
        following = min(n, size * (2 if len(points) == 1 else 10))
        if len(points) == 1:
            estimate = took * following / size  # all of it work: the most it can cost
        else:
            (n0, t0), (n1, t1) = points[-2:]
            per_element = max(t1 - t0, 0.0) / (n1 - n0)
            estimate = t1 + per_element * (following - n1)
        if spent + 2 * estimate > budget:
            return points
        size = following


def _probe_size(model: Model, n: int, seconds: float, startup: float) -> int | None:
    """The largest size in [TINY, n] that ``model`` says runs within ``seconds`` with
    ``startup`` (its one-time start, 0 once started in this process), or None."""
    if startup + model.predict(TINY) > seconds:
        return None
    lo, hi = TINY, n
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if startup + model.predict(mid) <= seconds:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _call_if_alive(method: weakref.WeakMethod) -> None:
    bound = method()
    if bound is not None:
        bound()


class Dispatcher:
    """The chooser behind ``backend="auto"``: its settings, calibration cache, models and memo.

    One is made per process (``dispatcher()``); a test makes its own, with its own cache folder,
    settings and calibration function.
    """

    def __init__(
        self,
        cache: CalibrationCache | None = None,
        settings: Settings | None = None,
        calibrate: Callable[..., Calibration] = _calibration.calibrate,
    ) -> None:
        self._cache = cache
        self._settings = settings
        self._calibrate = calibrate
        self._lock = threading.RLock()
        self._calibrations: dict[str, Calibration] = {}
        self._available: dict[tuple[str, str], str | None] = {}  # by Workload.key
        self._sent: set[str] = set()  # backends this dispatcher has chosen (about to start)
        self._startups: dict[str, float] = {}  # one-time starts measured in this process
        self._memo: dict[tuple[str, int], str] = {}
        self._races: dict[tuple[str, int], Race] = {}  # in progress
        self._raced: dict[tuple[str, int], dict[str, float]] = {}  # finished: median seconds
        self._seen: dict[tuple[str, str, int], collections.deque[float]] = {}  # real calls
        self._started_before: dict[str, set[str]] = {}  # backends past their first auto call
        self._probed: set[tuple[str, int]] = set()  # (workload, n) whose others were probed
        if hasattr(os, "register_at_fork"):  # a forked child asks the backends again
            forget = weakref.WeakMethod(self._forget_backends)
            os.register_at_fork(after_in_child=lambda: _call_if_alive(forget))

    def _forget_backends(self) -> None:
        self._lock = threading.RLock()
        self._available.clear()
        self._sent.clear()
        self._forget_choices()

    def _forget_choices(self) -> None:
        self._memo.clear()
        self._races.clear()
        self._raced.clear()

    @property
    def cache(self) -> CalibrationCache:
        with self._lock:
            if self._cache is None:
                self._cache = CalibrationCache()
            return self._cache

    @property
    def settings(self) -> Settings:
        with self._lock:
            if self._settings is None:
                self._settings = Settings.from_environment(backend_names())
            return self._settings

    def unavailable(self, name: str, workload: Workload, n: int | None = None) -> str | None:
        """Why backend ``name`` cannot run ``workload`` here (asked once), or over [0, n) (a
        compiled backend trusts a user function per range: asked per n, a lookup once the
        range is checked), or None."""
        key = (name, workload.key)
        if key not in self._available:
            try:
                self._available[key] = get_backend(name).refusal(workload)
            except Exception as exc:  # a probe must never stop the dispatch  # noqa: BLE001
                self._available[key] = f"its availability probe failed: {exc!r}"
        found = self._available[key]
        if found is None and n is not None and not workload.builtin:
            try:
                found = get_backend(name).supports(workload, n)
            except Exception as exc:  # noqa: BLE001 - as above
                found = f"its trust check failed: {exc!r}"
        return found

    def _is_started(self, name: str, startup: float) -> bool:
        """Whether ``name``'s one-time start (JIT, pool) is already paid in this process."""
        if startup < _STARTED_BELOW_S or name in self._sent:
            return True
        try:
            return get_backend(name).started
        except ValueError:
            return False

    def calibration(
        self, workload: Workload, n: int | None = None, *, measure: bool = True
    ) -> Calibration | None:
        """The models for ``workload``: in memory, cached on disk, else measured (if
        ``measure``; a user workload inside [0, n) only, and again for an n far past the
        range it was timed on)."""
        with self._lock:
            found = self._calibrations.get(workload.key)
            if found is not None and not (measure and _outgrown(found, workload, n)):
                return found
            if found is None:
                found = self.cache.load(workload.key)
            if found is not None and measure and (_stale(found) or _outgrown(found, workload, n)):
                found = None
            if found is None:
                if not measure:
                    return None
                found = self._measure(workload, n)
                self._save(workload, found)
            self._calibrations[workload.key] = found
            return found

    def _measure(self, workload: Workload, n: int | None = None) -> Calibration:
        return self._calibrate(workload, startups=self._startups, n=n)

    def _save(self, workload: Workload, found: Calibration) -> str | None:
        """Cache ``found`` on disk, unless its timings disagreed (then: why not)."""
        if found.noisy:
            return "its timings disagreed with each other (a busy machine): kept for this process"
        return self.cache.save(workload.key, found)

    def recalibrate(
        self, workload: Workload, n: int | None = None
    ) -> tuple[Calibration, str | None]:
        """Measure ``workload`` again and use it from now on; also return why it could not be
        cached on disk (None when it was)."""
        with self._lock:
            found = self._measure(workload, n)
            problem = self._save(workload, found)
            self._calibrations[workload.key] = found
            self._forget_choices()
            return found, problem

    def _decide(self, workload: Workload, n: int) -> tuple[Explanation, bool]:
        """The choice, and whether it is final (cannot change as other backends start up)."""
        settings = self.settings
        forced = settings.forced
        if forced is not None:
            reason = self.unavailable(forced, workload, n)
            if reason is not None:
                raise BackendUnavailable(
                    f"PARTALLY_BACKEND={forced!r} names a backend that cannot run "
                    f"{workload.name!r} here: {reason}"
                )
            why = f"forced by PARTALLY_BACKEND={forced}"
            return Explanation(n, workload.name, forced, why), True
        if n < TINY:
            why = f"n < {TINY}: the pure-Python loop"
            return Explanation(n, workload.name, "python", why), True
        if settings.no_calibrate:
            name = next(
                name for name in FIXED_ORDER if self.unavailable(name, workload, n) is None
            )
            why = f"fixed order {', '.join(FIXED_ORDER)} (PARTALLY_NO_CALIBRATE is set)"
            return Explanation(n, workload.name, name, why), True
        models = self.calibration(workload, n).models
        warm, predicted, not_started = {}, {}, []
        for name, model in models.items():
            if _unconfigured(name):
                continue
            warm[name] = model.predict(n)
            predicted[name] = warm[name]
            if not self._is_started(name, model.startup):
                predicted[name] += model.startup
                not_started.append(name)
        chosen = self._pick(predicted, models, workload, n, probe=True)
        # Final when the choice would stand with every backend started (nothing can change it).
        final = self._pick(warm, models, workload, n, probe=False) == chosen
        ordered = {name: predicted[name] for name in sorted(predicted, key=predicted.__getitem__)}
        best = next(iter(ordered))
        if chosen == best:
            why = "least predicted time by the calibrated models"
        elif predicted[chosen] <= predicted[best] * (1 + TIE):
            why = (
                f"within {TIE:.0%} of the predicted time of {best!r}, "
                "with less per-call overhead"
            )
        else:
            why = f"least predicted time among the backends available ({best!r} is not)"
        sources = {name: _provenance(models[name]) for name in ordered}
        explanation = Explanation(
            n, workload.name, chosen, why, ordered, tuple(not_started), sources=sources
        )
        return explanation, final

    def _pick(
        self,
        predicted: dict[str, float],
        models: dict[str, Model],
        workload: Workload,
        n: int,
        *,
        probe: bool,
    ) -> str:
        """``models.pick`` among the backends that can run here.

        ``probe``: ask each backend (lazily, best first) whether it can run; else assume so (the
        cache key already changes when an optional package is installed or removed).
        """
        ranked = sorted(predicted, key=predicted.__getitem__)
        if probe:  # best first, and only as far as the choice needs: a probe may import numba
            best = next(
                (name for name in ranked if self.unavailable(name, workload, n) is None), None
            )
            if best is None:
                return "python"
            bound = predicted[best] * (1 + TIE)
            ranked = [
                name
                for name in ranked
                if predicted[name] <= bound
                and (name == best or self.unavailable(name, workload, n) is None)
            ]
        return pick({name: predicted[name] for name in ranked}, models)

    def dispatch(self, workload: Workload, n: int) -> tuple[str, Callable[[float], None] | None]:
        """The backend ``compute(n, backend="auto", workload=workload)`` runs on now, and the
        function to call with the run's seconds (None where no model was consulted): every
        call auto makes is a measurement (``observe``), and while n is raced, a turn."""
        name, timed = self._next(workload, n, turn=True)
        if timed is not None or n < TINY or workload.key not in self._calibrations:
            return name, timed
        return name, functools.partial(self.observe, workload, n, name)

    def observe(self, workload: Workload, n: int, name: str, seconds: float) -> None:
        """A call of ``name`` at n took ``seconds``. Where its model is ``OFF_BY`` off (the
        median of its last three calls at n, either way), the model is refitted through it
        (``models.corrected``) and cached; after a long call, another backend predicted far
        slower than this call took is probed once at a size that costs a small share of it,
        and refitted likewise when it is off (a calibration under load predicted numba at
        1000 s for a call it runs in 0.25 s)."""
        with self._lock:
            found = self._calibrations.get(workload.key)
            model = None if found is None else found.models.get(name)
            if model is None:
                return
            if len(self._seen) >= _MEMO_MAX:
                self._seen.clear()
                self._probed.clear()
            began = self._started_before.setdefault(workload.key, set())
            if name in began or not get_backend(name).has_startup:  # a first call paid a start
                history = self._seen.setdefault(
                    (workload.key, name, n), collections.deque(maxlen=3)
                )
                history.append(seconds)
                typical = statistics.median(history)
                if len(history) >= 2 and _off(model.predict(n), typical):
                    self._correct(workload, name, n, typical)
            began.add(name)
            probe = seconds >= PROBE_ABOVE_S and (workload.key, n) not in self._probed
            if probe:
                self._probed.add((workload.key, n))
        if probe:
            self._probe_others(workload, n, name, seconds)

    def _correct(
        self, workload: Workload, name: str, n: int, seconds: float, model: Model | None = None
    ) -> None:
        """Refit ``name``'s model of ``workload`` through a real time at n (or replace it by
        ``model``, fitted from real calls), cache it, decide again."""
        with self._lock:
            found = self._calibrations[workload.key]
            models = dict(found.models)
            models[name] = model or corrected(models[name], n, seconds, time.time())
            found = dataclasses.replace(found, models=models, noisy=False)
            self._calibrations[workload.key] = found
            self.cache.save(workload.key, found)
            for key in [key for key in self._memo if key[0] == workload.key]:
                if key not in self._raced:  # a race's winner stands: real calls settled it
                    del self._memo[key]

    def _probe_others(self, workload: Workload, n: int, name: str, seconds: float) -> None:
        """Time, once, each backend predicted over ``OFF_BY`` times slower at n than ``name``
        took: real calls up a ladder of sizes (x10 each) from the largest its model says costs
        ``PROBE_SHARE`` of that call (its one-time start included), for as long as the next
        is measured to fit that share, up to n; its model is refitted from them where it is
        off."""
        found = self._calibrations.get(workload.key)
        if found is None:
            return
        budget = PROBE_SHARE * seconds
        for other, model in found.models.items():
            if other == name or _unconfigured(other) or model.predict(n) <= OFF_BY * seconds:
                continue
            startup = 0.0 if get_backend(other).started else model.startup  # paid already?
            size = _probe_size(model, n, budget, startup)
            if size is None or self.unavailable(other, workload, n) is not None:
                continue
            try:
                points = _ladder_of_calls(get_backend(other), workload, size, n, budget)
            except Exception:  # noqa: BLE001 - a probe never fails the user's call
                continue
            top, took = points[-1]
            if not _off(model.predict(top), took):
                continue
            refit = None
            if len(points) >= 2:
                sizes, times = zip(*points)
                refit = fit(sizes, times, model.startup, "real calls", time.time())
            self._correct(workload, other, top, took, refit)

    def _next(
        self, workload: Workload, n: int, *, turn: bool
    ) -> tuple[str, Callable[[float], None] | None]:
        """``dispatch`` when ``turn`` (starts a race where the models leave near ties, and takes
        its next turn), else ``choose``'s answer (the models' choice while nothing is settled)."""
        key = (workload.key, n)
        found = self._memo.get(key)
        if found is not None:
            return found, None
        with self._lock:
            race = self._races.get(key)
            if race is None:
                explanation, final, names = self._decide_race(workload, n)
                if len(names) == 1 or not turn:
                    self._sent.add(explanation.backend)  # compute runs it next
                    if final and len(names) == 1:
                        self._remember(key, explanation.backend)
                    return explanation.backend, None
                if len(self._races) >= _MEMO_MAX:
                    self._races.clear()
                race = self._races[key] = Race.among(names, explanation.predicted[names[0]])
            if not turn:
                return race.contenders[0], None
            name = race.next()
            self._sent.add(name)
            return name, functools.partial(self._timed, key, name)

    def _decide_race(self, workload: Workload, n: int) -> tuple[Explanation, bool, tuple[str, ...]]:
        """The models' choice, whether it is final, and the backends to race at n (the choice
        first; only the choice where there is nothing to race)."""
        explanation, final = self._decide(workload, n)
        if not final or not explanation.predicted:
            return explanation, final, (explanation.backend,)
        started = {  # a race never pays a one-time start
            name: t
            for name, t in explanation.predicted.items()
            if name == explanation.backend or name not in explanation.not_started
        }
        names = contenders(started, explanation.backend)  # asked only now: a probe may import
        return explanation, final, tuple(
            name
            for name in names
            if name == names[0] or self.unavailable(name, workload, n) is None
        )

    def _timed(self, key: tuple[str, int], name: str, seconds: float) -> None:
        """A raced call of ``name`` at ``key`` took ``seconds``; the last one settles the race."""
        with self._lock:
            race = self._races.get(key)
            if race is None:
                return
            race.add(name, seconds)
            if race.done:
                del self._races[key]
                self._raced[key] = race.medians()
                self._remember(key, race.winner())

    def _remember(self, key: tuple[str, int], name: str) -> None:
        if len(self._memo) >= _MEMO_MAX:
            self._memo.clear()
            self._raced.clear()
        self._memo[key] = name

    def racing(self, workload: Workload, n: int) -> bool:
        """Whether auto's calls at n are still shared among contenders (its own warm-up: a bench
        calls it until this is False before timing its steady state)."""
        return (workload.key, n) in self._races

    def settle(self, workload: Workload, n: int, call: Callable[[], T]) -> list[T]:
        """Run ``call`` (one ``auto`` call at n) until auto's race at n is over, so that the calls
        after it time the backend auto settled on (a bench's warm-up); every result, in order, for
        the caller to check. Bounded by the race's own length: a ``call`` that does not reach auto
        at n cannot loop."""
        results = [call()]  # starts the race, if there is one
        with self._lock:
            race = self._races.get((workload.key, n))
            most = race.samples * len(race.contenders) if race is not None else 0
        for _ in range(most):
            if not self.racing(workload, n):
                break
            results.append(call())
        return results

    def choose(self, workload: Workload, n: int) -> str:
        """The backend ``auto`` settles on at n: a finished race's winner, else the models'
        choice (asking never takes a turn in a race, nor starts one)."""
        return self._next(workload, n, turn=False)[0]

    def explain(self, workload: Workload, n: int) -> Explanation:
        """Which backend ``auto`` would choose, and why (may calibrate, never runs the work)."""
        with self._lock:
            explanation = self._decide(workload, n)[0]
            raced = self._raced.get((workload.key, n))
            if raced is not None and self._memo.get((workload.key, n)) is not None:
                winner = self._memo[workload.key, n]
                times = ", ".join(f"{name} {_format.seconds(t)}" for name, t in raced.items())
                why = f"the fastest of auto's own calls at this n, raced in turn (medians: {times})"
                explanation = dataclasses.replace(explanation, backend=winner, reason=why)
            travel = ""
            if workload.args:
                how = get_backend(explanation.backend).args_travel
                travel = f"{data.words(workload.args)}, {how}"
            return dataclasses.replace(explanation, values=values(workload), args=travel)
