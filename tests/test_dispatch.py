"""backend="auto": the cost models, their cache, the rules of the choice, and the CLI around them.

Calibration runs against fake backends on a fake clock (exact numbers, no waiting); one test runs
one real calibration with a small budget. Every test runs on a ``Dispatcher`` of its own, with its
cache in a temporary folder (never the user's cache), installed with ``use_dispatcher``.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import importlib
import math
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

import partally
from partally import _timing
from partally._settings import Settings
from partally._machine import cores
from partally.auto import calibration, dispatcher, race, use_dispatcher
from partally.auto.cache import CalibrationCache, machine_key
from partally.auto.calibration import Calibration, calibrate, candidates
from partally.auto.dispatcher import FIXED_ORDER, Dispatcher
from partally.auto.models import Model, crossover_words, crossovers, fastest, fit
from partally.backends import Backend, get, names, unregister
from partally.backends import register as register_backend
from partally.cli import main
from partally.cli.auto import print_models
from partally.cli.compute import describe_choice
from partally.workloads import BUILTINS
from reference import count_range

COUNT, PRIMES, PI = BUILTINS["count"], BUILTINS["primes"], BUILTINS["pi"]
KEY = machine_key()
dispatcher_module = importlib.import_module("partally.auto.dispatcher")  # `dispatcher` is a function


def never(*args, **kwargs):
    pytest.fail("calibrated, but must not have")


def start(
    directory: Path,
    *,
    calibrate: Callable[..., Calibration] = calibration.calibrate,
    settings: Settings | None = None,
    key: dict | None = None,
) -> Dispatcher:
    """What a new process does: a dispatcher of its own over the cache in ``directory``, installed
    as partally's. ``settings`` None: read from the environment on first use, as in a process."""
    made = Dispatcher(
        cache=CalibrationCache(directory, key=KEY if key is None else key),
        settings=settings,
        calibrate=calibrate,
    )
    use_dispatcher(made)
    return made


