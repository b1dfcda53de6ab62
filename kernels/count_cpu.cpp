#include "count_cpu.hpp"

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

#include "elements.hpp"

// Portable wheels, fast loops: GCC/Clang build one clone per x86-64 level and pick at load time.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__INTEL_COMPILER)
#define PARTALLY_CLONES \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define PARTALLY_AVX2_PI 1
#include "pi_avx2.hpp"
#else
#define PARTALLY_CLONES
#endif

namespace partally {
namespace {

// The guide's loop. Compilers fold it to `hi - lo`: its timings measure call overhead.
uint64_t count_block(uint64_t lo, uint64_t hi, uint64_t) {
    uint64_t total = 0;
    for (uint64_t i = lo; i < hi; ++i) total += 1;
    return total;
}

PARTALLY_CLONES uint64_t primes_block(uint64_t lo, uint64_t hi, uint64_t) {
    uint64_t total = 0;
    for (uint64_t i = lo; i < hi; ++i) total += is_prime(i);
    return total;
}

PARTALLY_CLONES uint64_t pi_block_portable(uint64_t lo, uint64_t hi, uint64_t seed) {
    uint64_t total = 0;
    for (uint64_t i = lo; i < hi; ++i) total += pi_hit(i, seed);
    return total;
}

uint64_t pi_block(uint64_t lo, uint64_t hi, uint64_t seed) {
#if defined(PARTALLY_AVX2_PI)
    // With AVX-512 the x86-64-v4 clone (vpmullq) matched Numba; with AVX2 alone g++'s own
    // vectorisation was 2.3x slower than Numba's, so the intrinsics loop runs there.
    static const bool avx2_only =
        __builtin_cpu_supports("avx2") && !__builtin_cpu_supports("avx512dq");
    if (avx2_only) return avx2::pi_block(lo, hi, seed);
#endif
    return pi_block_portable(lo, hi, seed);
}

template <uint64_t (*Block)(uint64_t, uint64_t, uint64_t)>
uint64_t count_parallel(uint64_t lo, uint64_t hi, uint64_t seed, unsigned workers,
                        uint64_t min_block) {
    if (hi <= lo) return 0;
    const uint64_t size = hi - lo;
    // No more threads than there are min_block-sized pieces of work.
    const unsigned threads = (unsigned)std::min<uint64_t>(std::max(1u, workers),
                                                          std::max<uint64_t>(1, size / min_block));
    if (threads == 1) return Block(lo, hi, seed);
    // Up to 16 blocks per thread (dynamic balance), and a multiple of the threads in number:
    // 3 blocks on 2 threads would leave one idle for a third of the run.
    uint64_t blocks = std::min<uint64_t>(16ull * threads, size / min_block);
    blocks -= blocks % threads;
    const uint64_t block = (size + blocks - 1) / blocks;
    std::atomic<uint64_t> next{0};
    std::vector<uint64_t> partial(threads, 0);
    auto work = [&](unsigned t) {
        uint64_t sum = 0;
        for (uint64_t b = next.fetch_add(1); b < blocks; b = next.fetch_add(1)) {
            const uint64_t a = lo + b * block;
            if (a < hi) sum += Block(a, std::min(hi, a + block), seed);
        }
        partial[t] = sum;
    };
    std::vector<std::thread> pool;
    pool.reserve(threads - 1);
    for (unsigned t = 1; t < threads; ++t) pool.emplace_back(work, t);
    work(0);
    for (auto &th : pool) th.join();
    uint64_t total = 0;
    for (uint64_t p : partial) total += p;
    return total;
}

}  // namespace

uint64_t count_count(uint64_t lo, uint64_t hi, uint64_t, unsigned) {
    return hi > lo ? count_block(lo, hi, 0) : 0;  // folded to hi - lo: threads would only cost
}

uint64_t count_primes(uint64_t lo, uint64_t hi, uint64_t, unsigned workers) {
    return count_parallel<primes_block>(lo, hi, 0, workers, 1ull << 12);
}

uint64_t count_pi(uint64_t lo, uint64_t hi, uint64_t seed, unsigned workers) {
    return count_parallel<pi_block>(lo, hi, seed, workers, 1ull << 16);
}

}  // namespace partally
