"""Calibration for ``backend="auto"``: time each backend at a few sizes, fit t(n), cache it.

The model of one backend on one workload is t(n) = overhead + n / rate, fitted piecewise: the
calibration times [0, n) at a ladder of sizes (32, 100, 1e3, 1e4, ...) and each pair of adjacent
sizes gives one (overhead, rate) line. One line is not enough on real machines: the C++ backend
runs small ranges on one thread and spawns threads above a block size, so its time jumps 20x
between 1e4 and 1e5 while Numba's persistent pool does not. Between timed sizes the model
interpolates; past the largest it extrapolates the last line (the large-n overhead and rate), below
the smallest the first. A backend's first call in a process (JIT compile or load, pool or context
start) is timed separately as ``startup`` and kept out of the fit.

Bounds: about ``BUDGET_S`` seconds for all backends of one workload (a one-time JIT compile on
the very first run on a machine can add to it; one-time starts are outside the budget). A
backend's ladder stops once one run takes ``ENOUGH_S`` and the time grows with n (so work, not a
stall of a busy machine, dominates), or when the next size would not fit its share of the budget.

Which backends: every available one, except Ray unless a cluster is connected (``RAY_ADDRESS``
set; calibration never starts a local Ray), and except the pool backends running the pure-Python
loop (``threads``, ``processes``) when the measured models prove they cannot win at any n (their
best case is the Python loop's time divided by the cores, plus a hand-off cost): that skip is
recorded with its reason. A backend whose count disagrees with the Python loop is left out.

Cache: one JSON file per machine key (CPU model, cores, GPU name, Python, partally version, which
optional packages are installed) in platformdirs' user cache directory. A corrupt or unreadable
file is ignored (and rewritten by the next calibration); an unwritable directory only means the
models live in memory for this process.
"""

from __future__ import annotations

import bisect
import contextlib
import glob
import hashlib
import importlib.util
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from partally import _timing
from partally.backends import NAMES as BACKEND_NAMES
from partally.backends import get as get_backend
from partally.backends._common import cpu_device, default_workers
from partally.workloads import PRIMES_LIMIT

FORMAT = 1
BUDGET_S = 3.0  # all backends of one workload
ENOUGH_S = 0.01  # a backend's ladder stops once one run takes this long
TIE = 0.10  # predicted times this close are a tie (see ``pick``)
TINY = 32  # below this, compute(auto) runs pure Python without looking at any model
LADDER = (TINY, *(10**k for k in range(2, 13)))
HANDOFF_S = 20e-6  # least cost of handing work to a pool thread or process (measured: 0.3 ms)
GPU_BACKENDS = ("cuda", "numba-cuda")
_PYTHON_LOOP_POOLS = ("threads", "processes")  # run the pure-Python loop, in parallel at best
_OPTIONAL = ("numba", "numba_cuda", "cupy", "ray", "partally._native")

clock = time.perf_counter  # the budget's clock (tests replace it)
_startups: dict[str, float] = {}  # one-time start per backend, as first measured in this process


@dataclass(frozen=True)
class Model:
    """Fitted time of one backend on one workload: t(n) = overhead + n / rate, piecewise.

    ``sizes`` and ``seconds`` are the timed points (median seconds per run, made non-decreasing);
    ``startup`` is the one-time cost of the first call in a process, not part of t(n).
    """

    sizes: tuple[int, ...]
    seconds: tuple[float, ...]
    startup: float = 0.0

    def __post_init__(self) -> None:
        if len(self.sizes) < 2 or len(self.sizes) != len(self.seconds):
            raise ValueError("a model needs at least two timed sizes, one time for each")
        if any(b <= a for a, b in zip(self.sizes, self.sizes[1:])):
            raise ValueError("timed sizes must increase")

    def line(self, k: int) -> tuple[float, float]:
        """(overhead s, rate elements/s) of the line through timed points k and k + 1."""
        (n0, n1), (t0, t1) = self.sizes[k : k + 2], self.seconds[k : k + 2]
        if t1 <= t0:
            return t0, math.inf
        rate = (n1 - n0) / (t1 - t0)
        return t0 - n0 / rate, rate

    def predict(self, n: int) -> float:
        """Predicted seconds for [0, n) once the backend is started."""
        k = min(max(bisect.bisect_right(self.sizes, n) - 1, 0), len(self.sizes) - 2)
        overhead, rate = self.line(k)
        return max(overhead + n / rate, 0.0)

    @property
    def overhead(self) -> float:
        """Seconds per call at small n (the first line's intercept, at least 0)."""
        return max(self.line(0)[0], 0.0)

    @property
    def rate(self) -> float:
        """Elements per second at large n (the last line's slope)."""
        return self.line(len(self.sizes) - 2)[1]