@pytest.fixture(autouse=True)
def fresh(monkeypatch, tmp_path):
    """A private cache directory, no dispatch settings in the environment, no remembered state."""
    for name in ("PARTALLY_BACKEND", "PARTALLY_NO_CALIBRATE", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    # Anything that would fall back on the user cache (a default CalibrationCache) lands here.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    start(tmp_path / "cache")
    yield tmp_path / "cache"
    use_dispatcher(None)


@pytest.fixture
def register():
    """``register(name, factory)``: a backend in partally's registry for this test only."""
    added = []

    def add(name: str, factory: Callable[[], Backend]) -> None:
        register_backend(name, factory)
        added.append(name)

    yield add
    for name in added:
        unregister(name)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    """A clock that only fake backends move, for both the budget and ``measure``."""
    fake = FakeClock()
    monkeypatch.setattr(calibration, "clock", fake)
    monkeypatch.setattr(_timing, "time", SimpleNamespace(perf_counter=fake))
    return fake


class Timed(Backend):
    """A backend whose ``count`` takes exactly overhead + n / rate on ``clock`` (and ``startup``
    more on its first call); ``wrong`` counts one too many."""

    has_startup = True

    def __init__(self, clock, name, overhead, rate, startup=0.0, wrong=False):
        self.name = name
        self.clock, self.overhead, self.rate, self.startup, self.wrong = (
            clock, overhead, rate, startup, wrong
        )
        self.calls = 0

    @property
    def started(self) -> bool:
        return self.calls > 0

    def run(self, workload, lo, hi, *, workers, seed, progress=None):
        self.clock.now += self.overhead + (hi - lo) / self.rate
        self.clock.now += 0.0 if self.started else self.startup
        self.calls += 1
        return hi - lo + (1 if self.wrong else 0)


class TimedPool(Timed):
    """A pool running the pure-Python loop (like ``processes``): skipped where it cannot win."""

    runs_python = True


def linear(overhead, rate, sizes=(32, 100, 1000, 10**4)):
    return fit(sizes, [overhead + n / rate for n in sizes])


class Calibrations(list):
    """The names of the workloads the fake calibration measured, in order."""

    def __init__(self, directory: Path, calibrate: Callable[..., Calibration]) -> None:
        super().__init__()
        self.directory, self.calibrate = directory, calibrate

    def start(self, directory: Path | None = None, key: dict | None = None) -> Dispatcher:
        """A new process: a new dispatcher, measuring with the same fixed models."""
        return start(
            directory or self.directory, calibrate=self.calibrate, settings=Settings(), key=key
        )


@pytest.fixture
def calibrations(fresh):
    """Measuring replaced with fixed models; the list of workloads measured (its ``start()`` is a
    new process)."""
    models = {
        "python": linear(1e-6, 1e7),  # python below 102, native to 1.7e4, numba above
        "native": linear(1e-5, 1e9),
        "numba": linear(2e-5, 4e9),
    }

    def fake(workload, names=None, **_):
        measured.append(workload.name)
        return Calibration(dict(models), {"threads": "not timed: cannot beat"}, 2, 0.1)

    measured = Calibrations(fresh, fake)
    measured.start()
    return measured


# --- the model -------------------------------------------------------------------------------


def test_fit_recovers_an_exact_line():
    model = linear(2.5e-6, 4e8)
    for k in range(len(model.sizes) - 1):
        overhead, rate = model.line(k)
        assert overhead == pytest.approx(2.5e-6, rel=1e-9)
        assert rate == pytest.approx(4e8, rel=1e-9)
    assert model.overhead == pytest.approx(2.5e-6, rel=1e-9)
    assert model.rate == pytest.approx(4e8, rel=1e-9)
    for n in (0, 32, 500, 10**4, 10**9):  # inside, below and past the timed sizes
        assert model.predict(n) == pytest.approx(2.5e-6 + n / 4e8, rel=1e-9)


def test_fit_is_piecewise_between_regimes():
    # One thread below 1e4, threads started above: a jump the single line cannot follow.
    model = fit([100, 10**4, 10**5, 10**6], [1e-6, 5e-6, 100e-6, 300e-6])
    assert model.predict(10**4) == pytest.approx(5e-6)
    assert model.predict(10**5) == pytest.approx(100e-6)
    assert model.predict(55_000) == pytest.approx(5e-6 + 45_000 * 95e-6 / 90_000)
    assert model.rate == pytest.approx(900_000 / 200e-6)  # the last line: large n
    assert model.predict(10**7) == pytest.approx(300e-6 + 9 * 10**6 * 200e-6 / 900_000)


def test_fit_makes_times_non_decreasing():
    model = fit([32, 100, 1000], [9e-6, 2e-6, 3e-6])  # a stall at 32: noise, not cost
    assert model.seconds == (2e-6, 2e-6, 3e-6)
    assert model.line(0) == (2e-6, math.inf)
    assert model.predict(50) == 2e-6


def test_model_needs_two_increasing_sizes():
    with pytest.raises(ValueError):
        Model((100,), (1e-6,))
    with pytest.raises(ValueError):
        Model((100, 100), (1e-6, 2e-6))


def test_crossover_of_two_lines():
    models = {"python": fit([1, 10**6], [1e-6, 1.0]), "native": linear(1e-3, 1e9, (1, 10**6))}
    # Equal at n = 1e-3 / (1e-6 - 1e-9) = 1001; native, with more overhead, must be 10% faster:
    # n / 1e6 = 1.1 * (1e-3 + n / 1e9)  at  n = 1.1e-3 / (1e-6 - 1.1e-9) = 1101.2...
    assert crossovers(models, 1, 10**6) == [("python", 1), ("native", 1102)]
    assert crossover_words(models, 10**6) == "python below 1.1e3, native above 1.1e3"


def test_crossover_words_with_three_regions():
    models = {
        "python": fit([1, 10**6], [0.0, 1.0]),
        "native": linear(1e-5, 1e8, (1, 10**12)),
        "numba": linear(1e-3, 1e10, (1, 10**12)),
    }
    words = crossover_words(models, 10**12)
    assert words.startswith("python below 32, native 32 to ")
    # 1.1 * (1e-3 + n/1e10) = 1e-5 + n/1e8  at  n = 1.09e-3 / (1e-8 - 1.1e-10) = 110212.3...
    assert words.endswith("numba above 1.1e5")


# --- calibration on fakes ----------------------------------------------------------------------


def test_calibration_fits_fakes_exactly_and_skips_a_pool_that_cannot_win(clock):
    fakes = {
        "python": Timed(clock, "python", 1e-6, 1e7),
        "native": Timed(clock, "native", 5e-6, 1e9, startup=0.25),
        "processes": TimedPool(clock, "processes", 3e-4, 2e7),
    }
    found = calibrate(COUNT, backends=fakes, workers=2)
    assert set(found.models) == {"python", "native"}
    assert "cannot beat" in found.skipped["processes"]
    assert fakes["processes"].calls == 0  # skipped before it was timed at all
    native = found.models["native"]
    assert native.startup == pytest.approx(0.25)
    assert native.overhead == pytest.approx(5e-6)
    assert native.rate == pytest.approx(1e9)
    assert found.models["python"].rate == pytest.approx(1e7)
    # Each ladder stops once a run takes ENOUGH_S (10 ms) and grows with n.
    assert found.models["python"].sizes[-1] == 10**5
    assert native.sizes[-1] == 10**7


def test_calibration_keeps_a_pool_that_can_win(clock):
    fakes = {
        "python": Timed(clock, "python", 1e-6, 1e7),
        "processes": TimedPool(clock, "processes", 3e-4, 2e7),
    }
    found = calibrate(COUNT, backends=fakes, workers=2)
    assert set(found.models) == {"python", "processes"}
    assert fastest(found.models, 10**9) == "processes"
    assert fastest(found.models, 100) == "python"


def test_calibration_stays_within_its_budget(clock):
    fakes = {
        "python": Timed(clock, "python", 1e-6, 1e5),
        "slow": Timed(clock, "slow", 1e-3, 3e4, startup=2.0),
    }
    found = calibrate(PI, backends=fakes, budget=0.5)
    starts = sum(model.startup for model in found.models.values())
    assert found.elapsed_s - starts <= 0.5
    assert starts == pytest.approx(2.0)
    assert len(found.models["slow"].sizes) >= 2


def test_calibration_leaves_out_a_backend_that_miscounts(clock):
    fakes = {
        "python": Timed(clock, "python", 1e-6, 1e7),
        "native": Timed(clock, "native", 1e-6, 1e9, wrong=True),
    }
    found = calibrate(COUNT, backends=fakes)
    assert set(found.models) == {"python"}
    assert "failed during calibration" in found.skipped["native"]


def test_ray_is_not_timed_without_a_cluster():
    if "ray" not in names():
        pytest.skip("no ray backend registered")
    chosen, skipped = candidates(COUNT, ["python", "ray"])
    assert chosen == ["python"]
    assert "RAY_ADDRESS" in skipped["ray"]


# --- the cache ---------------------------------------------------------------------------------


def test_cache_round_trip(fresh):
    found = Calibration({"python": linear(1e-6, 1e6), "native": linear(1e-5, 1e9)}, {"x": "y"}, 2, 1.5)
    cache = CalibrationCache(fresh, key=KEY)
    assert cache.save("pi", found) is None
    assert cache.path.parent == fresh
    assert cache.load("pi") == found
    assert cache.load("primes") is None
    assert cache.save("primes", found) is None  # a second workload joins the first
    assert cache.load("pi") == found
    assert CalibrationCache(fresh, key=KEY).load("primes") == found  # as another process reads it


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        b"\xff\xfe\x00",
        "[]",
        '{"format": 1, "key": null, "workloads": {}}',
        "KEY_OK_BAD_MODEL",
    ],
)
def test_corrupt_cache_is_ignored_and_rewritten(fresh, calibrations, content):
    cache = CalibrationCache(fresh, key=KEY)
    path = cache.path
    path.parent.mkdir(parents=True)
    if content == "KEY_OK_BAD_MODEL":
        bad = {"models": {"python": {"sizes": [1], "seconds": ["x"], "startup": 0}}, "skipped": {}}
        content = json.dumps({"format": 1, "key": KEY, "workloads": {"pi": bad}})
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert cache.load("pi") is None
    assert dispatcher().choose(PI, 10**6) == "numba"
    assert calibrations == ["pi"]
    assert json.loads(path.read_text())["workloads"]["pi"]["models"]["numba"]["sizes"][0] == 32


