"""``partally bench``: argument checks, verification of every result, the budget, JSON and plot."""

import argparse
import json
import sys
import time
import types

import pytest

from partally import _bench, _bench_cli, _bench_plot, _bench_report
from partally._bench import Bench, Measurement
from partally.backends import get

FAST = "python,threads"  # no pool to start, no JIT: keeps these tests fast


@pytest.fixture
def bench_cli(capsys):
    """Run ``partally bench ARGS`` through a parser holding only ``bench``: (status, out, err)."""

    def run(*argv):
        parser = argparse.ArgumentParser(prog="partally")
        _bench_cli.add_bench_command(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(["bench", *argv])
        status = args.func(args)
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the bench starts measuring."""

    def forbidden(*args, **kwargs):
        raise AssertionError("the bench started work despite a bad argument")

    monkeypatch.setattr(_bench, "run_bench", forbidden)


def _measurement(backend, n, seconds, workload="count", status=_bench.OK):
    return Measurement(workload, backend, n, status, samples=(seconds,) * 3, calls_per_sample=1,
                       result=n, expected=n, reference="n (count counts every i)")


def _bench_of(*measurements, backends=("python", "native")):
    bench = Bench(["count"], sorted({m.n for m in measurements}), list(backends), {}, 3, 2, 1.0)
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
        (["--sizes", "2**33", "--workload", "primes"], "2**32"),
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
    assert lines[0].startswith("partally bench: error: ")
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
    pytest.importorskip("partally._io_cli", reason="the IO commands are not in this tree yet")
    from partally._cli import main

    assert main(["bench", "--backends", "nope"]) == 2
    assert "unknown backend 'nope'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- verified runs


def test_quick_run_writes_json_with_every_result_verified(bench_cli, tmp_path):
    path = tmp_path / "bench.json"
    status, out, err = bench_cli(
        "--quick", "--sizes", "1e3,3e3", "--backends", FAST + ",auto", "--json", str(path)
    )
    assert status == 0, err
    data = json.loads(path.read_text())
    assert data["schema"] == _bench_report.SCHEMA and data["ok"] is True and data["failures"] == 0
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
    assert "every result matched its reference" in out
    for workload in ("count", "primes", "pi"):
        assert workload in out


def test_a_wrong_backend_is_reported_loudly_and_fails(bench_cli, monkeypatch, tmp_path):
    threads = get("threads")
    right = threads.count
    monkeypatch.setattr(threads, "count", lambda *a, **k: right(*a, **k) + 1)
    path = tmp_path / "bench.json"
    status, out, err = bench_cli(
        "--quick", "--workload", "pi", "--sizes", "1e3", "--backends", FAST, "--json", str(path)
    )
    assert status == 1
    assert "MISMATCH: backend 'threads'" in err and "returned 787, expected 786" in err
    assert "WRONG" in out
    rows = json.loads(path.read_text())["measurements"]
    wrong = [r for r in rows if r["backend"] == "threads"]
    assert wrong and all(r["status"] == "mismatch" for r in wrong)
    assert all(r["status"] == "ok" for r in rows if r["backend"] == "python")


def test_runs_that_disagree_among_themselves_are_a_mismatch(monkeypatch):
    threads = get("threads")
    calls = iter(range(10**6))
    monkeypatch.setattr(threads, "count", lambda w, lo, hi, **k: hi - lo + next(calls) % 2)
    bench = _bench.run_bench(["count"], [10**4], ["threads"], {}, repeat=3, workers=2,
                             budget_s=1.0)
    assert not bench.ok
    assert any(m.status == _bench.MISMATCH for m in bench.measurements)


def test_the_guide_preset(bench_cli, monkeypatch):
    monkeypatch.setattr(_bench_cli, "GUIDE_COUNTS", 2_500)
    status, out, err = bench_cli("--guide", "--backends", FAST, "--repeat", "1")
    assert status == 0, err
    assert "The guide's experiment: 4 tasks x 2,500 counts" in out
    assert "1.13 s" in out


def test_io_flag_calls_the_io_bench(bench_cli, monkeypatch, tmp_path):
    seen = {}

    def run_io_bench(requests, latency, limit, console=None):
        seen.update(requests=requests, latency=latency, limit=limit)
        return [{"mode": "asyncio", "seconds": 0.5}]

    monkeypatch.setitem(sys.modules, "partally._io_bench",
                        types.SimpleNamespace(run_io_bench=run_io_bench))
    path = tmp_path / "io.json"
    status, _, _ = bench_cli("--io", "--json", str(path))
    assert status == 0
    assert seen == {"requests": 1000, "latency": 0.05, "limit": 100}
    assert json.loads(path.read_text())["io"] == [{"mode": "asyncio", "seconds": 0.5}]


# ----------------------------------------------------------------------------- the budget


def test_predict_fits_overhead_plus_rate():
    linear = [(10**3, 1e-3 + 10**3 * 1e-6), (10**4, 1e-3 + 10**4 * 1e-6)]
    assert _bench.predict(linear, 10**6) == pytest.approx(1e-3 + 1.0)
    flat = [(10**3, 2e-6), (10**4, 1.9e-6)]  # a folded loop: no growth, no skip at any n
    assert _bench.predict(flat, 10**12) == pytest.approx(1.9e-6)
    assert _bench.predict([(100, 0.01)], 10**4) == pytest.approx(1.0)  # one point: proportional
    assert _bench.predict([], 10**4) is None


def test_a_run_predicted_over_budget_is_skipped(monkeypatch):
    threads = get("threads")

    def slow(workload, lo, hi, **kwargs):  # 1 µs per element, exactly as predicted
        time.sleep((hi - lo) * 1e-6)
        return hi - lo

    monkeypatch.setattr(threads, "count", slow)
    bench = _bench.run_bench(["count"], [10**3, 10**4, 10**6], ["threads"], {}, repeat=1,
                             workers=2, budget_s=0.05)
    by_n = {m.n: m for m in bench.measurements}
    assert by_n[10**3].status == by_n[10**4].status == _bench.OK
    skipped = by_n[10**6]
    assert skipped.status == _bench.SKIPPED and not skipped.samples
    assert skipped.predicted_s == pytest.approx(1.0, rel=0.5)
    assert "budget 0.05 s" in skipped.message
    rows = _bench_report.summarize(bench)
    assert "skipped" in " ".join(_bench_report.notes(rows, "count"))


# ----------------------------------------------------------------------------- references


def test_references_known_python_and_agreement():
    refs = _bench._References(workers=2)
    assert refs.resolve("count", 10**12, {}) == (10**12, "n (count counts every i)")
    assert refs.resolve("primes", 10**9, {}) == (50847534, "known value")
    assert refs.resolve("pi", 1000, {})[1] == "pure-Python count_range"
    n = 3 * 10**7  # too large for pure Python, no known value
    value, source = refs.resolve("pi", n, {"numba": 5, "native": 5})
    assert value == 5 and source.startswith("agreement of 2 implementations")
    value, source = refs.resolve("pi", n, {"numba": 5, "native": 6})
    assert value is None and "disagree" in source


def test_one_implementation_alone_is_unverified(monkeypatch):
    monkeypatch.setattr(_bench, "CHECKERS", ())
    refs = _bench._References(workers=2)
    value, source = refs.resolve("pi", 3 * 10**7, {"native": 5, "ray": 5})
    assert value is None and source.startswith("unverified")


# ----------------------------------------------------------------------------- the report


def test_a_time_that_does_not_grow_with_n_is_marked_and_explained():
    bench = _bench_of(
        _measurement("python", 10**3, 3e-5), _measurement("python", 10**6, 3e-2),
        _measurement("native", 10**3, 1e-6), _measurement("native", 10**6, 1.1e-6),
    )
    rows = {(r["backend"], r["n"]): r for r in _bench_report.summarize(bench)}
    assert rows["native", 10**6]["flat"] == "folded" and not rows["python", 10**6]["flat"]
    assert not rows["native", 10**3]["flat"]
    assert rows["native", 10**6]["speedup_vs_python"] == pytest.approx(3e-2 / 1.1e-6)
    text = " ".join(_bench_report.notes(list(rows.values()), "count"))
    assert "the compiler removed the loop" in text


def test_flat_time_elsewhere_is_overhead_and_one_noisy_run_does_not_hide_it():
    times = {10**3: 3e-3, 10**4: 9e-2, 10**5: 2.9e-3, 10**6: 3.1e-3}  # 10**4: a noisy run
    bench = _bench_of(*(_measurement("ray", n, t, workload="pi") for n, t in times.items()),
                      backends=("ray",))
    bench.workloads = ["pi"]
    flat = [r["flat"] for r in _bench_report.summarize(bench)]
    assert flat == [False, False, "overhead", "overhead"]


def test_a_slow_first_run_does_not_hide_growth():
    times = {10**3: 6e-3, 10**5: 2.5e-5, 10**7: 1e-2}  # 10**3: a thread woke late; then linear
    bench = _bench_of(*(_measurement("numba", n, t, workload="pi") for n, t in times.items()),
                      backends=("numba",))
    bench.workloads = ["pi"]
    assert [r["flat"] for r in _bench_report.summarize(bench)] == [False, "overhead", False]


@pytest.mark.parametrize(("n", "text"), [(10**7, "1e7"), (4 * 10**7, "4e7"), (2**32, "2**32"),
                                         (1234, "1,234"), (500, "500")])
def test_sizes_are_written_short(n, text):
    assert _bench_report.size(n) == text


def test_speedup_against_extrapolated_python_is_marked():
    bench = _bench_of(
        _measurement("python", 10**3, 1e-3), _measurement("python", 10**4, 1e-2),
        Measurement("count", "python", 10**6, _bench.SKIPPED, predicted_s=1.0,
                    message="predicted 1 s per call > budget 0.5 s"),
        _measurement("native", 10**6, 1e-3),
    )
    row = [r for r in _bench_report.summarize(bench) if r["backend"] == "native"][0]
    assert row["python_extrapolated"] and row["speedup_vs_python"] == pytest.approx(1000)
    assert _bench_report._cells(row)[5].endswith("~")
    data = _bench_report.report(bench)
    compact = _bench_report.markdown(data)
    assert "| backend | n = 1e3 | n = 1e4 | n = 1e6 | elements/s | vs python |" in compact
    assert "| python | 1 ms | 10 ms | skipped | 1 M/s | 1× |" in compact
    assert "| native |  |  | 1 ms | 1 G/s | 1,000×~ |" in compact
    full = _bench_report.markdown(data, full=True)
    assert "| n | backend | median |" in full and "skipped" in full


def test_plot_is_written(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib (the plot extra) is not installed")
    bench = _bench_of(
        _measurement("python", 10**3, 3e-5), _measurement("python", 10**4, 3e-4),
        _measurement("native", 10**3, 1e-6), _measurement("native", 10**4, 1.1e-6),
    )
    path = tmp_path / "bench.png"
    _bench_plot.plot(_bench_report.report(bench), str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
