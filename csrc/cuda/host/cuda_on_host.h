// The CUDA execution model on host threads, so that csrc/cuda/kernels.cuh can
// be compiled as host C++ and its kernels run on a machine without a GPU
// (tests only: csrc/cuda/host/host_runner_test_ops.cpp).
//
// Include this before kernels.cuh. A launch (host::launch) runs the blocks
// of the grid one after another; each block's CUDA threads run as a team of
// host threads or fibers (team.h), so the kernels' own barriers, warp
// shuffles and shared-memory slicing execute as written:
//   - threadIdx / blockIdx / blockDim / gridDim: per CUDA thread;
//   - __syncthreads(): a barrier of the block's threads; __syncwarp(): a
//     barrier of the 32 threads of the caller's warp (warps are consecutive
//     linear thread indices, as on the GPU). A thread that returns from the
//     kernel drops out of both, as an exited CUDA thread does;
//   - __shfl_down_sync: each lane publishes its value in a per-warp slot, the
//     warp meets at a barrier, each lane reads lane + offset's slot (its own
//     value when that lane is past the warp), and the warp meets again before
//     the slots are reused;
//   - static __shared__ arrays: function-local statics (one block runs at a
//     time, and one launch per process: launches are serialized); dynamic shared memory (SF_DYNAMIC_SHARED): a buffer of exactly
//     the launch's byte count, filled with 0xFF (NaN in every float type), so
//     AddressSanitizer sees an access past it;
//   - __CUDA_ARCH__ is defined, so the device-only branches of the shared
//     headers (16-byte float4/double2 loads) are the ones compiled; float4 and
//     double2 carry CUDA's alignment, so UBSan flags a misaligned vector load.
// What it cannot show: timing, coalescing, real warp scheduling (lanes here
// interleave arbitrarily, which is stricter than lockstep for the races a
// missing barrier causes), register or shared-memory limits, several blocks
// on one SM at once.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <type_traits>
#include <vector>

#include "cuda/host/team.h"

#if defined(__CUDACC__)
#error "cuda_on_host.h is for host compilers; nvcc builds the real kernels"
#endif

#define __CUDA_ARCH__ 900
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define __shared__ static
#define SF_DYNAMIC_SHARED(name) unsigned char* const name = ::shufflenet_fused::cuda::host::dynamic_shared()

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
  unsigned int x, y, z;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(16) double2 {
  double x, y;
};

namespace shufflenet_fused {
namespace cuda {
namespace host {

constexpr int kWarpSize = 32;

// What the threads of one block share.
struct Block {
  Block(int threads, size_t dynamic_bytes)
      : block_barrier(threads), dynamic(dynamic_bytes, 0xFF), shuffle_slots((threads + kWarpSize - 1) / kWarpSize) {
    for (int w = 0; w * kWarpSize < threads; ++w)
      warp_barriers.push_back(std::make_unique<Barrier>(std::min(kWarpSize, threads - w * kWarpSize)));
  }

