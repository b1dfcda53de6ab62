"""``partally bench``: argument checks, verification of every result, the budget, JSON and plot."""

import json
import sys
import time
import types

import pytest

from partally import _format
from partally._settings import Settings
from partally.auto import use_dispatcher
from partally.auto.cache import CalibrationCache
from partally.auto.calibration import Calibration
from partally.auto.dispatcher import Dispatcher
from partally.auto.models import fit
from partally.backends import Backend, unregister
from partally.backends import register as register_backend
from partally.bench import plot as bench_plot
from partally.bench import report as bench_report
from partally.bench import run as bench_run
from partally.bench.run import Bench, Measurement
from partally.cli import main
from partally.workloads import BUILTINS

PREFIX = "partally bench: error:"
from partally.cli import bench as bench_cli_module
from partally.workloads import BUILTINS

COUNT, PRIMES, PI = BUILTINS["count"], BUILTINS["primes"], BUILTINS["pi"]
FAST = "python,threads"  # no pool to start, no JIT: keeps these tests fast


def _linear(overhead, rate, sizes=(32, 100, 1000, 10**4)):
    return fit(sizes, [overhead + n / rate for n in sizes])


@pytest.fixture(autouse=True)
def dispatcher(monkeypatch, tmp_path):
    """``auto`` on a dispatcher of the test's own: its cache in a tmp folder, fixed models (python
    below about 120, threads above), no settings from the environment. Returns the workloads it
    calibrated."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    calibrated = []

    def calibrate(workload, names=None, **_):
        calibrated.append(workload.name)
        models = {"python": _linear(1e-6, 1e6), "threads": _linear(1e-4, 1e7)}  # 5x apart at 1e3: no race
        return Calibration(models, {}, 2, 0.1)

    use_dispatcher(
        Dispatcher(
            cache=CalibrationCache(tmp_path / "cache", key={"test": "bench"}),
            settings=Settings(),
            calibrate=calibrate,
        )
    )
    yield calibrated
    use_dispatcher(None)


@pytest.fixture
def register():
    """``register(name, factory)``: a backend in partally's registry for this test only."""
    added = []

    def add(name, factory):
        register_backend(name, factory)
        added.append(name)

    yield add
    for name in added:
        unregister(name)


