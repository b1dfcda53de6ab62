// partally._native: the C++ CPU kernels as a private Python extension (nanobind).
// Each call releases the GIL for the whole count; each takes (lo, hi, seed, workers).
#include <nanobind/nanobind.h>

#include "count_cpu.hpp"

namespace nb = nanobind;
using namespace nb::literals;

NB_MODULE(_native, m) {
    m.doc() = "partally's C++ CPU kernels (private; use partally.compute)";
    m.def(
        "count",
        [](uint64_t lo, uint64_t hi, uint64_t /*seed*/, unsigned workers) {
            nb::gil_scoped_release unlocked;
            return partally::count_count(lo, hi, workers);
        },
        "lo"_a, "hi"_a, "seed"_a, "workers"_a);
    m.def(
        "primes",
        [](uint64_t lo, uint64_t hi, uint64_t /*seed*/, unsigned workers) {
            nb::gil_scoped_release unlocked;
            return partally::count_primes(lo, hi, workers);
        },
        "lo"_a, "hi"_a, "seed"_a, "workers"_a);
    m.def(
        "pi",
        [](uint64_t lo, uint64_t hi, uint64_t seed, unsigned workers) {
            nb::gil_scoped_release unlocked;
            return partally::count_pi(lo, hi, seed, workers);
        },
        "lo"_a, "hi"_a, "seed"_a, "workers"_a);
}