  Barrier block_barrier;
  std::vector<std::unique_ptr<Barrier>> warp_barriers;
  std::vector<unsigned char> dynamic;
  // One 8-byte slot per lane and warp: the widest value the kernels shuffle.
  std::vector<std::array<uint64_t, kWarpSize>> shuffle_slots;
};

// A CUDA thread's block, position and launch shape.
struct ThreadState {
  Block* block = nullptr;
  int linear = 0;
  uint3 thread_idx{0, 0, 0}, block_idx{0, 0, 0};
  dim3 block_dim, grid_dim;
};

// Threads mode: each OS thread's own state. Fibers mode: the states of the
// launch running on this OS thread, indexed by the running fiber.
inline ThreadState*& thread_state() {
  thread_local ThreadState* state = nullptr;
  return state;
}
inline std::vector<ThreadState>*& fiber_states() {
  thread_local std::vector<ThreadState>* states = nullptr;
  return states;
}

inline ThreadState& self() {
  if (FiberTeam* team = current_fiber_team()) return (*fiber_states())[team->current()];
  return *thread_state();
}

inline unsigned char* dynamic_shared() { return self().block->dynamic.data(); }

inline void sync_block() { self().block->block_barrier.arrive_and_wait(); }

inline void sync_warp() { self().block->warp_barriers[self().linear / kWarpSize]->arrive_and_wait(); }

template <typename T>
T shfl_down(T v, unsigned int offset) {
  static_assert(sizeof(T) <= sizeof(uint64_t) && std::is_trivially_copyable<T>::value, "value too wide to shuffle");
  ThreadState& s = self();
  const int warp = s.linear / kWarpSize, lane = s.linear % kWarpSize;
  auto& slots = s.block->shuffle_slots[warp];
  std::memcpy(&slots[lane], &v, sizeof(T));
  sync_warp();
  T out = v;
  if (lane + static_cast<int>(offset) < kWarpSize) std::memcpy(&out, &slots[lane + offset], sizeof(T));
  sync_warp();  // every lane has read before the next shuffle overwrites the slots
  return out;
}

// Runs kernel() as a grid of blocks, one block at a time, each block's
// threads as one team (team.h). `kernel` is a callable with no arguments (a
// lambda that calls the __global__ function with its launch arguments). One
// team serves every block of the launch: between two blocks it meets, and
// member 0 gives the next block fresh shared state.
template <typename Kernel>
void launch(dim3 grid, dim3 block, size_t dynamic_bytes, const Kernel& kernel) {
  const int threads = static_cast<int>(block.x * block.y * block.z);
  const int64_t blocks = static_cast<int64_t>(grid.x) * grid.y * grid.z;
  if (threads == 0 || blocks == 0) return;
  static std::mutex one_launch_at_a_time;  // the static __shared__ arrays are per process
  std::lock_guard<std::mutex> serialized(one_launch_at_a_time);
  std::unique_ptr<Block> shared;
  Barrier between_blocks(threads);
  std::vector<ThreadState> states(threads);
  fiber_states() = &states;
  run_team(threads, [&](int t) {
    ThreadState& s = states[t];
    thread_state() = &s;
    s.linear = t;
    s.thread_idx = uint3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
    s.block_dim = block;
    s.grid_dim = grid;
    for (int64_t b = 0; b < blocks; ++b) {
      if (t == 0) shared = std::make_unique<Block>(threads, dynamic_bytes);
      between_blocks.arrive_and_wait();  // the block's shared state is ready
      s.block = shared.get();
      s.block_idx = uint3{static_cast<unsigned int>(b % grid.x), static_cast<unsigned int>((b / grid.x) % grid.y),
                          static_cast<unsigned int>(b / (static_cast<int64_t>(grid.x) * grid.y))};
      kernel();
      s.block->warp_barriers[t / kWarpSize]->arrive_and_drop();
      s.block->block_barrier.arrive_and_drop();
      s.block = nullptr;
      between_blocks.arrive_and_wait();  // every thread is done with it
    }
    thread_state() = nullptr;
  });
  fiber_states() = nullptr;
}

}  // namespace host
}  // namespace cuda
}  // namespace shufflenet_fused

#define threadIdx (::shufflenet_fused::cuda::host::self().thread_idx)
#define blockIdx (::shufflenet_fused::cuda::host::self().block_idx)
#define blockDim (::shufflenet_fused::cuda::host::self().block_dim)
#define gridDim (::shufflenet_fused::cuda::host::self().grid_dim)

inline void __syncthreads() { ::shufflenet_fused::cuda::host::sync_block(); }
inline void __syncwarp(unsigned int = 0xffffffffu) { ::shufflenet_fused::cuda::host::sync_warp(); }

template <typename T>
T __shfl_down_sync(unsigned int, T v, unsigned int offset) {
  return ::shufflenet_fused::cuda::host::shfl_down(v, offset);
}
