"""The command line's compute and info commands, and its size parser."""

import argparse
import os
import subprocess
import sys

import pytest

from partally.cli import main
from partally.cli.args import parse_size


@pytest.mark.parametrize(
    ("text", "value"),
    [("1000", 1000), ("1_000_000", 10**6), ("1e9", 10**9), ("2.5e3", 2500), ("10**9", 10**9),
     ("2**32", 2**32), (" 7 ", 7), ("0", 0)],
)
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["ten", "1.5", "1e-3", "nan", "inf", "", "2**99", "1e40"])
def test_parse_size_rejects(text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_size(text)


def test_compute_prints_the_count(capsys):
    assert main(["compute", "1e5", "--workload", "primes", "--backend", "native"]) == 0
    assert capsys.readouterr().out.strip() == "9592"


def test_compute_pi_prints_the_estimate(capsys):
    assert main(["compute", "1e5", "--workload", "pi", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("78607") and "pi ~ 3.14428" in out


def test_info_lists_every_backend(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for name in ("python", "threads", "processes", "numba", "native"):
        assert name in out


def test_info_names_the_extra_to_install():
    # rich would read "[cuda]" as markup and drop it from the fix it tells the user to run
    code = (
        "import sys\n"
        "sys.modules['cupy'] = sys.modules['numba_cuda'] = sys.modules['ray'] = None\n"
        "from partally.cli import main\n"
        "main(['info'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
        env={"COLUMNS": "300", "PARTALLY_NO_CALIBRATE": "1", "PATH": ""},
    )
    assert done.returncode == 0, done.stderr
    assert 'pip install "partally[cuda]"' in done.stdout
    assert 'pip install "partally[ray]"' in done.stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compute", "ten"], "not a whole number"),
        (["compute", "-5"], "negative"),
        (["compute", "10", "--backend", "gpu"], "invalid choice"),
        (["compute", "10", "--workload", "fib"], "unknown workload"),
        (["compute", "10", "--workers", "0"], "must be >= 1"),
        (["compute", "1e10", "--workload", "primes"], "n <= 2**32"),
    ],
)
def test_bad_arguments_exit_2_with_one_clear_line(argv, message):
    done = subprocess.run(
        [sys.executable, "-m", "partally", *argv], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert done.stdout == ""


def test_version(capsys):
    import partally

    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0
    assert capsys.readouterr().out == f"partally {partally.__version__}\n"


FAILING = '''\
def helper(x):
    return 1 // x


def fails_at_three(i, seed):
    return helper(i - 3) > 0
'''


@pytest.mark.parametrize("backend", ["python", "processes"])  # processes: shipped by value
def test_a_workload_that_raises_prints_one_line_and_its_own_frame(tmp_path, backend):
    (tmp_path / "failing.py").write_text(FAILING)
    done = subprocess.run(
        [sys.executable, "-m", "partally", "compute", "100", "--workload",
         "failing:fails_at_three", "--backend", backend],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    try:  # CPython's own words for it, which change between versions
        1 // (3 - 3)  # noqa: B018
    except ZeroDivisionError as exc:
        words = str(exc)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"partally compute: error: workload 'fails_at_three' raised ZeroDivisionError at i = 3: "
        f"{words}",
        f'  File "{tmp_path / "failing.py"}", line 6, in fails_at_three',
        "    return helper(i - 3) > 0",
    ]