def test_cached_models_are_used_without_measuring(calibrations):
    dispatcher().choose(PI, 10**6)
    calibrations.start()  # a new process
    assert dispatcher().choose(PI, 10**6) == "numba"
    assert calibrations == ["pi"]


def test_a_changed_machine_key_recalibrates(calibrations):
    dispatcher().choose(PI, 10**6)
    calibrations.start(key={**KEY, "partally": "9.9"})
    dispatcher().choose(PI, 10**6)
    assert calibrations == ["pi", "pi"]


def test_an_unwritable_cache_is_no_crash(tmp_path, calibrations):
    (tmp_path / "file").write_text("")
    chooser = calibrations.start(directory=tmp_path / "file" / "cache")
    assert chooser.choose(PI, 10**6) == "numba"
    assert chooser.cache.save("pi", chooser.calibration(PI)) is not None
    found, problem = chooser.recalibrate(PI)
    assert problem is not None and "numba" in found.models


def test_machine_key_names_what_the_models_depend_on():
    key = machine_key()
    assert {"cpu", "cores", "gpu", "python", "partally"} <= set(key)
    assert key["partally"] == partally.__version__


def test_the_default_cache_is_the_user_cache(fresh):
    """Without a directory the cache is platformdirs' user cache (here XDG_CACHE_HOME, a tmp)."""
    assert CalibrationCache(key=KEY).path.parent == fresh.parent / "user-cache" / "partally"