@pytest.fixture
def bench_cli(capsys):
    """Run ``partally bench ARGS``: (status, out, err)."""

    def run(*argv):
        status = main(["bench", *argv])
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the bench starts measuring."""

    def forbidden(*args, **kwargs):
        raise AssertionError("the bench started work despite a bad argument")

    monkeypatch.setattr(bench_run, "run_bench", forbidden)


def _measurement(backend, n, seconds, workload="count", status=bench_run.OK):
    return Measurement(workload, backend, n, status, samples=(seconds,) * 3, calls_per_sample=1,
                       result=n, expected=n, reference="n (count counts every i)")


def _bench_of(*measurements, backends=("python", "native")):
    bench = Bench([COUNT], sorted({m.n for m in measurements}), list(backends), {}, 3, 2, 1.0)
    bench.measurements.extend(measurements)
    return bench


# ----------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--backends", "gpu"], "unknown backend 'gpu'"),
        (["--workload", "fibonacci"], "unknown workload 'fibonacci'"),
        (["--sizes", "1e3,ten"], "not a whole number"),
        (["--sizes", "0"], "must be >= 1"),
        (["--sizes", "2**33", "--workload", "primes"], "primes is exact only up to 2**32"),
        (["--repeat", "0"], "--repeat"),
        (["--workers", "two"], "--workers"),
        (["--budget", "-1"], "--budget"),
        (["--json", "/nonexistent-folder/out.json"], "does not exist"),
        (["--plot", "/nonexistent-folder/out.png"], "does not exist"),
        (["--guide", "--sizes", "1e3"], "--guide"),
    ],
)
def test_bad_arguments_exit_2_with_one_line_before_any_work(bench_cli, no_work, argv, message):
    status, out, err = bench_cli(*argv)
    assert status == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{PREFIX} ")
    assert message in lines[0]


def test_a_directory_as_output_is_refused(bench_cli, no_work, tmp_path):
    status, _, err = bench_cli("--json", str(tmp_path))
    assert status == 2 and "is a directory" in err


def test_a_plot_without_an_image_suffix_is_refused(bench_cli, no_work, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib (the plot extra) is not installed")
    status, _, err = bench_cli("--plot", str(tmp_path / "bench.nothing"))
    assert status == 2 and "image format" in err


def test_plot_without_matplotlib_names_the_extra(bench_cli, no_work, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    status, _, err = bench_cli("--plot", str(tmp_path / "bench.png"))
    assert status == 2
    assert 'pip install "partally[plot]"' in err and len(err.strip().splitlines()) == 1


def test_the_partally_command_registers_bench(no_work, capsys):
    assert main(["bench", "--backends", "nope"]) == 2
    assert "unknown backend 'nope'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- verified runs


def test_quick_run_writes_json_with_every_result_verified(bench_cli, dispatcher, tmp_path):
    path = tmp_path / "bench.json"
    status, out, err = bench_cli(
        "--quick", "--sizes", "1e3,3e3", "--backends", FAST + ",auto", "--json", str(path)
    )
    assert status == 0, err
    data = json.loads(path.read_text())
    assert data["schema"] == bench_report.SCHEMA and data["ok"] is True and data["failures"] == 0
    assert {"cpu", "cores_usable", "gpu", "python", "versions"} <= set(data["machine"])
    assert {"partally", "numpy", "numba"} <= set(data["machine"]["versions"])
    assert data["config"]["workloads"] == ["count", "primes", "pi"]
    assert data["config"]["sizes"] == [1000, 3000]
    rows = data["measurements"]
    assert {(r["workload"], r["backend"], r["n"]) for r in rows} == {
        (w, b, n) for w in ("count", "primes", "pi") for b in ("python", "threads", "auto")
        for n in (1000, 3000)
    }
    for row in rows:
        assert row["status"] == "ok", row
        assert row["result"] == row["expected"] is not None
        assert row["reference"]
        assert row["median_s"] > 0 and len(row["samples_s"]) == 3
        assert row["elements_per_s"] == pytest.approx(row["n"] / row["median_s"])
        assert row["speedup_vs_python"] > 0
    # auto ran on this test's dispatcher, and the rows say what it picked
    assert sorted(dispatcher) == ["count", "pi", "primes"]
    # the fixed models' choice (threads), or python where auto's own calls corrected them
    assert {r["chose"] for r in rows if r["backend"] == "auto"} <= {"python", "threads"}
    assert "every result matched its reference" in out
    for workload in ("count", "primes", "pi"):
        assert workload in out


def test_auto_is_timed_after_its_race(bench_cli, dispatcher, tmp_path):
    """Near-tied models (python and threads within 2x at 1e3): auto's first calls there are its
    race; the bench calls it until the race is over, so its samples time one backend, checked."""
    from partally.auto import dispatcher as current

    current().calibration(BUILTINS["count"]).models["threads"] = _linear(1e-6, 1.2e6)
    path = tmp_path / "bench.json"
    status, out, err = bench_cli(
        "--quick", "--workload", "count", "--sizes", "1e3", "--backends", FAST + ",auto",
        "--json", str(path),
    )
    assert status == 0, err
    assert not current().racing(BUILTINS["count"], 1000)
    assert "raced in turn" in current().explain(BUILTINS["count"], 1000).reason
    (auto,) = [r for r in json.loads(path.read_text())["measurements"] if r["backend"] == "auto"]
    assert auto["status"] == "ok" and auto["result"] == 1000
    assert auto["chose"] == current().choose(BUILTINS["count"], 1000) in ("python", "threads")


class Miscounting(Backend):
    """The pure-Python loop, one too many."""

    name = "miscounting"
    family = "Python"
    runs_python = True

    def run(self, workload, lo, hi, *, workers, seed, progress=None):
        return workload.run_range(lo, hi, seed) + 1


def test_a_wrong_backend_is_reported_loudly_and_fails(bench_cli, register, tmp_path):
    register("miscounting", Miscounting)
    path = tmp_path / "bench.json"
    status, out, err = bench_cli(
        "--quick", "--workload", "pi", "--sizes", "1e3", "--backends", "python,miscounting",
        "--json", str(path),
    )
    assert status == 1
    assert "MISMATCH: backend 'miscounting'" in err and "returned 787, expected 786" in err
    assert "WRONG" in out
    rows = json.loads(path.read_text())["measurements"]
    wrong = [r for r in rows if r["backend"] == "miscounting"]
    assert wrong and all(r["status"] == "mismatch" for r in wrong)
    assert all(r["status"] == "ok" for r in rows if r["backend"] == "python")


class Flaky(Backend):
    """Right on every other call, one too many on the others."""

    name = "flaky"
    family = "Python"

    def __init__(self):
        self.calls = 0

    def run(self, workload, lo, hi, *, workers, seed, progress=None):
        self.calls += 1
        return hi - lo + self.calls % 2


def test_runs_that_disagree_among_themselves_are_a_mismatch(register):
    register("flaky", Flaky)
    bench = bench_run.run_bench([COUNT], [10**4], ["flaky"], {}, repeat=3, workers=2,
                                budget_s=1.0)
    assert not bench.ok
    assert any(m.status == bench_run.MISMATCH for m in bench.measurements)


def test_the_guide_preset(bench_cli, monkeypatch):
    monkeypatch.setattr(bench_cli_module, "GUIDE_COUNTS", 2_500)
    status, out, err = bench_cli("--guide", "--backends", FAST, "--repeat", "1")
    assert status == 0, err
    assert "The guide's experiment: 4 tasks x 2,500 counts" in out
    assert "1.13 s" in out


@pytest.fixture
def io_bench(monkeypatch):
    """The IO bench replaced by a stub: returns the arguments it was called with."""
    seen = {}

    def run_io_bench(requests, latency, limit, size, keep, console=None):
        seen.update(requests=requests, latency=latency, limit=limit, size=size, keep=keep)
        return [{"mode": "asyncio", "seconds": 0.5}]

    monkeypatch.setitem(sys.modules, "partally.bench.io",
                        types.SimpleNamespace(run_io_bench=run_io_bench))
    return seen


def test_bench_io_calls_the_io_bench(io_bench, tmp_path):
    path = tmp_path / "io.json"
    assert main(["bench-io", "--json", str(path)]) == 0
    assert io_bench == {"requests": 1000, "latency": 0.05, "limit": 100, "size": 10240, "keep": True}
    data = json.loads(path.read_text())
    assert data["io"] == [{"mode": "asyncio", "seconds": 0.5}]
    assert data["schema"] == bench_report.SCHEMA and data["config"]["io"] is True


def test_bench_io_takes_its_options(io_bench):
    argv = ["--requests", "10", "--latency", "0", "--limit", "5", "--size", "3", "--discard-bodies"]
    assert main(["bench-io", *argv]) == 0
    assert io_bench == {"requests": 10, "latency": 0.0, "limit": 5, "size": 3, "keep": False}


def test_bench_io_refuses_an_unwritable_json_before_any_work(io_bench, capsys):
    assert main(["bench-io", "--json", "/nonexistent-folder/io.json"]) == 2
    assert io_bench == {}
    err = capsys.readouterr().err
    assert err.startswith("partally bench-io: error: ") and "does not exist" in err


# ----------------------------------------------------------------------------- the budget


def test_predict_fits_overhead_plus_rate():
    linear = [(10**3, 1e-3 + 10**3 * 1e-6), (10**4, 1e-3 + 10**4 * 1e-6)]
    assert bench_run.predict(linear, 10**6) == pytest.approx(1e-3 + 1.0)
    flat = [(10**3, 2e-6), (10**4, 1.9e-6)]  # a folded loop: no growth, no skip at any n
    assert bench_run.predict(flat, 10**12) == pytest.approx(1.9e-6)
    assert bench_run.predict([(100, 0.01)], 10**4) == pytest.approx(1.0)  # one point: proportional
    assert bench_run.predict([], 10**4) is None


class Sleepy(Backend):
    """1 µs per element, exactly as predicted."""

    name = "sleepy"

    def run(self, workload, lo, hi, *, workers, seed, progress=None):
        time.sleep((hi - lo) * 1e-6)
        return hi - lo


def test_a_run_predicted_over_budget_is_skipped(register):
    register("sleepy", Sleepy)
    bench = bench_run.run_bench([COUNT], [10**3, 10**4, 10**6], ["sleepy"], {}, repeat=1,
                                workers=2, budget_s=0.2)  # 10 ms at 1e4: room for a busy machine
    by_n = {m.n: m for m in bench.measurements}
    assert by_n[10**3].status == by_n[10**4].status == bench_run.OK
    skipped = by_n[10**6]
    assert skipped.status == bench_run.SKIPPED and not skipped.samples
    assert 0.5 <= skipped.predicted_s <= 50  # 1 s; a busy machine's sleeps only overshoot
    assert "budget 0.2 s" in skipped.message
    rows = bench_report.summarize(bench)
    assert "skipped" in " ".join(bench_report.notes(rows, "count"))


# ----------------------------------------------------------------------------- references


def test_references_known_python_and_agreement():
    refs = bench_run._References(workers=2)
    assert refs.resolve(COUNT, 10**12, {}) == (10**12, "n (count counts every i)")
    assert refs.resolve(PRIMES, 10**9, {}) == (50847534, "known value")
    assert refs.resolve(PI, 1000, {})[1] == "pure-Python run_range"
    n = 3 * 10**7  # too large for pure Python, no known value
    value, source = refs.resolve(PI, n, {"numba": 5, "native": 5})
    assert value == 5 and source.startswith("agreement of 2 implementations")
    value, source = refs.resolve(PI, n, {"numba": 5, "native": 6})
    assert value is None and "disagree" in source


def test_one_implementation_alone_is_checked_on_a_sample(monkeypatch):
    """Only C++ counted 3e7: native must match pure Python on random sub-ranges; its total is
    then the reference, and the reference says what was compared."""
    monkeypatch.setattr(bench_run, "CHECKERS", ())
    refs = bench_run._References(workers=2)
    value, source = refs.resolve(PI, 3 * 10**7, {"native": 5, "ray": 5})
    assert value == 5 and source.startswith("sample: native matched the pure-Python count on 3")
    assert "counted by C++ alone" in source


class OffByOneOnOdd(Backend):
    """A C++-family backend that counts one too many wherever lo is odd."""

    name = "offbyone"
    family = "C++"

    def run(self, workload, lo, hi, *, workers, seed, progress=None):
        return workload.run_range(lo, hi, seed) + lo % 2


def test_a_sample_that_disagrees_with_python_is_a_mismatch(monkeypatch, register):
    register("offbyone", OffByOneOnOdd)
    monkeypatch.setattr(bench_run, "CHECKERS", ())
    refs = bench_run._References(workers=2)
    value, source = refs.resolve(PI, 3 * 10**7, {"offbyone": 5})
    assert value is None and source.startswith("sample check failed: offbyone gave")


def test_python_alone_is_unverified(monkeypatch):
    monkeypatch.setattr(bench_run, "CHECKERS", ())
    refs = bench_run._References(workers=2)
    value, source = refs.resolve(PI, 3 * 10**7, {"processes": 5, "ray": 5})
    assert value is None and source.startswith("unverified")


def test_the_footnote_names_what_was_compared():
    agree = "agreement of 2 implementations (C++: native; Numba: numba)"
    sample = "sample: numba matched the pure-Python count on 3 random sub-ranges of 9 elements"
    rows = [
        {"n": n, "status": bench_run.OK, "reference": reference, "flat": False,
         "python_extrapolated": False, "backend": name}
        for n, reference in ((10**7, agree), (10**8, agree), (10**9, sample))
        for name in ("numba", "native")
    ]
    text = " ".join(bench_report.notes(rows, "pi"))
    assert f"at n = 1e7, 1e8, {agree}." in text
    assert f"at n = 1e9, {sample}." in text
    assert "(Python, Numba, C++)" not in text


# ----------------------------------------------------------------------------- the report


def test_a_time_that_does_not_grow_with_n_is_marked_and_explained():
    bench = _bench_of(
        _measurement("python", 10**3, 3e-5), _measurement("python", 10**6, 3e-2),
        _measurement("native", 10**3, 1e-6), _measurement("native", 10**6, 1.1e-6),
    )
    rows = {(r["backend"], r["n"]): r for r in bench_report.summarize(bench)}
    assert rows["native", 10**6]["flat"] == "folded" and not rows["python", 10**6]["flat"]
    assert not rows["native", 10**3]["flat"]
    assert rows["native", 10**6]["speedup_vs_python"] == pytest.approx(3e-2 / 1.1e-6)
    text = " ".join(bench_report.notes(list(rows.values()), "count"))
    assert "the compiler removed the loop" in text


def test_flat_time_elsewhere_is_overhead_and_one_noisy_run_does_not_hide_it():
    times = {10**3: 3e-3, 10**4: 9e-2, 10**5: 2.9e-3, 10**6: 3.1e-3}  # 10**4: a noisy run
    bench = _bench_of(*(_measurement("ray", n, t, workload="pi") for n, t in times.items()),
                      backends=("ray",))
    bench.workloads = [PI]
    flat = [r["flat"] for r in bench_report.summarize(bench)]
    assert flat == [False, False, "overhead", "overhead"]


def test_a_slow_first_run_does_not_hide_growth():
    times = {10**3: 6e-3, 10**5: 2.5e-5, 10**7: 1e-2}  # 10**3: a thread woke late; then linear
    bench = _bench_of(*(_measurement("numba", n, t, workload="pi") for n, t in times.items()),
                      backends=("numba",))
    bench.workloads = [PI]
    assert [r["flat"] for r in bench_report.summarize(bench)] == [False, "overhead", False]


@pytest.mark.parametrize(("n", "text"), [(10**7, "1e7"), (4 * 10**7, "4e7"), (2**32, "2**32"),
                                         (1234, "1,234"), (500, "500")])
def test_sizes_are_written_short(n, text):
    assert _format.size(n) == text


def test_speedup_against_extrapolated_python_is_marked():
    bench = _bench_of(
        _measurement("python", 10**3, 1e-3), _measurement("python", 10**4, 1e-2),
        Measurement("count", "python", 10**6, bench_run.SKIPPED, predicted_s=1.0,
                    message="predicted 1 s per call > budget 0.5 s"),
        _measurement("native", 10**6, 1e-3),
    )
    row = [r for r in bench_report.summarize(bench) if r["backend"] == "native"][0]
    assert row["python_extrapolated"] and row["speedup_vs_python"] == pytest.approx(1000)
    assert bench_report._cells(row)[5].endswith("~")
    data = bench_report.report(bench)
    compact = bench_report.markdown(data)
    assert "| backend | n = 1e3 | n = 1e4 | n = 1e6 | elements/s | vs python |" in compact
    assert "| python | 1 ms | 10 ms | skipped | 1 M/s | 1× |" in compact
    assert "| native |  |  | 1 ms | 1 G/s | 1,000×~ |" in compact
    full = bench_report.markdown(data, full=True)
    assert "| n | backend | median |" in full and "skipped" in full


def test_plot_is_written(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib (the plot extra) is not installed")
    bench = _bench_of(
        _measurement("python", 10**3, 3e-5), _measurement("python", 10**4, 3e-4),
        _measurement("native", 10**3, 1e-6), _measurement("native", 10**4, 1.1e-6),
    )
    path = tmp_path / "bench.png"
    bench_plot.plot(bench_report.report(bench), str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _zero(i, seed):
    return 0.0


def _nan(i, seed):
    return float("nan")


class SignedZero(Backend):
    """The min of a float workload, with the sign of a zero flipped (equal by ==, not bit for bit)."""

    name = "signedzero"
    family = "Python"

    def run(self, workload, lo, hi, *, workers, seed, progress=None):
        from partally.workloads.reductions import Extreme, float_key

        found = workload.run_range(lo, hi, seed)
        return Extreme(float_key(-0.0), found.index) if found is not None else None


def test_reductions_are_verified_bit_for_bit(register):
    import partally

    register("signedzero", SignedZero)
    low = partally.workload(_zero, reduce="min")
    bench = bench_run.run_bench([low], [10**3], ["python", "signedzero"], {}, repeat=1,
                                workers=2, budget_s=1.0)
    status = {m.backend: m.status for m in bench.measurements}
    assert status == {"python": bench_run.OK, "signedzero": bench_run.MISMATCH}
    assert "returned Extremum(value=-0.0, index=0), expected Extremum(value=0.0, index=0)" in (
        bench_run.describe_failure(next(m for m in bench.measurements if m.backend == "signedzero"))
    )


def test_a_nan_result_equals_itself(register):
    import partally

    nan = partally.workload(_nan, reduce="sum")
    bench = bench_run.run_bench([nan], [10**3, 10**4], ["python", "threads"], {}, repeat=3,
                                workers=2, budget_s=1.0)
    assert bench.ok and {m.status for m in bench.measurements} == {bench_run.OK}
