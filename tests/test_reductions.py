"""reduce="sum" | "mean" | "min" | "max": the API, the partials, and every Python backend against
exact references written here (Python ints, fractions.Fraction, plain loops)."""

from __future__ import annotations

import math
import pickle
import struct
from fractions import Fraction

import pytest

import partally
from partally.backends import get
from partally.workloads import resolve
from partally.workloads.reductions import Extreme, FloatSum, float_key, get as reduction

PYTHON_BACKENDS = ("python", "threads", "processes")


def exact_float_sum(values: list[float]) -> float:
    """DESIGN's float sum, by Fractions: NaN / inf rules, then the exact sum rounded once."""
    if any(v != v for v in values) or (math.inf in values and -math.inf in values):
        return math.nan
    if math.inf in values or -math.inf in values:
        return math.inf if math.inf in values else -math.inf
    total = sum((Fraction(v) for v in values), Fraction(0))
    try:
        return total.numerator / total.denominator
    except OverflowError:
        return math.inf if total > 0 else -math.inf


def bits(x: float) -> bytes:
    return struct.pack("<d", x)


def identical(a: float, b: float) -> bool:
    return (a != a and b != b) or bits(a) == bits(b)


def wave(i, seed):
    return (i * 2654435761 + seed) % 1000 * 0.001 - 0.4


def square(i, seed):
    return i * i


def valley(i, seed):
    return (i - 300) ** 2 % 1000


@pytest.mark.parametrize("backend", PYTHON_BACKENDS)
@pytest.mark.parametrize("workers", [1, 2])
def test_every_reduction_on_the_python_backends_equals_a_plain_loop(backend, workers):
    n = 150_000  # several pieces on the pools
    floats = [wave(i, 5) for i in range(n)]
    ints = [valley(i, 5) for i in range(n)]
    run = lambda f, reduce: partally.compute(n, backend, f, reduce=reduce, workers=workers, seed=5)  # noqa: E731
    assert identical(run(wave, "sum"), exact_float_sum(floats))
    assert identical(run(wave, "mean"), float(sum(map(Fraction, floats)) / n))
    assert run(square, "sum") == sum(i * i for i in range(n))
    assert run(valley, "mean") == sum(ints) / n
    assert run(valley, "min") == (min(ints), ints.index(min(ints)))
    assert run(valley, "max") == (max(ints), ints.index(max(ints)))
    assert run(wave, "max") == (max(floats), floats.index(max(floats)))


def test_an_integer_sum_past_2_63_is_exact():
    n = 10**5
    big = lambda i, seed: 2**63 - 1 - i  # noqa: E731
    expected = sum(2**63 - 1 - i for i in range(n))
    assert expected > 2**63
    for backend in PYTHON_BACKENDS:
        assert partally.compute(n, backend, big, reduce="sum", workers=2) == expected


def test_a_value_past_int64_is_a_workload_error_naming_i():
    with pytest.raises(partally.WorkloadError, match="i = 7"):
        partally.compute(10, "python", lambda i, s: 2**63 if i == 7 else i, reduce="sum")
    with pytest.raises(partally.WorkloadError, match="i = 3"):
        partally.compute(10, "threads", lambda i, s: 0.5 if i == 3 else 1, reduce="max")


def test_specials_follow_the_design():
    run = lambda values, reduce: partally.compute(  # noqa: E731
        len(values), "python", lambda i, s: values[i], reduce=reduce
    )
    assert math.isnan(run([1.0, math.inf, -math.inf], "sum"))
    assert run([1.0, math.inf], "sum") == math.inf
    assert math.isnan(run([math.nan, 1.0], "sum"))
    assert run([1.7e308, 1.7e308], "sum") == math.inf  # overflow rounds to inf, no OverflowError
    assert run([1e16, 1.0, -1e16], "sum") == 1.0  # cancellation
    assert bits(run([-0.0, -0.0], "sum")) == bits(0.0)  # an exact zero is +0.0
    assert run([5e-324, 5e-324], "sum") == 1e-323  # subnormals
    low = run([0.0, -0.0, 1.0], "min")
    assert bits(low.value) == bits(-0.0) and low.index == 1  # totalOrder: -0.0 < +0.0
    high = run([-0.0, 0.0, -1.0], "max")
    assert bits(high.value) == bits(0.0) and high.index == 1
    nan = run([1.0, math.nan, 2.0, math.nan], "min")
    assert math.isnan(nan.value) and nan.index == 1
    assert run([3, 1, 1, 3], "min") == (1, 1) and run([3, 1, 1, 3], "max") == (3, 0)  # ties


