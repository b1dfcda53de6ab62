"""numba-cuda's kernels are compiled without FMA contraction (NVVM's -fma=0), so a GPU computes
``a*b+c`` with two roundings, as the CPU and the Python backends do.

The CUDA simulator never contracts, so the simulator's tests cannot show this: here the real
compiler (NVVM, from the CUDA toolkit wheels) compiles a user's element function to PTX inside
the context partally compiles its kernels in, on the CPU (no GPU: a whole kernel, which calls
device functions, needs a device to be typed), and the PTX is read."""

from __future__ import annotations

import importlib.util
import os

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("numba_cuda") is None or os.environ.get("NUMBA_ENABLE_CUDASIM") == "1",
    reason="needs numba-cuda's compiler (not the simulator)",
)


def element(i, seed):
    x = float(i) * 1.1
    return x * x + 0.3  # NVVM's default turns this into one fma.rn.f64


def _ptx(no_fma: bool) -> str:
    from numba import cuda, types

    from partally.backends import _numba_cuda_kernels as kernels

    signature = (types.int64, types.int64)
    try:
        if no_fma:
            with kernels._no_fma():
                return cuda.compile_ptx(element, signature, device=True, cc=(8, 0))[0]
        return cuda.compile_ptx(element, signature, device=True, cc=(8, 0))[0]
    except Exception as exc:  # no NVVM / NVRTC here (the CUDA toolkit wheels are not installed)
        if any(name in str(exc).lower() for name in ("nvvm", "nvrtc", "libdevice")):
            pytest.skip(f"the CUDA compiler libraries are not available: {str(exc)[:200]}")
        raise


def test_partally_compiles_without_fma():
    assert "fma.rn.f64" in _ptx(no_fma=False)  # NVVM's default contracts: the check bites
    ptx = _ptx(no_fma=True)
    assert "fma.rn.f64" not in ptx and "mul.rn.f64" in ptx and "add.rn.f64" in ptx


def test_the_switch_is_put_back():
    from numba.cuda.cudadrv import nvvm

    from partally.backends import _numba_cuda_kernels as kernels

    before = nvvm.compile_ir
    with kernels._no_fma():
        assert nvvm.compile_ir is not before
    assert nvvm.compile_ir is before