def fit(sizes: Iterable[int], medians: Iterable[float], startup: float = 0.0) -> Model:
    """The model through the median time at each size.

    Times are made non-decreasing in n (each one at most every later one): a larger range never
    takes less, so a lower later time means the earlier one was noise.
    """
    sizes, seconds = list(sizes), [float(t) for t in medians]
    for k in range(len(seconds) - 2, -1, -1):
        seconds[k] = min(seconds[k], seconds[k + 1])
    return Model(tuple(sizes), tuple(seconds), max(float(startup), 0.0))


def pick(times: Mapping[str, float], models: Mapping[str, Model]) -> str:
    """The backend to run, given the time predicted for each: the fastest, but among those within
    ``TIE`` of the fastest, the one with the least per-call overhead (then the first listed).

    Least overhead usually means fewer threads to wake on each call, and on a busy machine a
    backend that synchronises threads on every call can stall for a scheduler tick; a near-tie
    also keeps the choice from flipping on measurement noise.
    """
    bound = min(times.values()) * (1 + TIE)
    return min((name for name in times if times[name] <= bound), key=lambda k: models[k].overhead)


def fastest(models: Mapping[str, Model], n: int) -> str:
    """The backend ``pick`` runs at n, once every backend is started."""
    return pick({name: model.predict(n) for name, model in models.items()}, models)


def crossovers(models: Mapping[str, Model], lo: int, hi: int) -> list[tuple[str, int]]:
    """Who is fastest from where: [(backend, first n), ...] covering [lo, hi], in order of n."""
    if not models:
        return []
    grid = sorted({lo, hi, *(round(10 ** (e / 20)) for e in range(0, 20 * 19) if lo < 10 ** (e / 20) < hi)})
    regions = [(fastest(models, lo), lo)]
    for a, b in zip(grid, grid[1:]):
        winner = fastest(models, b)
        if winner == regions[-1][0]:
            continue
        while b - a > 1:  # bisect to the first n where the new winner leads
            mid = (a + b) // 2
            if fastest(models, mid) == regions[-1][0]:
                a = mid
            else:
                b = mid
        regions.append((fastest(models, b), b))
    return regions


def _size_words(n: int) -> str:
    """3000 -> "3e3", 41234 -> "4.1e4", 32 -> "32"."""
    return str(n) if n < 1000 else f"{n:.2g}".replace("e+0", "e").replace("e+", "e")


def crossover_words(models: Mapping[str, Model], limit: int) -> str:
    """Who auto picks, in words: "python below 32, native 32 to 4.1e4, numba above 4.1e4"."""
    regions = [("python", 0)]
    for name, start in crossovers(models, TINY, limit):
        if name != regions[-1][0]:
            regions.append((name, start))
    if len(regions) == 1:
        return "python at every n"
    words = []
    for k, (name, start) in enumerate(regions):
        if k == 0:
            words.append(f"{name} below {_size_words(regions[1][1])}")
        elif k == len(regions) - 1:
            words.append(f"{name} above {_size_words(start)}")
        else:
            words.append(f"{name} {_size_words(start)} to {_size_words(regions[k + 1][1])}")
    return ", ".join(words)


def limit(workload: str) -> int:
    """The largest n a workload accepts, for the ladder and for crossovers."""
    return PRIMES_LIMIT if workload == "primes" else 10**12


# --- the machine key and the cache file --------------------------------------------------------


