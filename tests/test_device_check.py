"""scripts/device_check.sh and what it runs, on a machine without a GPU, so that they cannot rot
before a GPU machine runs them: the no-device path, the failure report, the bench's table and goals,
and the wheel list against pyproject.toml's dependencies."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import partally

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "device_check.sh"

# What the GPU machine has (issue 13), as import names and distribution names.
GPU_MACHINE = {"numba", "numba-cuda", "cupy-cuda13x", "numpy", "nanobind", "scikit-build-core",
               "cmake", "ninja", "pytest", "hypothesis", "rich", "httpx", "aiohttp",
               # installed with those: aiohttp needs yarl, multidict; httpx needs h11, anyio
               "yarl", "multidict", "h11", "anyio"}


def _gpu_present() -> bool:
    return any(b.available for b in partally.backends() if b.name in ("cuda", "numba-cuda"))


needs_no_gpu = pytest.mark.skipif(
    _gpu_present(), reason="a GPU is here: run scripts/device_check.sh itself (minutes)"
)
needs_bash = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="needs bash and coreutils' timeout")


def _run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": sys.executable,
                   "PARTALLY_CHECK_SKIP_BUILD": "1", **env}
    environment.pop("NUMBA_ENABLE_CUDASIM", None)
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, cwd=ROOT,
                          env=environment, timeout=300)


@needs_bash
@needs_no_gpu
@pytest.mark.timeout(320)
def test_without_a_gpu_it_tests_and_says_no_device(tmp_path):
    done = _run(tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    tail = done.stdout[done.stdout.index("== partally device check"):]
    assert "NO CUDA DEVICE FOUND" in tail and "all steps ok" in tail
    for step in ("machine", "build", "info", "tests", "calibrate", "bench"):
        assert re.search(rf"^  {step} ", tail, re.M), step
    assert re.search(r"tests: \d+ passed, \d+ skipped", tail), tail
    out = tmp_path / "out"
    pytest_output = (out / "pytest.txt").read_text()
    assert "SKIPPED" in pytest_output and "failed" not in pytest_output
    # What comes back from a GPU machine: at most 8 files, plain names, at most 2 folders deep.
    files = [p for p in out.rglob("*") if p.is_file()]
    assert 3 <= len(files) <= 8, files
    for path in files:
        assert re.fullmatch(r"[A-Za-z0-9._-]+", path.name) and len(path.relative_to(out).parts) <= 3


@needs_bash
@pytest.mark.timeout(120)
def test_steps_out_of_time_are_reported_as_failed(tmp_path):
    done = _run(tmp_path, PARTALLY_CHECK_BUDGET_S="20")
    assert done.returncode != 0
    assert "FAILED STEPS:" in done.stdout and "out of time" in done.stdout


def _bench_gpu():
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "scripts" / "bench_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_table_judges_the_goals():
    bench = _bench_gpu()
    results = {
        "device": "GPU: test", "cases": [["pi", 10**8], ["pi", 10**10], ["primes", 10**9]],
        "gpu": {"cuda": {
            "pi 1e+08": {"kernel_s": 1e-4, "call_s": 1.6e-4, "overhead_s": 6e-5},
            "pi 1e+10": {"kernel_s": 0.015, "call_s": 0.0151, "overhead_s": 1e-4},
            "primes 1e+09": {"kernel_s": 0.2, "call_s": 0.2001, "overhead_s": 1e-4},
        }},
        "cpu": {"native": {
            "pi 1e+08": {"call_s": 1e-4},  # faster than cuda's 160 µs: auto must not pick cuda
            "pi 1e+10": {"call_s": 1.0},
            "primes 1e+09": {"call_s": 2.0},
        }},
        "auto": {"pi 1e+08": {"backend": "cuda"}, "pi 1e+10": {"backend": "cuda"},
                 "primes 1e+09": {"backend": "cuda"}},
        "first_call": {
            "cuda_fatbin": {"source": "fatbin", "context_s": 0.2, "module_load_s": 0.002,
                            "first_compute_s": 0.01, "second_compute_s": 1e-4, "count_ok": True},
            "cuda_nvrtc_cold": {"error": "CompileException: nvrtc: error"},
        },
    }
    table = "\n".join(bench.render(results))
    assert "✓ pi at 1e10: kernel 15 ms" in table
    assert "✗ primes below 1e9: kernel 200 ms" in table
    assert "✓ warm compute(n, 'cuda') above its kernel: 60 µs" in table
    assert "✗ auto never picks a GPU where a CPU backend is faster: wrong at pi 1e+08" in table
    assert re.search(r"primes  1e\+09 .* 10\.0x \| cuda ✓", table), table
    assert "first call, cuda (fatbin): context 200 ms, module load 2 ms" in table
    assert "first call, cuda (NVRTC, cold cache): CompileException" in table


def test_bench_without_a_device_says_so(tmp_path):
    if _gpu_present():
        pytest.skip("a GPU is here")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_gpu.py"), "--json",
                           str(tmp_path / "b.json")], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 2 and "NO CUDA DEVICE" in done.stdout


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_fetched_wheels_cover_what_the_gpu_machine_lacks():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    needed = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    script = (ROOT / "scripts" / "fetch_device_wheels.sh").read_text()
    fetched = {_name(w) for w in re.findall(r"^\s+([A-Za-z0-9_.-]+==[0-9][^\s]*)$", script, re.M)}
    assert {"platformdirs", "uvicorn", "httptools", "pytest-timeout", "cloudpickle"} <= fetched
    assert needed - GPU_MACHINE - fetched == set(), "add these to fetch_device_wheels.sh"
    assert all("==" in line for line in re.findall(r"^\s+[a-z].*==.*$", script, re.M))