# --- the rules of the choice -------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 31])
def test_tiny_n_runs_python_without_measuring(fresh, n):
    chooser = start(fresh, calibrate=never)
    assert chooser.choose(PI, n) == "python"
    assert partally.explain(n, "pi").backend == "python"


def test_models_pick_the_least_predicted_time(calibrations):
    chooser = dispatcher()
    assert chooser.choose(PI, 101) == "python"  # native is faster, but not by 10%
    assert chooser.choose(PI, 102) == "native"
    assert chooser.choose(PI, 10**4) == "native"
    assert chooser.choose(PI, 2 * 10**4) == "numba"
    assert chooser.choose(PI, 10**9) == "numba"


def test_a_decision_is_remembered(calibrations):
    chooser = dispatcher()
    assert chooser.choose(PI, 10**9) == "numba"
    chooser.calibration(PI).models["native"] = linear(1e-5, 1e12)  # native would win now
    assert chooser.explain(PI, 10**9).backend == "native"  # explain decides afresh ...
    assert chooser.choose(PI, 10**9) == "numba"  # ... choose remembers its decision
    chooser.recalibrate(PI)  # new models: the remembered decisions go
    assert calibrations == ["pi", "pi"]
    assert chooser.choose(PI, 10**9) == "numba"


class Lazy(Backend):
    """A backend with a one-time start that has not happened yet (until ``started`` is set)."""

    name = "lazy"
    has_startup = True

    def __init__(self) -> None:
        self.is_started = False

    @property
    def started(self) -> bool:
        return self.is_started

    def run(self, workload, lo, hi, *, workers, seed, progress=None):
        return workload.run_range(lo, hi, seed)


def test_a_backend_not_started_pays_its_start(register, calibrations):
    register("lazy", Lazy)
    chooser = dispatcher()
    models = chooser.calibration(PI).models
    numba = models.pop("numba")  # numba's models, on a backend that has not started
    models["lazy"] = Model(numba.sizes, numba.seconds, startup=0.5)
    explanation = partally.explain(10**6, "pi")
    assert explanation.backend == "native"
    assert explanation.not_started == ("lazy",)
    assert explanation.predicted["lazy"] > 0.5
    assert list(explanation.predicted) == sorted(explanation.predicted, key=explanation.predicted.get)
    assert chooser.choose(PI, 10**6) == "native"
    get("lazy").is_started = True  # not remembered: lazy could win once started, and now it does
    assert chooser.choose(PI, 10**6) == "lazy"


def test_a_near_tie_goes_to_the_least_overhead(calibrations):
    chooser = dispatcher()
    models = chooser.calibration(PI).models
    models["numba"] = linear(2e-5, 1e9)  # 1e-5 slower than native at every n
    assert chooser.choose(PI, 10**6) == "native"
    models["native"] = linear(1e-5, 0.95e9)
    explanation = partally.explain(10**9, "pi")
    assert explanation.backend == "native"  # numba is 5% faster: a tie
    assert "within 10%" in explanation.reason
    models["native"] = linear(1e-5, 0.8e9)
    assert partally.explain(10**9, "pi").backend == "numba"


def test_auto_races_near_tied_backends_and_keeps_the_fastest(calibrations):
    """Fault 8 (issue 18): where the models were wrong near a crossover (here: python predicted
    as fast as native at n = 101, where it is ~40x slower), auto kept the wrong choice forever.
    Now its own calls at that n are shared in turn and timed, and the fastest by median stays;
    each answer is exact, and once settled a call is a lookup again (nothing timed)."""
    chooser = dispatcher()
    chooser.calibration(PI).models["numba"] = linear(1e-3, 1e9)  # far off: not raced
    assert chooser.choose(PI, 101) == "python"  # the models' choice
    ran = []
    for _ in range(2):
        name, timed = chooser.dispatch(PI, 101)
        ran.append(name)
        assert partally.compute(101, backend=name, workload="pi") == count_range("pi", 0, 101)
        timed(1e-3 if name == "python" else 2e-5)  # as measured: python the slower
    assert ran == ["python", "native"]  # in turn, the models' choice first
    samples = race.Race.among(("a",), 2e-5).samples
    for _ in range(2 * samples):
        name, timed = chooser.dispatch(PI, 101)
        ran.append(name)
        if timed is not None:
            timed(1e-3 if name == "python" else 2e-5)
    assert ran.count("python") == samples  # the same number of timings each, then native
    assert chooser.dispatch(PI, 101)[0] == "native"
    assert chooser.choose(PI, 101) == "native"
    explanation = partally.explain(101, "pi")
    assert explanation.backend == "native"
    assert "raced in turn" in explanation.reason and "python 1 ms" in explanation.reason


