// CUDA kernels of the fused ops and the executor that launches them.
//
// Each kernel is a thin loop around the device-agnostic work functions of
// work.h (which the CPU emulator runs too); what is CUDA-only lives here:
// thread indexing, shared memory, __syncwarp/__syncthreads and the warp
// shuffles of the per-unit reductions. The reductions have a fixed shape
// (shuffle-down trees, strand trees), so results are bitwise reproducible.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "tiled/lane_work.h"

namespace shufflenet_fused {
namespace cuda_kernels {

using work::kFinalChannels;
using work::kFinalStrands;
using work::kLanes;
using work::kWarpsPerBlock;
using work::Mode;

constexpr int kBlockThreads = kLanes * kWarpsPerBlock;
// __launch_bounds__(kBlockThreads, 1): with the block size alone, ptxas aims
// at 64/80/128 registers and spills a few bytes to get there; with min 1 block
// it only caps at 255 and needs no spills (our tiles keep occupancy up by
// having 8 independent warps per block).
constexpr int kPrepThreads = 256;

// ------------------------------------------------------ warp reductions ----

template <typename T>
__device__ __forceinline__ T shfl_down(T v, int offset) {
  return __shfl_down_sync(0xffffffffu, v, offset);
}

// Lane 0 ends with the combination of all 32 lanes, in the order
// ((l, l+16), then (l, l+8), ...): the order the CPU emulator uses too.
template <int R, typename acc_t>
__device__ __forceinline__ work::Sums<R, acc_t> warp_reduce(work::Sums<R, acc_t> s) {
#pragma unroll
  for (int offset = kLanes / 2; offset > 0; offset >>= 1) {
    work::Sums<R, acc_t> o;
#pragma unroll
    for (int i = 0; i < R; ++i) o.v[i] = shfl_down(s.v[i], offset);
    s = work::combine(s, o);
  }
  return s;
}

template <typename acc_t>
__device__ __forceinline__ Moments<acc_t> warp_reduce(Moments<acc_t> m) {
#pragma unroll
  for (int offset = kLanes / 2; offset > 0; offset >>= 1) {
    const Moments<acc_t> o{shfl_down(m.n, offset), shfl_down(m.mean, offset), shfl_down(m.m2, offset)};
    m = merge(m, o);
  }
  return m;
}

// Sums red[0..kFinalStrands)[tx] into red[0][tx] with a fixed tree; every
// thread of the block must call it.
__device__ __forceinline__ void strand_tree(double (*red)[kFinalChannels], int tx, int ty) {
#pragma unroll
  for (int stride = kFinalStrands / 2; stride > 0; stride >>= 1) {
    __syncthreads();
    if (ty < stride) red[ty][tx] += red[ty + stride][tx];
  }
  __syncthreads();
}

// --------------------------------------------------------------- kernels ----

template <typename scalar_t, typename acc_t>
__global__ void prep_kernel(work::Prep kind, work::PrepArgs<scalar_t, acc_t> a) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c < a.C) work::prep_lane(kind, a, c);
}

// NCHW conv pass: a warp per (n, lane channel, output tile).
template <Mode M, int K, int S, typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kBlockThreads, 1)
    nchw_tile_kernel(work::TileArgs<scalar_t, acc_t> a, work::TilePlan p) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int lane = threadIdx.x % kLanes;
  const int warp = threadIdx.x / kLanes;
  acc_t* tile = reinterpret_cast<acc_t*>(smem_raw) + warp * p.smem_elems;
  const ChannelMap map(a.geo.C, a.geo.groups, a.geo.shuffle_last);
  const int64_t step = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t u = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp; u < p.units; u += step) {
    const work::Unit unit = work::decode_nchw_unit(u, p.tiles_h, p.tiles_w, a.geo.C);
    work::nchw_stage_input<K, S>(a, p, unit, tile, lane, kLanes);
    const LaneChannels channels = map.lane_of_input(unit.c);
    work::LaneCoefs<K * K, acc_t> coefs;
    work::load_lane_coefs(a.table, a.geo.C, unit.c, coefs);
    work::LaneAcc<M, K * K, acc_t> acc;
    __syncwarp();
    work::nchw_lane_work<M, K, S>(a, p, unit, channels, coefs, tile, lane, kLanes, acc);
    if constexpr (M != Mode::Eval) {
      const auto total = warp_reduce(acc.partial());
      if (lane == 0) work::write_partial<M, K * K>(a, p.slots, unit.slot, unit.c, total);
    }
    __syncwarp();  // the next unit's staging overwrites the tile
  }
}

