// CUDA kernels of the `cuda` backend: one extern "C" kernel per workload, launched through CuPy.
// The per-element predicates are the C++ CPU kernels' own (elements.hpp).
//
// Every kernel counts the i in [lo, hi) that satisfy its workload and adds the count to *out:
//   - a grid-stride loop with a 64-bit index (hi may be up to 2**63) and a 64-bit count per thread
//     (the per-thread loops are in elements.hpp, where a host build checks them);
//   - a per-block reduction: warp shuffle, then one shared-memory slot per warp, then warp 0;
//   - one atomicAdd per block into the 64-bit total.
// blockDim.x must be a multiple of 32 (full warps, for the shuffles) and at most 1024.
//
// Built by CMake with nvcc into counting.fatbin; the Python side compiles this same file with NVRTC
// (include path: the folder holding elements.hpp) when the fatbin is missing or refused.

#include "elements.hpp"

namespace {

__device__ __forceinline__ unsigned long long warp_sum(unsigned long long v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;
}

// Adds every thread's `mine` to *out: one atomicAdd per block.
__device__ __forceinline__ void block_add(unsigned long long mine, unsigned long long *out) {
    __shared__ unsigned long long per_warp[32];
    const unsigned lane = threadIdx.x & 31u;
    const unsigned warp = threadIdx.x >> 5;
    mine = warp_sum(mine);
    if (lane == 0) per_warp[warp] = mine;
    __syncthreads();
    if (warp == 0) {
        mine = lane < (blockDim.x >> 5) ? per_warp[lane] : 0ull;
        mine = warp_sum(mine);
        if (lane == 0 && mine != 0) atomicAdd(out, mine);
    }
}

__device__ __forceinline__ uint64_t first_index(uint64_t lo) {
    return lo + (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ uint64_t grid_stride() { return (uint64_t)gridDim.x * blockDim.x; }

}  // namespace

// The guide's loop, `result += 1` per element. g++ and LLVM fold that loop to a closed form; nvcc
// does not (it keeps the grid-stride loop, and a counted loop too, unrolled by four), which would
// make n near 2**63 take days. So the fold is written out: each thread adds its trip count of the
// grid-stride loop. Timings of this kernel measure launch overhead, not counting, as on the CPU.
extern "C" __global__ void partally_count(uint64_t lo, uint64_t hi, uint64_t seed,
                                          unsigned long long *out) {
    (void)seed;
    const uint64_t first = first_index(lo);
    const uint64_t trips = first < hi ? (hi - 1 - first) / grid_stride() + 1 : 0;
    block_add(trips, out);
}

// i is prime (hi <= 2**32: the caller checks).
extern "C" __global__ void partally_primes(uint64_t lo, uint64_t hi, uint64_t seed,
                                           unsigned long long *out) {
    (void)seed;
    block_add(partally::primes_strided(first_index(lo), hi, grid_stride()), out);
}

// splitmix64's point for index i falls inside the quarter circle (the loop: pi_strided).
extern "C" __global__ void partally_pi(uint64_t lo, uint64_t hi, uint64_t seed,
                                       unsigned long long *out) {
    block_add(partally::pi_strided(first_index(lo), hi, grid_stride(), seed), out);
}