def test_auto_settles_on_the_fastest_by_its_real_calls(calibrations):
    """The same through ``compute`` with real backends: native is ~40x faster than the Python
    loop at n = 101 however busy the machine, so the race must end on native; ``settle`` (a
    bench's warm-up) calls auto exactly until then, and gives back every result."""
    chooser = dispatcher()
    chooser.calibration(PI).models["numba"] = linear(1e-3, 1e9)
    results = chooser.settle(PI, 101, lambda: partally.compute(101, workload="pi"))
    samples = race.Race.among(("a",), 2e-5).samples
    assert results == [count_range("pi", 0, 101)] * 2 * samples  # python and native, in turn
    assert not chooser.racing(PI, 101)
    assert chooser.choose(PI, 101) == "native"
    assert chooser.settle(PI, 101, lambda: 7) == [7]  # settled: one call, nothing more


def test_a_race_is_only_among_near_ties_and_never_for_long_calls():
    assert race.contenders({"a": 1e-3, "b": 1.9e-3, "c": 2.1e-3}, "a") == ("a", "b")
    assert race.contenders({"b": 1.9e-3, "a": 1e-3, "c": 1.5e-3}, "b") == ("b", "a", "c")
    assert race.contenders({"a": 2.0, "b": 2.1}, "a") == ("a",)  # calls over MAX_S: no race


def test_a_race_keeps_the_models_choice_within_noise():
    close = race.Race.among(("a", "b"), 1e-3)
    for _ in range(close.samples):
        close.add(close.next(), 1.0)
        close.add(close.next(), 0.97)  # b 3% faster: noise, a stays
    assert close.done and close.winner() == "a"
    clear = race.Race.among(("a", "b"), 1.0)
    assert clear.samples < close.samples  # long calls are less noisy: fewer timings
    for _ in range(clear.samples):
        clear.add("a", 1.0)
        clear.add("b", 0.5)
        clear.add("b", 9.0)  # a timing past the samples wanted is not kept
    assert clear.winner() == "b" and clear.medians() == {"b": 0.5, "a": 1.0}


def test_concurrent_calls_during_a_race_are_exact(calibrations):
    chooser = dispatcher()
    chooser.calibration(PI).models["numba"] = linear(1e-3, 1e9)
    expected = count_range("pi", 0, 101)
    with ThreadPoolExecutor(4) as pool:
        counts = list(pool.map(lambda _: partally.compute(101, workload="pi"), range(80)))
    assert counts == [expected] * 80
    assert chooser.choose(PI, 101) == "native"


def test_a_calibration_from_a_busy_machine_is_measured_again_once_quiet(monkeypatch, calibrations):
    busy = Calibration({"python": linear(1e-6, 1e7), "native": linear(1e-5, 1e9)}, load=9.0 * cores())
    CalibrationCache(calibrations.directory, key=KEY).save("pi", busy)
    monkeypatch.setattr(dispatcher_module, "load_average", lambda: 8.0 * cores())
    assert calibrations.start().calibration(PI) == busy  # still busy: the cached one stands
    assert calibrations == []
    monkeypatch.setattr(dispatcher_module, "load_average", lambda: 0.5)
    assert calibrations.start().calibration(PI) != busy  # quiet now: measured again, cached
    assert calibrations == ["pi"]
    assert calibrations.start().calibration(PI).load == 0.0  # the fake's, not the busy one


def test_explain(calibrations):
    explanation = partally.explain(10**9, workload="pi")
    assert isinstance(explanation, partally.Explanation)
    assert explanation.backend == "numba" == dispatcher().choose(PI, 10**9)
    assert set(explanation.predicted) == {"python", "native", "numba"}
    assert "'numba' for pi at n = 1000000000" in str(explanation)
    assert partally.explain(10**9, workload=PI) == explanation  # a Workload object as well
    with pytest.raises(ValueError, match="workload"):
        partally.explain(10, workload="fib")
    with pytest.raises(TypeError):
        partally.explain(1.5)