def test_empty_ranges():
    f = lambda i, s: i * 1.5  # noqa: E731
    assert partally.compute(0, "python", f, reduce="sum") == 0.0
    assert partally.compute(0, "python", square, reduce="sum") == 0
    for reduce in ("mean", "min", "max"):
        with pytest.raises(ValueError, match="empty range"):
            partally.compute(0, "threads", f, reduce=reduce)


def test_bad_reduce_values_say_what_is_accepted():
    with pytest.raises(ValueError, match="expected one of .*'sum'"):
        partally.compute(10, workload=square, reduce="total")
    with pytest.raises(TypeError, match="reduce must be one of"):
        partally.compute(10, workload=square, reduce=sum)
    with pytest.raises(ValueError, match="counts; reduce='sum'"):
        partally.compute(10, workload="primes", reduce="sum")
    with pytest.raises(ValueError, match="returns must be int or float"):
        partally.workload(square, reduce="sum", returns=str)


def test_reduce_that_contradicts_a_decorated_workload_is_a_value_error():
    @partally.workload(reduce="max")
    def best(i, seed):
        return i % 7

    assert partally.compute(10, "python", best) == (6, 6)
    assert partally.compute(10, "python", best, reduce="max") == (6, 6)
    with pytest.raises(ValueError, match="declared with reduce='max'"):
        partally.compute(10, "python", best, reduce="min")


def test_the_element_kind_is_declared_or_inferred_once():
    assert resolve(square, "sum").kind == "int"
    assert resolve(wave, "sum").kind == "float"
    declared = partally.workload(square, reduce="sum", returns=float)
    assert partally.compute(4, "python", declared) == 14.0
    with pytest.raises(ValueError, match="declare it"):
        resolve(lambda i, s: "text", "sum").kind
    assert resolve(square, "sum").key != resolve(square, "min").key


def test_a_reducing_workload_travels_with_its_reduction():
    made = partally.workload(wave, reduce="mean", returns=float)
    back = pickle.loads(pickle.dumps(made))
    assert back.reduce == "mean" and back.kind == "float" and back.key == made.key
    assert pickle.loads(pickle.dumps(resolve("pi"))) is resolve("pi")


def test_partials_merge_in_any_order():
    total = reduction("sum", "float")
    parts = [total.loop(wave, lo, lo + 1000, 3) for lo in range(0, 10_000, 1000)]
    forward, backward = total.zero(), total.zero()
    for part in parts:
        forward = total.merge(forward, part)
    for part in reversed(parts):
        backward = total.merge(part, backward)
    assert isinstance(forward, FloatSum) and forward == backward
    low = reduction("min", "float")
    assert low.merge(Extreme(float_key(1.0), 5), Extreme(float_key(1.0), 2)) == (float_key(1.0), 2)


@pytest.mark.parametrize("backend", ["native", "cuda"])
def test_the_cpp_backends_refuse_other_reductions(backend):
    made = partally.workload(square, reduce="sum")
    assert get(backend).supports(made) is not None


