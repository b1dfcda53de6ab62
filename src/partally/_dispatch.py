"""``backend="auto"``: choose the backend for a workload and size.

The rules, first match wins:

1. ``PARTALLY_BACKEND=name`` forces that backend for every ``auto`` call (an unknown name is a
   ``ValueError``, an unavailable one ``BackendUnavailable``).
2. n < 32 runs the pure-Python loop: no model, no pool, no thread, no import.
3. ``PARTALLY_NO_CALIBRATE=1`` takes the first available of a fixed order: native, numba, python.
4. Otherwise the calibrated cost models (``_calibrate``; measured on first use of a workload and
   cached per machine) pick the least predicted time, counting the one-time start (JIT, pool) of a
   backend that has not run in this process yet; predictions within 10% of the least are a tie,
   won by the backend with the least per-call overhead (see ``_calibrate.pick``).

The environment variables are read once per process, on the first ``auto`` call. The models are
fitted with every core as workers; ``workers`` does not change the choice. A decision that cannot
change as backends start up is remembered per (workload, n), so a repeated call costs one lookup.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field

from partally import _calibrate, _validate
from partally.backends import NAMES as BACKEND_NAMES
from partally.backends import get as get_backend
from partally._calibrate import TIE, TINY, Calibration
from partally._errors import BackendUnavailable

FIXED_ORDER = ("native", "numba", "python")
_STARTED_BELOW_S = 1e-3  # a one-time start cheaper than this counts as none
_MEMO_MAX = 4096

_lock = threading.RLock()
_settings: tuple[str | None, bool, bool] | None = None  # forced, no_calibrate, ray connected
_calibrations: dict[str, Calibration] = {}
_key: dict[str, object] | None = None
_available: dict[str, str | None] = {}
_started: set[str] = set()
_memo: dict[tuple[str, int], str] = {}


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

    def __str__(self) -> str:
        text = f"auto: {self.backend!r} for {self.workload} at n = {self.n} ({self.reason})"
        if self.predicted:
            times = ", ".join(
                f"{name} {_seconds(t)}" + (" incl. first-call start" if name in self.not_started else "")
                for name, t in self.predicted.items()
            )
            text += f"; predicted: {times}"
        return text


def _seconds(t: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if t >= scale:
            return f"{t / scale:.3g} {unit}"
    return f"{t * 1e9:.3g} ns"


def reset() -> None:
    """Forget the settings, models and decisions of this process (re-read on the next call)."""
    global _settings, _key
    with _lock:
        _settings, _key = None, None
        _calibrations.clear()
        _available.clear()
        _started.clear()
        _memo.clear()


def _read_settings() -> tuple[str | None, bool, bool]:
    global _settings
    if _settings is None:
        forced = os.environ.get("PARTALLY_BACKEND", "").strip() or None
        if forced == "auto":
            forced = None
        if forced is not None and forced not in BACKEND_NAMES:
            raise ValueError(
                f"PARTALLY_BACKEND={forced!r} is not a backend; "
                f"expected 'auto' or one of {list(BACKEND_NAMES)}"
            )
        no_calibrate = os.environ.get("PARTALLY_NO_CALIBRATE", "").strip().lower()
        _settings = (
            forced,
            no_calibrate not in ("", "0", "false", "no"),
            bool(os.environ.get("RAY_ADDRESS")),
        )
    return _settings


def _unavailable(name: str) -> str | None:
    if name not in _available:
        try:
            _available[name] = get_backend(name).unavailable()
        except Exception as exc:  # a probe must never stop the dispatch  # noqa: BLE001
            _available[name] = f"its availability probe failed: {exc!r}"
    return _available[name]


def _is_started(name: str, startup: float) -> bool:
    """Whether ``name``'s one-time start (JIT, pool) is already paid in this process."""
    if startup < _STARTED_BELOW_S or name in _started:
        return True
    if name == "numba":
        return "partally.backends._numba_kernels" in sys.modules
    if name == "processes":
        return getattr(sys.modules.get("partally.backends.processes"), "_pool", None) is not None
    return False