// channels_last conv pass: a warp per (n, output tile, 32 channels), lane = channel.
template <Mode M, int K, int S, typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kBlockThreads, 1)
    cl_tile_kernel(work::TileArgs<scalar_t, acc_t> a, work::TilePlan p) {
  const int lane = threadIdx.x % kLanes;
  const int warp = threadIdx.x / kLanes;
  const ChannelMap map(a.geo.C, a.geo.groups, a.geo.shuffle_last);
  const int64_t step = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t u = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp; u < p.units; u += step) {
    const work::Unit unit = work::decode_cl_unit(u, p.tiles_h, p.tiles_w, p.channel_groups);
    const int64_t c = unit.c + lane;
    if (c >= a.geo.C) continue;  // no collectives below: idle lanes may leave
    const LaneChannels channels = map.lane_of_input(c);
    work::LaneCoefs<K * K, acc_t> coefs;
    work::load_lane_coefs(a.table, a.geo.C, c, coefs);
    work::LaneAcc<M, K * K, acc_t> acc;
    work::cl_lane_work<M, K, S>(a, p, unit, channels, coefs, acc);
    if constexpr (M != Mode::Eval) work::write_partial<M, K * K>(a, p.slots, unit.slot, c, acc.partial());
  }
}

// NCHW grad_input: a warp per (n, channel, input tile); the covering dz
// region is staged in shared memory.
template <int K, int S, typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kBlockThreads, 1)
    nchw_input_grad_kernel(work::InputGradArgs<scalar_t, acc_t> a, work::InputGradPlan p) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int lane = threadIdx.x % kLanes;
  const int warp = threadIdx.x / kLanes;
  acc_t* tile = reinterpret_cast<acc_t*>(smem_raw) + warp * p.smem_elems;
  const int64_t step = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t u = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp; u < p.units; u += step) {
    const work::Unit unit = work::decode_nchw_unit(u, p.tiles_h, p.tiles_w, a.geo.C);
    work::nchw_stage_dz<K, S>(a, p, unit, tile, lane, kLanes);
    math::Taps<K * K, acc_t> w;
    w.load(a.table + unit.c, a.geo.C);
    __syncwarp();
    work::nchw_input_grad_lane<K, S>(a, p, unit, w, tile, lane, kLanes);
    __syncwarp();
  }
}

// channels_last grad_input: a warp per (n, input tile, 32 channels).
template <int K, int S, typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kBlockThreads, 1)
    cl_input_grad_kernel(work::InputGradArgs<scalar_t, acc_t> a, work::InputGradPlan p) {
  const int lane = threadIdx.x % kLanes;
  const int warp = threadIdx.x / kLanes;
  const int64_t step = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t u = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp; u < p.units; u += step) {
    const work::Unit unit = work::decode_cl_unit(u, p.tiles_h, p.tiles_w, p.channel_groups);
    const int64_t c = unit.c + lane;
    if (c >= a.geo.C) continue;
    math::Taps<K * K, acc_t> w;
    w.load(a.table + c, a.geo.C);
    work::cl_input_grad_lane<K, S>(a, p, unit, c, w);
  }
}

// Finalize: block = kFinalChannels channels x kFinalStrands strands.
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kFinalChannels* kFinalStrands)
    finalize_stats_kernel(work::FinalizeArgs<scalar_t, acc_t> a) {
  __shared__ double red_n[kFinalStrands][kFinalChannels];
  __shared__ double red_s[kFinalStrands][kFinalChannels];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kFinalChannels + tx;
  const bool active = c < a.C;
  double n = 0.0, s = 0.0;
  if (active) work::strand_count_sum(a.part, a.slots, a.C, c, ty, &n, &s);
  red_n[ty][tx] = n;
  red_s[ty][tx] = s;
  strand_tree(red_n, tx, ty);
  strand_tree(red_s, tx, ty);
  const double count = red_n[0][tx];
  const double mean = count > 0.0 ? red_s[0][tx] / count : 0.0;
  const double m2 = active ? work::strand_m2(a.part, a.slots, a.C, c, ty, mean) : 0.0;
  __syncthreads();  // everyone has read red_s[0] before it is overwritten
  red_s[ty][tx] = m2;
  strand_tree(red_s, tx, ty);
  if (ty == 0 && active) work::finish_stats(a, c, count, mean, red_s[0][tx]);
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kFinalChannels* kFinalStrands)
    finalize_grad_stats_kernel(work::FinalizeArgs<scalar_t, acc_t> a) {
  __shared__ double red_g[kFinalStrands][kFinalChannels];
  __shared__ double red_gz[kFinalStrands][kFinalChannels];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kFinalChannels + tx;
  const bool active = c < a.C;
  red_g[ty][tx] = active ? work::strand_sum(a.part, a.slots, a.C, c, ty) : 0.0;
  red_gz[ty][tx] = active ? work::strand_sum(a.part + a.slots * a.C, a.slots, a.C, c, ty) : 0.0;
  strand_tree(red_g, tx, ty);
  strand_tree(red_gz, tx, ty);
  if (ty == 0 && active) work::finish_grad_stats(a, c, red_g[0][tx], red_gz[0][tx]);
}

