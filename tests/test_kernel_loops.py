"""The CUDA kernels' per-thread loops (kernels/elements.hpp), checked on the CPU.

No GPU runs here, so the loops that counting.cu's kernels run per thread are compiled for the host
with g++, with the GPU's code paths switched on (-DPARTALLY_WARP: branch-free trial division), and a
grid is emulated: thread t of T counts lo + t, lo + t + T, ... below hi, and the threads' counts add.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from reference import count_range

KERNELS = Path(__file__).resolve().parents[1] / "kernels"

DRIVER = r"""
#include <cstdio>
#include <cstdlib>
#include "elements.hpp"
int main(int argc, char **argv) {
    const char *workload = argv[1];
    const uint64_t lo = strtoull(argv[2], 0, 10), hi = strtoull(argv[3], 0, 10);
    const uint64_t seed = strtoull(argv[4], 0, 10), threads = strtoull(argv[5], 0, 10);
    const uint32_t chunk = (uint32_t)strtoul(argv[6], 0, 10);
    uint64_t total = 0;
    for (uint64_t t = 0; t < threads; ++t) {
        total += workload[1] == 'i' ? partally::pi_strided(lo + t, hi, threads, seed, chunk)
                                    : partally::primes_strided(lo + t, hi, threads);
    }
    printf("%llu\n", (unsigned long long)total);
}
"""


@pytest.fixture(scope="module", params=["warp", "cpu"])
def driver(request, tmp_path_factory):
    compiler = shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        pytest.skip("no C++ compiler (g++ or clang++) on PATH")
    folder = tmp_path_factory.mktemp(request.param)
    (folder / "driver.cpp").write_text(DRIVER)
    flags = ["-DPARTALLY_WARP=1"] if request.param == "warp" else []
    subprocess.run(
        [compiler, "-O2", "-std=c++17", *flags, "-I", str(KERNELS), "-o", str(folder / "driver"),
         str(folder / "driver.cpp")],
        check=True, timeout=120,
    )
    return folder / "driver"


def run(driver, workload, lo, hi, seed=0, threads=288, chunk=2**31):
    done = subprocess.run(
        [str(driver), workload, str(lo), str(hi), str(seed), str(threads), str(chunk)],
        capture_output=True, text=True, check=True, timeout=120,
    )
    return int(done.stdout)


@pytest.mark.parametrize("threads", [1, 96, 288])
def test_known_values(driver, threads):
    assert run(driver, "pi", 0, 10**6, threads=threads) == 785806
    assert run(driver, "pi", 0, 10**5, threads=threads) == 78607
    assert run(driver, "primes", 0, 10**6, threads=threads) == 78498


def test_pi_chunks_of_the_32_bit_counters(driver):
    """Trips split into short chunks count the same (the kernel's chunks are 2**31 trips)."""
    for chunk in (1, 7, 1000):
        assert run(driver, "pi", 0, 10**5, threads=3, chunk=chunk) == 78607


@pytest.mark.parametrize(
    "workload, lo, hi, seed",
    [
        ("pi", 12345, 23457, 5),
        ("pi", 2**63 - 10**4, 2**63 - 1, 3),
        ("pi", 0, 1, 0),
        ("pi", 7, 7, 0),
        ("primes", 0, 20_000, 0),
        ("primes", 2**32 - 3001, 2**32, 0),
        ("primes", 4480, 4500, 0),
    ],
)
def test_ranges_match_the_python_reference(driver, workload, lo, hi, seed):
    expected = count_range(workload, lo, hi, seed=seed)
    for threads in (1, 7, 96):
        assert run(driver, workload, lo, hi, seed, threads) == expected, threads