def calibration(workload: str, *, measure: bool = True) -> Calibration | None:
    """This process's models for ``workload``: cached, else measured (unless not ``measure``)."""
    global _key
    with _lock:
        if workload in _calibrations:
            return _calibrations[workload]
        if _key is None:
            _key = _calibrate.machine_key()
        found = _calibrate.load(workload, _key)
        if found is not None and _read_settings()[2] and "ray" in BACKEND_NAMES:
            if "ray" not in found.models and "ray" in found.skipped:
                found = None  # calibrated without a cluster; one is connected now
        if found is None:
            if not measure:
                return None
            found = _calibrate.calibrate(workload)
            _calibrate.save(workload, found, _key)
        _calibrations[workload] = found
        return found


def recalibrate(workload: str) -> Calibration:
    """Measure ``workload`` again, store it, and use it from now on in this process."""
    global _key
    with _lock:
        _key = _calibrate.machine_key()
        found = _calibrate.calibrate(workload)
        _calibrate.save(workload, found, _key)
        _calibrations[workload] = found
        _memo.clear()
        return found


def _decide(workload: str, n: int) -> tuple[Explanation, bool]:
    """The choice, and whether it is final (cannot change as other backends start up)."""
    forced, fixed, ray_connected = _read_settings()
    if forced is not None:
        reason = _unavailable(forced)
        if reason is not None:
            raise BackendUnavailable(
                f"PARTALLY_BACKEND={forced!r} names a backend that is not available here: {reason}"
            )
        return Explanation(n, workload, forced, f"forced by PARTALLY_BACKEND={forced}"), True
    if n < TINY:
        return Explanation(n, workload, "python", f"n < {TINY}: the pure-Python loop"), True
    if fixed:
        name = next(name for name in FIXED_ORDER if _unavailable(name) is None)
        why = f"fixed order {', '.join(FIXED_ORDER)} (PARTALLY_NO_CALIBRATE is set)"
        return Explanation(n, workload, name, why), True
    models = calibration(workload).models
    warm, predicted, not_started = {}, {}, []
    for name, model in models.items():
        if name == "ray" and not ray_connected:
            continue
        warm[name] = model.predict(n)
        predicted[name] = warm[name]
        if not _is_started(name, model.startup):
            predicted[name] += model.startup
            not_started.append(name)
    chosen = _pick(predicted, models, probe=True)
    # Final when the choice would stand with every backend started (then nothing can change it).
    final = _pick(warm, models, probe=False) == chosen
    ordered = {name: predicted[name] for name in sorted(predicted, key=predicted.__getitem__)}
    best = next(iter(ordered))
    if chosen == best:
        why = "least predicted time by the calibrated models"
    elif predicted[chosen] <= predicted[best] * (1 + TIE):
        why = f"within {TIE:.0%} of {best!r}'s predicted time, with less per-call overhead"
    else:
        why = f"least predicted time among the backends available ({best!r} is not)"
    return Explanation(n, workload, chosen, why, ordered, tuple(not_started)), final


def _pick(predicted: dict[str, float], models: dict, *, probe: bool) -> str:
    """``_calibrate.pick`` among the backends that can run here.

    ``probe``: ask each backend (lazily, best first) whether it can run; else assume so (the cache
    key already changes when an optional package is installed or removed).
    """
    ranked = sorted(predicted, key=predicted.__getitem__)
    if probe:
        best = next((name for name in ranked if _unavailable(name) is None), None)
        if best is None:
            return "python"
        bound = predicted[best] * (1 + TIE)
        ranked = [n for n in ranked if predicted[n] <= bound and _unavailable(n) is None]
    return _calibrate.pick({name: predicted[name] for name in ranked}, models)


def choose(workload: str, n: int) -> str:
    """The backend ``compute(n, backend="auto", workload=workload)`` runs on."""
    try:
        return _memo[workload, n]
    except KeyError:
        pass
    with _lock:
        explanation, final = _decide(workload, n)
        _started.add(explanation.backend)  # compute runs it next
        if final:
            if len(_memo) >= _MEMO_MAX:
                _memo.clear()
            _memo[workload, n] = explanation.backend
    return explanation.backend


def explain(n: int, workload: str = "count") -> Explanation:
    """Which backend ``partally.compute(n, workload=workload)`` would run on here, and why.

    Returns an ``Explanation``: ``.backend`` is the choice, ``.reason`` the rule that made it,
    ``.predicted`` the cost model's seconds per backend when the models decided; ``str()`` of it
    reads as one line. Like ``compute``, the first call for a workload may calibrate (about 3 s,
    then cached on this machine).
    """
    workload = _validate.workload(workload)
    n = _validate.size(n, workload)
    with _lock:
        return _decide(workload, n)[0]
