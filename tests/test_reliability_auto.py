"""Regression tests for faults found by trying partally as a new user would (auto, caches)."""

import os
import subprocess
import sys

import pytest

import partally
from partally.auto import Dispatcher, use_dispatcher
from partally.auto.cache import CalibrationCache
from partally._settings import Settings
from partally.workloads import BUILTINS


@pytest.fixture
def fresh_dispatcher(tmp_path):
    dispatcher = Dispatcher(cache=CalibrationCache(tmp_path), settings=Settings())
    use_dispatcher(dispatcher)
    yield dispatcher
    use_dispatcher(None)


def test_calibrating_where_numba_already_ran_stores_a_fresh_process_start(fresh_dispatcher):
    """Fault 1: a bench started numba, then calibrated: numba's start was stored as ~0, and
    every later process picked numba at small n and paid its import."""
    partally.compute(10**4, backend="numba", workload="pi")  # numba now started here
    calibration, _ = fresh_dispatcher.recalibrate(BUILTINS["pi"])
    startup = calibration.models["numba"].startup
    assert startup > 0.05, f"numba's one-time start stored as {startup:.4f} s"


def _run(code, **env):
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=240,
        env={**os.environ, **env},
    )


def test_no_writable_cache_folder_still_computes_and_says_so(tmp_path):
    """Fault 9: with no writable cache folder (read-only home), numba raised "cannot cache
    function ... no locator available", and calibrate said "cached in" when nothing was."""
    unwritable = "/dev/null/partally-cache"  # even root cannot make a folder under a file
    env = {"XDG_CACHE_HOME": unwritable, "HOME": unwritable, "NUMBA_CACHE_DIR": unwritable}
    done = _run(
        "import partally\n"
        "print(partally.compute(10**5, backend='numba', workload='pi'))\n"
        "print(partally.compute(10**4, backend='numba', workload=lambda i, seed: i % 2 == 0))\n",
        **env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["78607", "5000"]
    done = subprocess.run(
        [sys.executable, "-m", "partally", "calibrate", "--workload", "count"],
        capture_output=True, text=True, timeout=240, env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr
    out = " ".join(done.stdout.split())
    assert "NOT cached" in out and "cached in" not in out


def test_partally_backend_is_read_the_same_everywhere():
    """PARTALLY_BACKEND=Numba: info said "forced to 'Numba'" while compute rejected it."""
    env = {"PARTALLY_BACKEND": "Numba"}
    done = _run("import partally; print(partally.compute(1000, workload='pi'))", **env)
    assert done.returncode == 0 and done.stdout.strip() == "786", done.stderr
    done = subprocess.run([sys.executable, "-m", "partally", "info"], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **env})
    assert "forced to 'numba'" in done.stdout


def test_backends_does_not_promise_a_local_ray_without_ray():
    """backends() said "local Ray" for the ray backend where Ray was not installed."""
    done = _run(
        "import sys; sys.modules['ray'] = None\n"
        "import partally\n"
        "info = {i.name: i for i in partally.backends()}['ray']\n"
        "print(info.available, '|', info.device, '|', info.reason)\n"
    )
    assert done.returncode == 0, done.stderr
    available, device, reason = (part.strip() for part in done.stdout.split("|"))
    assert available == "False" and "local Ray" not in device and "partally[ray]" in reason