def test_the_cli_prints_a_float_that_reads_back_exactly_and_explains_the_values(tmp_path):
    import subprocess
    import sys

    (tmp_path / "payoffs.py").write_text(
        "import partally\n\n"
        "def wave(i, seed):\n    return (i * 2654435761 + seed) % 1000 * 0.001 - 0.4\n\n"
        "@partally.workload(reduce='max')\ndef best(i, seed):\n    return i % 7\n"
    )
    run = lambda *argv: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "partally", "compute", *argv], cwd=tmp_path,
        capture_output=True, text=True, timeout=300,
    )
    done = run("1e4", "--workload", "payoffs:wave", "--reduce", "sum", "--backend", "threads")
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) == exact_float_sum([wave(i, 0) for i in range(10**4)])
    assert done.stdout.strip() == repr(float(done.stdout))
    done = run("1e4", "--workload", "payoffs:wave", "--reduce", "mean", "-v")
    assert done.returncode == 0, done.stderr
    assert "mean of float values (inferred from f(0, 0))" in done.stderr
    done = run("100", "--workload", "payoffs:best", "--backend", "python")
    assert done.stdout.strip() == "6 at i = 6"
    done = run("100", "--workload", "payoffs:best", "--reduce", "min")
    assert done.returncode == 2 and "declared with reduce='max'" in done.stderr
    explained = partally.explain(10**4, wave, reduce="min")
    assert explained.values == "min of float values (inferred from f(0, 0))"


@pytest.mark.parametrize("backend", ["python", "threads", "processes", "numba", "native"])
def test_progress_is_told_as_pieces_finish_on_every_cpu_backend(backend):
    import threading

    if get(backend).unavailable():
        pytest.skip(get(backend).unavailable())
    calls = []
    caller = threading.get_ident()

    def progress(done, total):
        calls.append((done, total, threading.get_ident()))

    n = 10**6
    assert partally.compute(n, backend, "pi", workers=2, progress=progress) == 785806
    assert calls and calls[-1][:2] == (n, n)
    assert all(total == n and thread == caller for _, total, thread in calls)
    assert [done for done, _, _ in calls] == sorted({done for done, _, _ in calls})
    if backend in ("threads", "processes"):
        assert len(calls) > 1
    with pytest.raises(TypeError, match="progress must be a function"):
        partally.compute(10, backend, "pi", progress=5)


def test_the_cli_shows_a_progress_bar_with_an_eta_on_a_terminal(tmp_path):
    """A run of a few seconds under a pseudo-terminal: the bar appears on stderr, the result on
    stdout; the same run into a pipe prints the result alone."""
    import os
    import pty
    import select
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "slowly.py").write_text(
        "import time\n\ndef slow(i, seed):\n    time.sleep(0.001)\n    return i * 0.5\n"
    )
    argv = [sys.executable, "-m", "partally", "compute", "3000", "--workload", "slowly:slow",
            "--reduce", "sum", "--backend", "python"]
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "100"}

    def on_a_terminal(argv, until=None):
        """Run ``argv`` with stderr on a pseudo-terminal; (the process, what stderr showed);
        ``until(process, shown)`` is called as output arrives (to interrupt it)."""
        primary, secondary = pty.openpty()
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=secondary, cwd=tmp_path,
                                   env=env)
        os.close(secondary)
        shown = b""
        while True:
            ready, _, _ = select.select([primary], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(primary, 4096)
                except OSError:  # the child closed its end
                    break
                if not chunk:
                    break
                shown += chunk
                if until is not None:
                    until(process, shown)
            elif process.poll() is not None:
                break
        os.close(primary)
        return process, shown

    done, shown = on_a_terminal(argv)
    assert done.wait(timeout=120) == 0
    assert done.stdout.read().decode().strip() == repr(sum(i * 0.5 for i in range(3000)))
    assert b"computing" in shown and b"ETA" in shown and b"%" in shown
    piped = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert piped.stderr == "" and piped.stdout.strip() == repr(sum(i * 0.5 for i in range(3000)))

    sent = []

    def interrupt(process, shown):
        if b"computing" in shown and not sent:
            process.send_signal(signal.SIGINT)
            sent.append(time.monotonic())

    long = [*argv[:4], "10**6", *argv[5:]]  # about 20 minutes of work
    stopped, shown = on_a_terminal(long, interrupt)
    assert stopped.wait(timeout=60) == 130 and sent
    assert time.monotonic() - sent[0] < 10  # a hang bound, not a speed claim