def test_partally_backend_forces_a_backend(monkeypatch, fresh):
    monkeypatch.setenv("PARTALLY_BACKEND", "threads")
    assert Settings.from_environment(names()) == Settings(forced="threads")
    chooser = start(fresh, calibrate=never)  # its settings: read from the environment
    assert chooser.choose(PI, 5) == "threads"
    assert chooser.choose(PRIMES, 10**6) == "threads"
    assert "PARTALLY_BACKEND" in partally.explain(10**6).reason
    assert partally.compute(1000, workload="primes") == 168


def test_partally_backend_unknown_lists_the_names(monkeypatch):
    monkeypatch.setenv("PARTALLY_BACKEND", "gpu")
    with pytest.raises(ValueError, match="'gpu'") as error:
        partally.compute(100)
    for name in names():
        assert repr(name) in str(error.value)


class Unbuilt(Backend):
    name = "unbuilt"

    def unavailable(self):
        return "not built here"

    def run(self, workload, lo, hi, *, workers, seed, progress=None):
        raise AssertionError("an unavailable backend ran")


def test_partally_backend_unavailable(monkeypatch, register):
    register("unbuilt", Unbuilt)
    monkeypatch.setenv("PARTALLY_BACKEND", "unbuilt")
    with pytest.raises(partally.BackendUnavailable, match="not built here"):
        partally.compute(100)


def test_partally_no_calibrate_takes_the_fixed_order(monkeypatch, fresh):
    monkeypatch.setenv("PARTALLY_NO_CALIBRATE", "1")
    chooser = start(fresh, calibrate=never)
    expected = next(
        name for name in FIXED_ORDER
        if get(name).unavailable() is None and get(name).supports(PI) is None
    )
    assert chooser.choose(PI, 10**6) == expected
    assert chooser.choose(PI, 10) == "python"
    assert partally.compute(10**5, workload="pi") == 78607


def test_auto_equals_the_reference_after_a_real_calibration(fresh):
    """The one real calibration in the tests: every workload, on a small budget."""
    chooser = start(fresh, calibrate=functools.partial(calibration.calibrate, budget=0.3))
    for workload in BUILTINS.values():
        for n in (0, 31, 32, 100, 1000, 12_345, 10**5):
            assert partally.compute(n, workload=workload.name) == count_range(workload.name, 0, n)
        assert chooser.calibration(workload).models["python"].sizes[0] == 32
    assert partally.compute(10**6, workload="primes") == 78498
    assert partally.compute(10**6, workload="pi") == 785806
    # cached, unless its timings disagreed (a busy machine): then kept for this process only
    files = list(fresh.iterdir())
    cached = set(json.loads(files[0].read_text())["workloads"]) if files else set()
    for workload in BUILTINS.values():
        assert workload.name in cached or chooser.calibration(workload).noisy, workload.name


# --- the command line --------------------------------------------------------------------------


def _printed(function, *args) -> str:
    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, width=200)
    function(console, *args)
    return out.getvalue()


def test_info_never_calibrates(fresh):
    start(fresh, calibrate=never)
    text = _printed(print_models)
    assert "not calibrated; run `partally calibrate`" in text


def test_info_shows_models_and_crossovers(calibrations):
    dispatcher().choose(PI, 10**6)
    calibrations.start()  # a new process: the models come from the cache
    text = _printed(print_models)
    assert "pi: python below 102, native 102 to 1.7e4, numba above 1.7e4" in text
    assert "threads (cannot win)" in text
    assert "count, primes: not calibrated" in text
    assert calibrations == ["pi"]


def test_calibrate_command_remeasures(monkeypatch, capsys, fresh, calibrations):
    monkeypatch.setattr("rich.console.Console.is_terminal", False)
    assert main(["calibrate", "--workload", "pi"]) == 0
    assert main(["calibrate", "--workload", "pi"]) == 0
    assert calibrations == ["pi", "pi"]
    out = capsys.readouterr().out
    assert "numba" in out and "pi: python below" in out
    assert CalibrationCache(fresh, key=KEY).load("pi") is not None


def test_verbose_describes_the_choice(calibrations):
    args = argparse.Namespace(n=10**9, backend="auto", workload=PI)
    assert "'numba' for pi" in describe_choice(args)
    args.backend = "python"
    assert "named" in describe_choice(args)
