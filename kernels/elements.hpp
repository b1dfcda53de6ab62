// Per-element predicates of partally's workloads, shared by the C++ CPU kernels (count_cpu.cpp)
// and the CUDA kernels (counting.cu). Definitions: docs/definitions.md, "The built-in workloads".
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

// PARTALLY_WARP: the code paths written for a GPU's warps (branch-free trial division). On for
// device code; a host build may define it to check those paths on a CPU (tests/test_kernel_loops.py).
#if defined(__CUDA_ARCH__) && !defined(PARTALLY_WARP)
#define PARTALLY_WARP 1
#endif

namespace partally {

// ---- pi: splitmix64 point for index i, inside the quarter circle? -------------------------
constexpr uint64_t PI_GOLDEN = 0x9E3779B97F4A7C15ull;

// splitmix64's state for index i. It grows by PI_GOLDEN per index, so a loop over i, i + stride,
// ... can add stride * PI_GOLDEN instead of multiplying (the CUDA kernel does).
PARTALLY_HD uint64_t pi_state(uint64_t i, uint64_t seed) { return seed + (i + 1) * PI_GOLDEN; }

// x*x + y*y for the point of state z (< 2**63: x, y < 2**31).
PARTALLY_HD uint64_t pi_radius2(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z = z ^ (z >> 31);
    const uint64_t x = z & 0x7FFFFFFFull;
    const uint64_t y = (z >> 32) & 0x7FFFFFFFull;
    return x * x + y * y;
}

// 1 when the point of state z misses the quarter circle (radius2 >= 2**62: bit 62 of a sum below
// 2**63), else 0.
#if defined(PARTALLY_WARP)
// The GPU's version, in 32-bit halves as a GPU computes anyway: a 64-bit multiply by a constant is
// written as three instructions (nvcc made four), and only the high word of radius2 is used.
PARTALLY_HD uint32_t pi_miss(uint64_t z) {
    uint32_t lo = (uint32_t)z, hi = (uint32_t)(z >> 32);
    lo ^= (lo >> 30) | (hi << 2);  // z ^= z >> 30
    hi ^= hi >> 30;
    uint64_t p = (uint64_t)lo * 0x1CE4E5B9u;  // z *= 0xBF58476D1CE4E5B9
    hi = (uint32_t)(p >> 32) + lo * 0xBF58476Du + hi * 0x1CE4E5B9u;
    lo = (uint32_t)p;
    lo ^= (lo >> 27) | (hi << 5);  // z ^= z >> 27
    hi ^= hi >> 27;
    p = (uint64_t)lo * 0x133111EBu;  // z *= 0x94D049BB133111EB
    hi = (uint32_t)(p >> 32) + lo * 0x94D049BBu + hi * 0x133111EBu;
    lo = (uint32_t)p;
    const uint32_t x = (lo ^ ((lo >> 31) | (hi << 1))) & 0x7FFFFFFFu;  // z ^= z >> 31, low 31 bits
    const uint32_t y = (hi ^ (hi >> 31)) & 0x7FFFFFFFu;                // bits 32..62
    return (uint32_t)(((uint64_t)x * x + (uint64_t)y * y) >> 62);
}
#else
PARTALLY_HD uint32_t pi_miss(uint64_t z) { return (uint32_t)(pi_radius2(z) >> 62); }
#endif

PARTALLY_HD uint64_t pi_hit(uint64_t i, uint64_t seed) {
    return pi_radius2(pi_state(i, seed)) < (1ull << 62);
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
#if defined(__CUDA_ARCH__)
    const uint32_t qn_hi = __umulhi(q, m.n);  // one IMAD.HI where the 64-bit product took two
#else
    const uint32_t qn_hi = (uint32_t)(((uint64_t)q * m.n) >> 32);
#endif
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

// n * p**-1 mod 2**32 for odd p (Newton's iteration, as for the Montgomery inverse below).
PARTALLY_HD constexpr uint32_t inverse_mod_2_32(uint32_t p) {
    uint32_t inv = p;
    for (int k = 0; k < 4; ++k) inv *= 2u - p * inv;
    return inv;
}

// Odd p divides n iff n * p**-1 mod 2**32 <= (2**32 - 1) / p: one multiply and one compare
// (both constants fold when p does), where n % p costs a multiply-high, a shift and a multiply.
PARTALLY_HD bool divisible(uint32_t n, uint32_t p) {
    return n * inverse_mod_2_32(p) <= 0xFFFFFFFFu / p;
}

constexpr uint64_t PRIMES_BELOW_64 = 0x28208a20a08a28acull;  // bit p set for each prime p < 64

PARTALLY_HD uint64_t is_prime(uint64_t i) {
    // i <= 2**32 - 1 (callers check the range), so everything here is 32-bit: a 64-bit remainder
    // is a long emulated sequence on a GPU and a 64-bit divide on a CPU.
    if (i < 64) return (PRIMES_BELOW_64 >> i) & 1u;
    const uint32_t n = (uint32_t)i;  // >= 64: a small prime that divides n is not n itself
    const uint32_t odd[17] = {3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61};
#if defined(PARTALLY_WARP)
    // A warp runs every test that its slowest lane needs, which is nearly always all of them
    // (13% of numbers pass all 18; 32 lanes): so run all, without branches (two instructions each).
    bool composite = (n & 1u) == 0u;
#pragma unroll
    for (int k = 0; k < 17; ++k) composite |= divisible(n, odd[k]);
    if (composite) return 0;
#else
    // One number at a time: stop at the first divisor (4.4 tests on average).
    if ((n & 1u) == 0u) return 0;
    for (int k = 0; k < 17; ++k) {
        if (divisible(n, odd[k])) return 0;
    }
#endif
    if (n < 67u * 67u) return 1;
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

// ---- the CUDA kernels' per-thread loops (counting.cu) ------------------------------------------
// Here, not in counting.cu, so that a host build can check them (tests/test_kernel_loops.py).
// Each counts the i in first, first + stride, first + 2*stride, ... below hi (stride >= 1).

PARTALLY_HD uint64_t strided_trips(uint64_t first, uint64_t hi, uint64_t stride) {
    return first < hi ? (hi - 1 - first) / stride + 1 : 0;
}

// pi: the state grows by stride * PI_GOLDEN per trip (an add, not a 64-bit multiply), and the loop
// counts misses in 32 bits: radius2 >> 62 is 1 for a miss (radius2 < 2**63), one shift-add per
// element where a 64-bit compare, select and 64-bit add were. The trips go in chunks of at most
// `chunk` (2**31), so that the 32-bit counters cannot wrap whatever the grid and range.
PARTALLY_HD uint64_t pi_strided(uint64_t first, uint64_t hi, uint64_t stride, uint64_t seed,
                                uint32_t chunk = 1u << 31) {
    const uint64_t trips = strided_trips(first, hi, stride);
    const uint64_t step = stride * PI_GOLDEN;
    uint64_t z = pi_state(first, seed);
    uint64_t misses = 0;
    for (uint64_t left = trips; left != 0;) {
        const uint32_t run = left < chunk ? (uint32_t)left : chunk;
        left -= run;
        uint32_t m = 0;
        for (uint32_t t = 0; t < run; ++t) {
            m += pi_miss(z);
            z += step;
        }
        misses += m;
    }
    return trips - misses;
}

// primes (hi <= 2**32: the caller checks).
PARTALLY_HD uint64_t primes_strided(uint64_t first, uint64_t hi, uint64_t stride) {
    uint64_t mine = 0;
    for (uint64_t i = first; i < hi; i += stride) mine += is_prime(i);
    return mine;
}

}  // namespace partally
