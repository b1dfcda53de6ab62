// Per-element predicates of partally's workloads, shared by the C++ CPU kernels (count_cpu.cpp)
// and the CUDA kernels (counting.cu). Definitions: shared/DESIGN.md, "Workloads".
// Everything here must compile with g++/clang++ and nvcc alike.
#pragma once
#if defined(__CUDACC_RTC__)
// NVRTC (the cuda backend's run-time fallback) has no C library headers: name the two types here.
typedef unsigned int uint32_t;
typedef unsigned long long uint64_t;
#else
#include <stdint.h>
#endif

#if defined(__CUDACC__)
#define PARTALLY_HD __host__ __device__ __forceinline__
#else
#define PARTALLY_HD inline
#endif

namespace partally {

// ---- pi: splitmix64 point for index i, inside the quarter circle? -------------------------
PARTALLY_HD uint64_t pi_hit(uint64_t i, uint64_t seed) {
    uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z = z ^ (z >> 31);
    const uint64_t x = z & 0x7FFFFFFFull;
    const uint64_t y = (z >> 32) & 0x7FFFFFFFull;
    return (x * x + y * y) < (1ull << 62);
}

// ---- primes: trial division by the primes up to 61, then Miller-Rabin with bases 2, 7, 61 ---
// (deterministic below 4,759,123,141 > 2**32) in 32-bit Montgomery arithmetic, R = 2**32.

struct Montgomery32 {
    uint32_t n;      // odd modulus
    uint32_t n_inv;  // n**-1 mod 2**32
    uint32_t one;    // R mod n, i.e. 1 in Montgomery form
};

PARTALLY_HD uint32_t mont_reduce(uint64_t t, const Montgomery32 &m) {
    // (t - q*n) / R with q = t * n**-1 mod R: exact, in (-n, n); t < n*R.
    const uint32_t q = (uint32_t)t * m.n_inv;
    const uint32_t t_hi = (uint32_t)(t >> 32);
    const uint32_t qn_hi = (uint32_t)(((uint64_t)q * m.n) >> 32);
    return t_hi - qn_hi + (t_hi < qn_hi ? m.n : 0u);
}

PARTALLY_HD uint32_t mont_mul(uint32_t a, uint32_t b, const Montgomery32 &m) {
    return mont_reduce((uint64_t)a * b, m);
}

PARTALLY_HD bool miller_rabin_round(uint32_t base, uint32_t d, int s, uint32_t r2,
                                    const Montgomery32 &m) {
    const uint32_t minus_one = m.n - m.one;
    uint32_t b = mont_mul(base, r2, m);  // base in Montgomery form
    uint32_t x = m.one;
    while (d) {
        if (d & 1u) x = mont_mul(x, b, m);
        b = mont_mul(b, b, m);
        d >>= 1;
    }
    if (x == m.one || x == minus_one) return true;
    for (int r = 1; r < s; ++r) {
        x = mont_mul(x, x, m);
        if (x == minus_one) return true;
    }
    return false;
}

PARTALLY_HD uint64_t is_prime(uint64_t i) {
    if (i < 2) return 0;
    const uint32_t small[18] = {2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61};
    for (int k = 0; k < 18; ++k) {
        if (i % small[k] == 0) return i == small[k];
    }
    if (i < 67 * 67) return 1;
    const uint32_t n = (uint32_t)i;  // i <= 2**32 - 1 here (callers check the range)
    Montgomery32 m;
    m.n = n;
    uint32_t inv = n;  // Newton's iteration: 3, 6, 12, 24, 48 correct bits
    for (int k = 0; k < 4; ++k) inv *= 2u - n * inv;
    m.n_inv = inv;
    const uint32_t r2 = (uint32_t)((0ull - (uint64_t)n) % n);  // R**2 mod n = 2**64 mod n
    m.one = mont_reduce(r2, m);
    uint32_t d = n - 1;
    int s = 0;
    while ((d & 1u) == 0) { d >>= 1; ++s; }
    return miller_rabin_round(2, d, s, r2, m) && miller_rabin_round(7, d, s, r2, m) &&
           miller_rabin_round(61, d, s, r2, m);
}

}  // namespace partally
