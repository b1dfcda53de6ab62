// partally's C++ CPU kernels: count the i in [lo, hi) that satisfy a workload's predicate,
// on `workers` std::threads pulling blocks from a shared counter (load balance for primes).
#pragma once
#include <stdint.h>

namespace partally {

uint64_t count_count(uint64_t lo, uint64_t hi, uint64_t seed, unsigned workers);
uint64_t count_primes(uint64_t lo, uint64_t hi, uint64_t seed, unsigned workers);
uint64_t count_pi(uint64_t lo, uint64_t hi, uint64_t seed, unsigned workers);

}  // namespace partally
