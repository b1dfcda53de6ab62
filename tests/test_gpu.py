"""The GPU backends on a real CUDA device: known values, the pure-Python reference, each other.

Skipped, with the reason, where the backend cannot run (no cupy / numba-cuda, no driver, no device).
"""

from __future__ import annotations

import pytest

from partally.workloads import BUILTINS, resolve

import partally
from partally.backends import cuda, get
from reference import PI_3E9_SEED_3, count_range

pytestmark = pytest.mark.gpu

GPU_BACKENDS = ["cuda", "numba-cuda"]


@pytest.fixture(params=GPU_BACKENDS)
def backend(request):
    reason = get(request.param).unavailable()
    if reason is not None:
        pytest.skip(f"{request.param}: {reason}")
    return request.param


KNOWN = [
    ("count", 10**9, 10**9),
    ("count", 2**63 - 1, 2**63 - 1),
    ("primes", 10**6, 78498),
    ("primes", 10**7, 664579),
    ("primes", 10**9, 50847534),
    ("primes", 2**32, 203280221),
    ("pi", 10**5, 78607),
    ("pi", 10**6, 785806),
]


@pytest.mark.parametrize("workload, n, expected", KNOWN)
def test_known_values(backend, workload, n, expected):
    assert partally.compute(n, backend=backend, workload=workload) == expected


@pytest.mark.parametrize("blocks, threads", [(1, 32), (3, 96), (1000, 1024), (None, 256)])
@pytest.mark.parametrize("workload", ["count", "primes", "pi"])
def test_uneven_ranges_match_reference(backend, workload, blocks, threads):
    module = get(backend)
    for lo, hi in [(0, 1), (12345, 23457), (2**32 - 3001, 2**32)]:
        got = module.count(resolve(workload), lo, hi, workers=1, seed=5, blocks=blocks, threads=threads)
        assert got == count_range(workload, lo, hi, seed=5), (lo, hi)


def test_pi_near_two_to_63(backend):
    lo, hi = 2**63 - 10**5, 2**63 - 1
    assert get(backend).count(BUILTINS["pi"], lo, hi, workers=1, seed=3) == count_range("pi", lo, hi, 3)


def test_pi_at_scale(backend):
    """3e9 points, past 32-bit counters and indices, against the reference's count."""
    assert partally.compute(3 * 10**9, backend=backend, workload="pi", seed=3) == PI_3E9_SEED_3


def test_device_names_the_gpu(backend):
    assert get(backend).device().startswith("GPU: ") and "none" not in get(backend).device()


def test_cuda_loads_fatbin_and_nvrtc(monkeypatch):
    if cuda.unavailable() is not None:
        pytest.skip(f"cuda: {cuda.unavailable()}")
    folder = cuda.kernels_dir()
    cuda.module.cache_clear()
    try:
        if (folder / cuda.FATBIN).is_file():
            assert cuda.module()[1] == "fatbin"
            assert get("cuda").count(BUILTINS["primes"], 0, 10**6) == 78498
        cuda.module.cache_clear()
        monkeypatch.setenv("PARTALLY_CUDA_NVRTC", "1")
        assert cuda.module()[1] == "nvrtc"
        assert get("cuda").count(BUILTINS["primes"], 0, 10**6) == 78498
        assert get("cuda").count(BUILTINS["pi"], 0, 10**6) == 785806
    finally:
        cuda.module.cache_clear()