def _gpu_name() -> str | None:
    """The NVIDIA GPUs' model names, read from the driver's /proc files (cheap: no CUDA import)."""
    names = []
    for path in sorted(glob.glob("/proc/driver/nvidia/gpus/*/information")):
        try:
            with open(path, encoding="utf-8") as info:
                for line in info:
                    if line.startswith("Model:"):
                        names.append(line.split(":", 1)[1].strip())
        except OSError:
            continue
    return ", ".join(names) or None


def machine_key() -> dict[str, object]:
    """What the models depend on: a change of any of these re-calibrates."""
    from partally import __version__

    installed = []
    for name in _OPTIONAL:
        try:
            if importlib.util.find_spec(name) is not None:
                installed.append(name)
        except (ImportError, ValueError):
            pass
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    return {
        "cpu": cpu_device(),
        "cores": default_workers(),
        "gpu": _gpu_name(),
        "python": f"{platform.python_implementation()} {platform.python_version()}"
        + ("" if gil else " free-threaded"),
        "partally": __version__,
        "installed": installed,
    }


def cache_dir() -> Path:
    """platformdirs' user cache directory for partally (tests point it elsewhere)."""
    import platformdirs

    return platformdirs.user_cache_path("partally")


def cache_path(key: Mapping[str, object]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"dispatch-{digest}.json"


def _read(path: Path, key: Mapping[str, object]) -> dict[str, dict]:
    """The cached workloads in ``path`` for this key; {} if missing, corrupt or for another key."""
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("key") != key:
        return {}
    workloads = data.get("workloads")
    if not isinstance(workloads, dict):
        return {}
    return {name: entry for name, entry in workloads.items() if _parse(entry) is not None}


def _parse(entry: object) -> Calibration | None:
    """A cached workload entry as a ``Calibration``, or None if it is malformed in any way."""
    try:
        models = {
            name: Model(
                tuple(int(n) for n in model["sizes"]),
                tuple(float(t) for t in model["seconds"]),
                float(model["startup"]),
            )
            for name, model in entry["models"].items()
        }
        skipped = {str(name): str(why) for name, why in entry["skipped"].items()}
        if "python" not in models or not all(
            math.isfinite(t) and t >= 0 for m in models.values() for t in (*m.seconds, m.startup)
        ):
            return None
        return Calibration(models, skipped, int(entry["workers"]), float(entry["elapsed_s"]))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def load(workload: str, key: Mapping[str, object] | None = None) -> Calibration | None:
    """The cached calibration of ``workload`` on this machine, or None. Never measures."""
    key = machine_key() if key is None else key
    entry = _read(cache_path(key), key).get(workload)
    return None if entry is None else _parse(entry)


def save(workload: str, calibration: Calibration, key: Mapping[str, object] | None = None) -> bool:
    """Store ``calibration`` beside the other workloads' (atomically); False if it cannot."""
    key = machine_key() if key is None else key
    path = cache_path(key)
    workloads = _read(path, key)
    workloads[workload] = calibration.to_json()
    data = {"format": FORMAT, "key": key, "workloads": workloads}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".dispatch-", suffix=".json", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(data, file, indent=1)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError:
        return False
    return True


# --- measuring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """The fitted models of one workload, and the backends left out with the reason why."""

    models: dict[str, Model]
    skipped: dict[str, str] = field(default_factory=dict)
    workers: int = 1  # the workers the backends were timed with (every core)
    elapsed_s: float = 0.0  # how long the calibration took

    def to_json(self) -> dict[str, object]:
        return {
            "models": {
                name: {"sizes": list(m.sizes), "seconds": list(m.seconds), "startup": m.startup}
                for name, m in self.models.items()
            },
            "skipped": dict(self.skipped),
            "workers": self.workers,
            "elapsed_s": self.elapsed_s,
        }


def _gil_enabled() -> bool:
    return getattr(sys, "_is_gil_enabled", lambda: True)()


def _dominated(name: str, models: Mapping[str, Model], workload: str, workers: int) -> str | None:
    """Why the pool backend ``name`` cannot beat the measured models at any n, or None."""
    speedup = workers if name == "processes" or not _gil_enabled() else 1
    python = models["python"]
    hi = limit(workload)
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
    """Runs per size: 3 for long runs, up to 15 for short, noisy ones."""
    return 3 if estimate > ENOUGH_S / 2 else min(15, max(5, int(2e-3 / max(estimate, 1e-9))))


def _ladder(
    module: ModuleType,
    workload: str,
    workers: int,
    share: float,
    reference: dict[int, int],
) -> Model:
    """Time ``module`` up the size ladder until a run takes ``ENOUGH_S`` or ``share`` s pass.

    The first call (the one-time start) is timed on its own and is not part of the share.
    """

    def run(n: int) -> Callable[[], int]:
        return lambda: module.count(workload, 0, n, workers=workers, seed=0)

    start = clock()
    first = run(LADDER[0])()  # the one-time start: JIT, pool, context
    first_s = clock() - start
    deadline = clock() + share
    sizes, medians = [], []
    for n in LADDER:
        if n > limit(workload):
            break
        if len(sizes) >= 2:
            if medians[-1] >= ENOUGH_S and medians[-1] > 2 * medians[-2]:
                break  # long enough, and growing with n: work, not a stall, dominates
            estimate = fit(sizes[-2:], medians[-2:]).predict(n)
            if clock() + estimate * _repeats(estimate) > deadline:
                break
        else:
            estimate = medians[-1] if medians else first_s
        repeat = _repeats(estimate)
        timing, result = _timing.measure(run(n), repeat)
        if n == LADDER[0] and first != result:
            raise ValueError(f"counted {first}, then {result} in [0, {n})")
        if n in reference and reference[n] != result:
            raise ValueError(f"counted {result} in [0, {n}), the Python loop {reference[n]}")
        reference.setdefault(n, result)
        sizes.append(n)
        medians.append(timing.median)
    # A backend started by an earlier calibration in this process keeps that start's cost.
    startup = max(first_s - medians[0], _startups.get(module.NAME, 0.0))
    _startups.setdefault(module.NAME, startup)
    return fit(sizes, medians, startup)


def candidates(names: Iterable[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """The backends to calibrate here, and those left out with the reason why."""
    chosen, skipped = [], {}
    for name in BACKEND_NAMES if names is None else names:
        if name == "ray" and not os.environ.get("RAY_ADDRESS"):
            skipped[name] = "not timed: no Ray cluster connected (set RAY_ADDRESS)"
            continue
        try:
            reason = get_backend(name).unavailable()
        except Exception as exc:  # a probe must not stop the others  # noqa: BLE001
            reason = f"its availability probe failed: {exc!r}"
        if reason is None:
            chosen.append(name)
        else:
            skipped[name] = f"unavailable: {reason}"
    return chosen, skipped


def calibrate(
    workload: str,
    names: Iterable[str] | None = None,
    *,
    budget: float = BUDGET_S,
    workers: int | None = None,
    modules: Mapping[str, ModuleType] | None = None,
) -> Calibration:
    """Time every available backend (or ``names``) on ``workload`` and fit their models.

    ``modules`` maps names to backend modules instead of the registry (tests use fakes).
    """
    workers = workers or default_workers()
    began = clock()
    if modules is not None:
        names, skipped = list(modules), {}
        get = modules.__getitem__
    else:
        names, skipped = candidates(names)
        get = get_backend
    if "python" not in names:
        names.insert(0, "python")
    pools = [name for name in names if name in _PYTHON_LOOP_POOLS]
    order = ["python", *(n for n in names if n != "python" and n not in pools), *pools]
    models: dict[str, Model] = {}
    reference: dict[int, int] = {}
    starts = 0.0  # one-time starts: outside the budget
    for k, name in enumerate(order):
        if name in pools:
            why = _dominated(name, models, workload, workers)
            if why is not None:
                skipped[name] = why
                continue
        share = (budget - (clock() - began - starts)) / (len(order) - k)
        try:
            models[name] = _ladder(get(name), workload, workers, share, reference)
            starts += models[name].startup
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # a failing backend is left out, never a crash  # noqa: BLE001
            if name == "python":
                raise
            skipped[name] = f"failed during calibration: {exc}"
    return Calibration(models, skipped, workers, clock() - began)
