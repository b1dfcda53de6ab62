"""backend="auto": the cost models, their cache, the rules of the choice, and the CLI around them.

Calibration runs against fake backends on a fake clock (exact numbers, no waiting); one test runs
one real calibration with a small budget.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import math
from types import SimpleNamespace

import pytest

import partally
from partally import _calibrate, _dispatch, _dispatch_cli, _timing
from partally._calibrate import Calibration, Model, fit
from partally.backends import NAMES, get
from partally.workloads import count_range


@pytest.fixture(autouse=True)
def fresh(monkeypatch, tmp_path):
    """A private cache directory, no dispatch settings in the environment, no remembered state."""
    monkeypatch.setattr(_calibrate, "cache_dir", lambda: tmp_path / "cache")
    for name in ("PARTALLY_BACKEND", "PARTALLY_NO_CALIBRATE", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(_calibrate, "_startups", {})
    _dispatch.reset()
    yield tmp_path / "cache"
    _dispatch.reset()


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    """A clock that only fake backends move, for both the budget and ``measure``."""
    fake = FakeClock()
    monkeypatch.setattr(_calibrate, "clock", fake)
    monkeypatch.setattr(_timing, "time", SimpleNamespace(perf_counter=fake))
    return fake


def fake_backend(clock, name, overhead, rate, startup=0.0, wrong=False):
    """A backend whose ``count`` of ``count`` takes exactly overhead + n / rate on ``clock``."""
    started = []

    def count(workload, lo, hi, *, workers, seed):
        clock.now += overhead + (hi - lo) / rate + (0.0 if started else startup)
        started.append(True)
        return hi - lo + (1 if wrong else 0)

    return SimpleNamespace(
        NAME=name, PARALLEL=True, unavailable=lambda: None, device=lambda: "fake", count=count
    )


def linear(overhead, rate, sizes=(32, 100, 1000, 10**4)):
    return fit(sizes, [overhead + n / rate for n in sizes])


@pytest.fixture
def calibrations(monkeypatch):
    """Replace measuring with fixed models; returns the list of workloads measured."""
    measured = []
    models = {
        "python": linear(1e-6, 1e7),  # python below 102, native to 1.7e4, numba above
        "native": linear(1e-5, 1e9),
        "numba": linear(2e-5, 4e9),
    }

    def calibrate(workload, names=None, **_):
        measured.append(workload)
        return Calibration(dict(models), {"threads": "not timed: cannot beat"}, 2, 0.1)

    monkeypatch.setattr(_calibrate, "calibrate", calibrate)
    monkeypatch.setattr(_dispatch, "_is_started", lambda name, startup: True)
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
    assert _calibrate.crossovers(models, 1, 10**6) == [("python", 1), ("native", 1102)]
    assert _calibrate.crossover_words(models, 10**6) == "python below 1.1e3, native above 1.1e3"


def test_crossover_words_with_three_regions():
    models = {
        "python": fit([1, 10**6], [0.0, 1.0]),
        "native": linear(1e-5, 1e8, (1, 10**12)),
        "numba": linear(1e-3, 1e10, (1, 10**12)),
    }
    words = _calibrate.crossover_words(models, 10**12)
    assert words.startswith("python below 32, native 32 to ")
    # 1.1 * (1e-3 + n/1e10) = 1e-5 + n/1e8  at  n = 1.09e-3 / (1e-8 - 1.1e-10) = 110212.3...
    assert words.endswith("numba above 1.1e5")


# --- calibration on fakes ----------------------------------------------------------------------


def test_calibration_fits_fakes_exactly_and_skips_a_pool_that_cannot_win(clock):
    modules = {
        "python": fake_backend(clock, "python", 1e-6, 1e7),
        "native": fake_backend(clock, "native", 5e-6, 1e9, startup=0.25),
        "processes": fake_backend(clock, "processes", 3e-4, 2e7),
    }
    found = _calibrate.calibrate("count", modules=modules, workers=2)
    assert set(found.models) == {"python", "native"}
    assert "cannot beat" in found.skipped["processes"]
    native = found.models["native"]
    assert native.startup == pytest.approx(0.25)
    assert native.overhead == pytest.approx(5e-6)
    assert native.rate == pytest.approx(1e9)
    assert found.models["python"].rate == pytest.approx(1e7)
    # Each ladder stops once a run takes ENOUGH_S (10 ms) and grows with n.
    assert found.models["python"].sizes[-1] == 10**5
    assert native.sizes[-1] == 10**7


def test_calibration_keeps_a_pool_that_can_win(clock):
    modules = {
        "python": fake_backend(clock, "python", 1e-6, 1e7),
        "processes": fake_backend(clock, "processes", 3e-4, 2e7),
    }
    found = _calibrate.calibrate("count", modules=modules, workers=2)
    assert set(found.models) == {"python", "processes"}
    assert _calibrate.fastest(found.models, 10**9) == "processes"
    assert _calibrate.fastest(found.models, 100) == "python"


def test_calibration_stays_within_its_budget(clock):
    modules = {
        "python": fake_backend(clock, "python", 1e-6, 1e5),
        "slow": fake_backend(clock, "slow", 1e-3, 3e4, startup=2.0),
    }
    found = _calibrate.calibrate("pi", modules=modules, budget=0.5)
    starts = sum(model.startup for model in found.models.values())
    assert found.elapsed_s - starts <= 0.5
    assert starts == pytest.approx(2.0)
    assert len(found.models["slow"].sizes) >= 2


def test_calibration_leaves_out_a_backend_that_miscounts(clock):
    modules = {
        "python": fake_backend(clock, "python", 1e-6, 1e7),
        "native": fake_backend(clock, "native", 1e-6, 1e9, wrong=True),
    }
    found = _calibrate.calibrate("count", modules=modules)
    assert set(found.models) == {"python"}
    assert "failed during calibration" in found.skipped["native"]


def test_ray_is_not_timed_without_a_cluster():
    if "ray" not in NAMES:
        pytest.skip("no ray backend registered")
    names, skipped = _calibrate.candidates(["python", "ray"])
    assert names == ["python"]
    assert "RAY_ADDRESS" in skipped["ray"]


# --- the cache ---------------------------------------------------------------------------------


def test_cache_round_trip(fresh):
    found = Calibration({"python": linear(1e-6, 1e6), "native": linear(1e-5, 1e9)}, {"x": "y"}, 2, 1.5)
    key = _calibrate.machine_key()
    assert _calibrate.save("pi", found, key)
    assert _calibrate.cache_path(key).parent == fresh
    assert _calibrate.load("pi", key) == found
    assert _calibrate.load("primes", key) is None
    assert _calibrate.save("primes", found, key)  # a second workload joins the first
    assert _calibrate.load("pi", key) == found


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
    key = _calibrate.machine_key()
    path = _calibrate.cache_path(key)
    path.parent.mkdir(parents=True)
    if content == "KEY_OK_BAD_MODEL":
        bad = {"models": {"python": {"sizes": [1], "seconds": ["x"], "startup": 0}}, "skipped": {}}
        content = json.dumps({"format": 1, "key": key, "workloads": {"pi": bad}})
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert _calibrate.load("pi", key) is None
    assert _dispatch.choose("pi", 10**6) == "numba"
    assert calibrations == ["pi"]
    assert json.loads(path.read_text())["workloads"]["pi"]["models"]["numba"]["sizes"][0] == 32


def test_cached_models_are_used_without_measuring(calibrations):
    _dispatch.choose("pi", 10**6)
    _dispatch.reset()  # a new process
    assert _dispatch.choose("pi", 10**6) == "numba"
    assert calibrations == ["pi"]


def test_a_changed_machine_key_recalibrates(monkeypatch, calibrations):
    _dispatch.choose("pi", 10**6)
    key = _calibrate.machine_key()
    monkeypatch.setattr(_calibrate, "machine_key", lambda: {**key, "partally": "9.9"})
    _dispatch.reset()
    _dispatch.choose("pi", 10**6)
    assert calibrations == ["pi", "pi"]


def test_an_unwritable_cache_is_no_crash(monkeypatch, tmp_path, calibrations):
    (tmp_path / "file").write_text("")
    monkeypatch.setattr(_calibrate, "cache_dir", lambda: tmp_path / "file" / "cache")
    assert _dispatch.choose("pi", 10**6) == "numba"
    assert not _calibrate.save("pi", _dispatch.calibration("pi"))


def test_machine_key_names_what_the_models_depend_on():
    key = _calibrate.machine_key()
    assert {"cpu", "cores", "gpu", "python", "partally"} <= set(key)
    assert key["partally"] == partally.__version__


# --- the rules of the choice -------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 31])
def test_tiny_n_runs_python_without_measuring(monkeypatch, n):
    monkeypatch.setattr(_calibrate, "calibrate", pytest.fail)
    assert _dispatch.choose("pi", n) == "python"
    assert partally.explain(n, "pi").backend == "python"


def test_models_pick_the_least_predicted_time(calibrations):
    assert _dispatch.choose("pi", 101) == "python"  # native is faster, but not by 10%
    assert _dispatch.choose("pi", 102) == "native"
    assert _dispatch.choose("pi", 10**4) == "native"
    assert _dispatch.choose("pi", 2 * 10**4) == "numba"
    assert _dispatch.choose("pi", 10**9) == "numba"


def test_a_decision_is_remembered(monkeypatch, calibrations):
    assert _dispatch.choose("pi", 10**9) == "numba"
    monkeypatch.setattr(_dispatch, "_decide", pytest.fail)
    assert _dispatch.choose("pi", 10**9) == "numba"


def test_a_backend_not_started_pays_its_start(monkeypatch, calibrations):
    models = _dispatch.calibration("pi").models
    models["numba"] = Model(models["numba"].sizes, models["numba"].seconds, startup=0.5)
    monkeypatch.setattr(_dispatch, "_is_started", lambda name, startup: startup < 1e-3)
    explanation = partally.explain(10**6, "pi")
    assert explanation.backend == "native"
    assert explanation.not_started == ("numba",)
    assert explanation.predicted["numba"] > 0.5
    assert list(explanation.predicted) == sorted(explanation.predicted, key=explanation.predicted.get)
    assert _dispatch.choose("pi", 10**6) == "native"
    assert ("pi", 10**6) not in _dispatch._memo  # numba could win once started


def test_a_near_tie_goes_to_the_least_overhead(monkeypatch, calibrations):
    models = _dispatch.calibration("pi").models
    models["numba"] = linear(2e-5, 1e9)  # 1e-5 slower than native at every n
    assert _dispatch.choose("pi", 10**6) == "native"
    models["native"] = linear(1e-5, 0.95e9)
    explanation = partally.explain(10**9, "pi")
    assert explanation.backend == "native"  # numba is 5% faster: a tie
    assert "within 10%" in explanation.reason
    models["native"] = linear(1e-5, 0.8e9)
    assert partally.explain(10**9, "pi").backend == "numba"


def test_explain(calibrations):
    explanation = partally.explain(10**9, workload="pi")
    assert isinstance(explanation, partally.Explanation)
    assert explanation.backend == "numba" == _dispatch.choose("pi", 10**9)
    assert set(explanation.predicted) == {"python", "native", "numba"}
    assert "'numba' for pi at n = 1000000000" in str(explanation)
    with pytest.raises(ValueError, match="workload"):
        partally.explain(10, workload="fib")
    with pytest.raises(TypeError):
        partally.explain(1.5)


def test_partally_backend_forces_a_backend(monkeypatch):
    monkeypatch.setenv("PARTALLY_BACKEND", "threads")
    monkeypatch.setattr(_calibrate, "calibrate", pytest.fail)
    assert _dispatch.choose("pi", 5) == "threads"
    assert _dispatch.choose("primes", 10**6) == "threads"
    assert "PARTALLY_BACKEND" in partally.explain(10**6).reason
    assert partally.compute(1000, workload="primes") == 168


def test_partally_backend_unknown_lists_the_names(monkeypatch):
    monkeypatch.setenv("PARTALLY_BACKEND", "gpu")
    with pytest.raises(ValueError, match="'gpu'") as error:
        partally.compute(100)
    for name in NAMES:
        assert repr(name) in str(error.value)


def test_partally_backend_unavailable(monkeypatch):
    monkeypatch.setenv("PARTALLY_BACKEND", "native")
    monkeypatch.setattr(get("native"), "unavailable", lambda: "not built here")
    with pytest.raises(partally.BackendUnavailable, match="not built here"):
        partally.compute(100)


def test_partally_no_calibrate_takes_the_fixed_order(monkeypatch):
    monkeypatch.setenv("PARTALLY_NO_CALIBRATE", "1")
    monkeypatch.setattr(_calibrate, "calibrate", pytest.fail)
    expected = next(name for name in _dispatch.FIXED_ORDER if get(name).unavailable() is None)
    assert _dispatch.choose("pi", 10**6) == expected
    assert _dispatch.choose("pi", 10) == "python"
    assert partally.compute(10**5, workload="pi") == 78607


def test_auto_equals_the_reference_after_a_real_calibration(monkeypatch, fresh):
    """The one real calibration in the tests: every workload, on a small budget."""
    monkeypatch.setattr(
        _calibrate, "calibrate", functools.partial(_calibrate.calibrate, budget=0.3)
    )
    for workload in ("count", "primes", "pi"):
        for n in (0, 31, 32, 100, 1000, 12_345, 10**5):
            assert partally.compute(n, workload=workload) == count_range(workload, 0, n)
        assert _dispatch.calibration(workload).models["python"].sizes[0] == 32
    assert partally.compute(10**6, workload="primes") == 78498
    assert partally.compute(10**6, workload="pi") == 785806
    assert sorted(json.loads(next(fresh.iterdir()).read_text())["workloads"]) == [
        "count",
        "pi",
        "primes",
    ]


# --- the command line --------------------------------------------------------------------------


def _printed(function, *args) -> str:
    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, width=200)
    function(console, *args)
    return out.getvalue()


def test_info_never_calibrates(monkeypatch):
    monkeypatch.setattr(_calibrate, "calibrate", pytest.fail)
    text = _printed(_dispatch_cli.print_models)
    assert "not calibrated; run `partally calibrate`" in text


def test_info_shows_models_and_crossovers(calibrations):
    _dispatch.choose("pi", 10**6)
    _dispatch.reset()
    text = _printed(_dispatch_cli.print_models)
    assert "pi: python below 102, native 102 to 1.7e4, numba above 1.7e4" in text
    assert "threads (cannot win)" in text
    assert "count, primes: not calibrated" in text


def test_calibrate_command_remeasures(monkeypatch, capsys, calibrations):
    monkeypatch.setattr("rich.console.Console.is_terminal", False)
    _dispatch_cli._calibrate_command(argparse.Namespace(workload="pi"))
    _dispatch_cli._calibrate_command(argparse.Namespace(workload="pi"))
    assert calibrations == ["pi", "pi"]
    out = capsys.readouterr().out
    assert "numba" in out and "pi: python below" in out


def test_verbose_describes_the_choice(calibrations):
    args = argparse.Namespace(n=10**9, backend="auto", workload="pi")
    assert "'numba' for pi" in _dispatch_cli.describe_choice(args)
    args.backend = "python"
    assert "named" in _dispatch_cli.describe_choice(args)
