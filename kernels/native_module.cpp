// partally._native: the C++ CPU kernels as a private Python extension (nanobind).
// Every kernel takes (lo, hi, seed, workers) and releases the GIL for the whole count.
#include <nanobind/nanobind.h>

#include "count_cpu.hpp"

namespace nb = nanobind;
using namespace nb::literals;

using Counter = uint64_t (*)(uint64_t, uint64_t, uint64_t, unsigned);

template <Counter count>
uint64_t without_gil(uint64_t lo, uint64_t hi, uint64_t seed, unsigned workers) {
    nb::gil_scoped_release unlocked;
    return count(lo, hi, seed, workers);
}

NB_MODULE(_native, m) {
    m.doc() = "partally's C++ CPU kernels (private; use partally.compute)";
    m.def("count", &without_gil<partally::count_count>, "lo"_a, "hi"_a, "seed"_a, "workers"_a);
    m.def("primes", &without_gil<partally::count_primes>, "lo"_a, "hi"_a, "seed"_a, "workers"_a);
    m.def("pi", &without_gil<partally::count_pi>, "lo"_a, "hi"_a, "seed"_a, "workers"_a);
}
