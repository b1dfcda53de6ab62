"""The CUDA pieces that can be checked without a GPU: the built fatbin, the shipped sources, and
the GPU backends' reasons for not running."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from partally.backends import _gpu, cuda, get
from partally.workloads import BUILTINS

numba_cuda = get("numba-cuda")

FATBIN_MAGIC = bytes.fromhex("50ed55ba")  # 0xBA55ED50, little-endian


def test_package_ships_the_kernel_sources():
    folder = cuda.kernels_dir()
    assert folder is not None, "partally/kernels/counting.cu is not installed: reinstall"
    assert (folder / "counting.cu").is_file() and (folder / "elements.hpp").is_file()


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="no nvcc on PATH: no fatbin is built")
def test_build_made_the_fatbin():
    folder = cuda.kernels_dir()
    fatbin = folder / cuda.FATBIN
    assert fatbin.is_file(), f"{fatbin} is missing although nvcc exists: reinstall (pip install .)"
    data = fatbin.read_bytes()
    assert data[:4] == FATBIN_MAGIC and len(data) > 10_000


@pytest.mark.skipif(_gpu.problem() is None, reason="a CUDA device is present: see test_gpu.py")
@pytest.mark.parametrize("backend", [get("cuda"), numba_cuda], ids=["cuda", "numba-cuda"])
def test_unavailable_says_why(backend):
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" and backend is numba_cuda:
        pytest.skip("the CUDA simulator stands in for a device")
    reason = backend.unavailable()
    assert isinstance(reason, str) and reason
    assert any(word in reason for word in ("driver", "device", "partally[cuda]")), reason
    assert backend.device() == "GPU: none"


def test_missing_packages_name_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # find_spec() then says: not installed
    monkeypatch.setitem(sys.modules, "numba_cuda", None)
    cuda.unavailable.cache_clear()
    numba_cuda.unavailable.cache_clear()
    try:
        for backend, package in [(cuda, "CuPy"), (numba_cuda, "numba-cuda")]:
            reason = backend.unavailable()
            assert package in reason and 'pip install "partally[cuda]"' in reason
    finally:
        cuda.unavailable.cache_clear()
        numba_cuda.unavailable.cache_clear()


def test_import_partally_loads_no_gpu_package():
    code = "import sys, partally; print([m for m in ('cupy', 'numba.cuda') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


NO_NVVM = 3  # the compile check's exit status when libnvvm cannot be loaded (before compiling)

_COMPILE_CHECK = textwrap.dedent(
    """
    import sys
    import types as pytypes
    from numba.cuda.cudadrv import nvvm
    try:  # the one reason to skip: no NVVM library here; anything after this is a failure
        nvvm.NVVM()
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}")
        sys.exit(3)  # NO_NVVM
    import numba.cuda.dispatcher as dispatcher
    from numba import cuda, types
    # No GPU here: compile the device functions for sm_90 instead of the current device.
    dispatcher.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=(9, 0))
    import partally
    from partally.backends import _numba_cuda_kernels as k
    from partally.workloads import BUILTINS
    for name, workload in BUILTINS.items():
        kernel, index_type = k.make(workload, "count")
        ptx, _ = cuda.compile_ptx(kernel.py_func, k.signature("count", index_type), cc=(9, 0))
        assert ".entry" in ptx, name
        assert ".f64" not in ptx, f"{name}: float64 in the PTX (int64 and uint64 mixed?)"
    # Every reduction kernel, compiled as partally compiles it: no FMA contraction.
    def payoff(i, seed):
        x = float(i) * 1.1
        return x * x + 0.3
    for reduce, returns in [("sum", float), ("min", float), ("sum", int), ("max", int)]:
        workload = partally.workload(payoff if returns is float else (lambda i, s: i * 3 + s),
                                     reduce=reduce, returns=returns)
        name = {"sum": "sum", "min": "extreme", "max": "extreme"}[reduce]
        name = f"{returns.__name__}_{name}"
        kernel, index_type = k.make(workload, name)
        with k._no_fma():
            ptx, _ = cuda.compile_ptx(kernel.py_func, k.signature(name, index_type), cc=(9, 0))
        assert ".entry" in ptx and "fma.rn.f64" not in ptx, name
        assert returns is int or "mul.rn.f64" in ptx, name
    print("compiled")
    """
)


@pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None, reason="no numba-cuda")
def test_numba_cuda_kernels_compile_for_sm90():
    """The real numba-cuda compiler (not the simulator) accepts the kernels, in pure uint64."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    run = subprocess.run(
        [sys.executable, "-c", _COMPILE_CHECK], capture_output=True, text=True, env=env, timeout=240
    )
    if run.returncode == NO_NVVM:
        pytest.skip(f"numba-cuda cannot load libnvvm here: {run.stdout.strip()}")
    assert run.returncode == 0 and "compiled" in run.stdout, run.stderr[-3000:]


@pytest.mark.skipif(importlib.util.find_spec("cupy") is None, reason="cupy not installed")
def test_kernels_compile_with_nvrtc():
    """The run-time fallback: NVRTC (no C library headers) compiles the shipped counting.cu."""
    try:
        from cupy_backends.cuda.libs import nvrtc

        nvrtc.getVersion()
    except Exception as exc:  # no libnvrtc here
        pytest.skip(f"NVRTC cannot be loaded: {exc}")
    folder = cuda.kernels_dir()
    program = nvrtc.createProgram((folder / cuda.SOURCE).read_text(), cuda.SOURCE, (), ())
    try:
        nvrtc.compileProgram(program, ["-std=c++17", f"-I{folder}", "-arch=compute_75"])
    except Exception as exc:
        pytest.fail(f"NVRTC: {exc}\n{nvrtc.getProgramLog(program)}")
    ptx = nvrtc.getPTX(program)
    ptx = ptx.decode() if isinstance(ptx, bytes) else ptx
    for name in (w.cuda_kernel for w in BUILTINS.values()):
        assert f".entry {name}(" in ptx