// grid.y = weight tap.
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kFinalChannels* kFinalStrands)
    finalize_weight_grad_kernel(work::FinalizeArgs<scalar_t, acc_t> a) {
  __shared__ double red[kFinalStrands][kFinalChannels];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int t = blockIdx.y;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kFinalChannels + tx;
  const bool active = c < a.C;
  red[ty][tx] = active ? work::strand_sum(a.part + t * a.slots * a.C, a.slots, a.C, c, ty) : 0.0;
  strand_tree(red, tx, ty);
  if (ty == 0 && active) work::finish_weight_grad(a, c, t, red[0][tx]);
}

// -------------------------------------------------------------- executor ----

inline unsigned int grid_for(int64_t units, int64_t per_block) {
  return static_cast<unsigned int>(std::min<int64_t>(work::div_up(units, per_block), INT_MAX));
}

// Launches on the current stream of the current device (the caller holds a
// device guard for the input's device).
struct CudaExec {
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();

  void fresh(at::Tensor&) {}  // outputs are poisoned by the tests, not here

  template <typename scalar_t, typename acc_t>
  void prep(work::Prep kind, const work::PrepArgs<scalar_t, acc_t>& a) {
    prep_kernel<scalar_t, acc_t><<<grid_for(a.C, kPrepThreads), kPrepThreads, 0, stream>>>(kind, a);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  template <Mode M, int K, int S, typename scalar_t, typename acc_t>
  void tile(const work::TileArgs<scalar_t, acc_t>& a, const work::TilePlan& p) {
    const unsigned int grid = grid_for(p.units, kWarpsPerBlock);
    if (a.geo.channels_last) {
      cl_tile_kernel<M, K, S><<<grid, kBlockThreads, 0, stream>>>(a, p);
    } else {
      const size_t smem = static_cast<size_t>(kWarpsPerBlock) * p.smem_elems * sizeof(acc_t);
      nchw_tile_kernel<M, K, S><<<grid, kBlockThreads, smem, stream>>>(a, p);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  template <int K, int S, typename scalar_t, typename acc_t>
  void input_grad(const work::InputGradArgs<scalar_t, acc_t>& a, const work::InputGradPlan& p) {
    const unsigned int grid = grid_for(p.units, kWarpsPerBlock);
    if (a.geo.channels_last) {
      cl_input_grad_kernel<K, S><<<grid, kBlockThreads, 0, stream>>>(a, p);
    } else {
      const size_t smem = static_cast<size_t>(kWarpsPerBlock) * p.smem_elems * sizeof(acc_t);
      nchw_input_grad_kernel<K, S><<<grid, kBlockThreads, smem, stream>>>(a, p);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  template <typename scalar_t, typename acc_t>
  void finalize_stats(const work::FinalizeArgs<scalar_t, acc_t>& a) {
    finalize_stats_kernel<<<grid_for(a.C, kFinalChannels), dim3(kFinalChannels, kFinalStrands), 0, stream>>>(a);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  template <typename scalar_t, typename acc_t>
  void finalize_grad_stats(const work::FinalizeArgs<scalar_t, acc_t>& a) {
    finalize_grad_stats_kernel<<<grid_for(a.C, kFinalChannels), dim3(kFinalChannels, kFinalStrands), 0,
                                 stream>>>(a);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  template <typename scalar_t, typename acc_t>
  void finalize_weight_grad(const work::FinalizeArgs<scalar_t, acc_t>& a) {
    const dim3 grid(grid_for(a.C, kFinalChannels), static_cast<unsigned int>(a.KK));
    finalize_weight_grad_kernel<<<grid, dim3(kFinalChannels, kFinalStrands), 0, stream>>>(a);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

}  // namespace cuda_kernels
}  // namespace shufflenet_fused
