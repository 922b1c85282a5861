// The CUDA kernels of the fused ops.
//
// Each kernel is a thin loop around the device-agnostic lane work of
// csrc/tiled/ (which the CPU emulator runs too); what is CUDA-only lives here:
// thread indexing, shared memory, __syncwarp/__syncthreads and the warp
// shuffles of the per-unit reductions. The reductions have a fixed shape
// (shuffle-down trees, strand trees), so results are bitwise reproducible.
// cuda/launcher.cuh launches them on the GPU with the shapes of
// cuda/launch_shape.h; cuda/host/ runs them on host threads for the tests.
#pragma once

#include <cstdint>

#include "common/bn_math.h"
#include "common/channel_map.h"
#include "cuda/launch_shape.h"
#include "tiled/conv_window.h"
#include "tiled/finalize.h"
#include "tiled/lane_table.h"
#include "tiled/lane_work.h"
#include "tiled/tile_plan.h"
#include "tiled/walk_eval.h"

namespace shufflenet_fused {
namespace cuda {

using tiled::kFinalChannels;
using tiled::kFinalStrands;
using tiled::kLanes;
using tiled::kWarpsPerBlock;
using tiled::TilePass;

// The conv and grad_input kernels are declared with
// __launch_bounds__(kBlockThreads, 1) (launch_shape.h): with the block size
// alone, ptxas aims at a register count low enough for several blocks per SM
// and spills to get there; with a minimum of 1 block it only caps at 255 and
// spills nothing. Occupancy comes from the 8 independent warps of each block.

// A kernel's dynamic shared memory (the host runner, host/cuda_on_host.h,
// defines it as a per-block host buffer).
#ifndef SF_DYNAMIC_SHARED
#define SF_DYNAMIC_SHARED(name) extern __shared__ __align__(16) unsigned char name[]
#endif

// ------------------------------------------------------ warp reductions ----

template <typename T>
__device__ __forceinline__ T shfl_down(T v, int offset) {
  return __shfl_down_sync(0xffffffffu, v, offset);
}

// Lane 0 ends with the combination of all 32 lanes, in the order
// ((l, l+16), then (l, l+8), ...): the order the CPU emulator uses too.
template <int R, typename acc_t>
__device__ __forceinline__ tiled::Sums<R, acc_t> warp_reduce(tiled::Sums<R, acc_t> s) {
#pragma unroll
  for (int offset = kLanes / 2; offset > 0; offset >>= 1) {
    tiled::Sums<R, acc_t> o;
#pragma unroll
    for (int i = 0; i < R; ++i) o.v[i] = shfl_down(s.v[i], offset);
    s = tiled::combine(s, o);
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

// ---------------------------------------------------------- warp units ----

// This thread's lane and the warp units it visits: first, first + step, ...
// (a grid-stride loop over warps; the grid may have fewer warps than units).
struct WarpUnits {
  int lane;
  int64_t first, step;
};

__device__ __forceinline__ WarpUnits warp_units() {
  const int warp = threadIdx.x / kLanes;
  return WarpUnits{static_cast<int>(threadIdx.x % kLanes),
                   static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp,
                   static_cast<int64_t>(gridDim.x) * kWarpsPerBlock};
}

// This warp's slice of the dynamic shared memory, `elems` acc_t per warp.
template <typename acc_t>
__device__ __forceinline__ acc_t* warp_smem(unsigned char* smem, int elems) {
  return reinterpret_cast<acc_t*>(smem) + (threadIdx.x / kLanes) * elems;
}

// --------------------------------------------------------------- kernels ----

template <typename scalar_t, typename acc_t>
__global__ void prep_kernel(tiled::Prep kind, tiled::PrepArgs<scalar_t, acc_t> a) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c < a.C) tiled::prep_lane(kind, a, c);
}

// NCHW conv pass: a warp per (block of batch entries, lane channel, output tile).
template <TilePass P, int K, int S, typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kBlockThreads, 1)
    nchw_tile_kernel(tiled::TileArgs<scalar_t, acc_t> a, tiled::TilePlan p) {
  SF_DYNAMIC_SHARED(smem_raw);
  const WarpUnits w = warp_units();
  acc_t* tile = warp_smem<acc_t>(smem_raw, p.smem_elems);
  const ChannelMap map = a.geo.channel_map();
  for (int64_t u = w.first; u < p.units; u += w.step) {
    const tiled::Unit unit = tiled::decode_nchw_tile_unit(u, p, a.geo.N, a.geo.C);
    tiled::nchw_stage_input<K, S>(a, p, unit, tile, w.lane, kLanes);
    const LaneChannels channels = map.lane_of_input(unit.c);
    tiled::LaneCoefs<K * K, acc_t> coefs;
    tiled::load_lane_coefs(a.table, a.geo.C, unit.c, coefs);
    tiled::LaneAcc<P, K * K, acc_t> acc;
    __syncwarp();
    tiled::nchw_lane_work<P, K, S>(a, p, unit, channels, coefs, tile, w.lane, kLanes, acc);
    const auto total = warp_reduce(acc.partial());
    if (w.lane == 0) tiled::write_partial<P, K * K>(a, p.slots, unit.slot, unit.c, total);
    __syncwarp();  // the next unit's staging overwrites the tile
  }
}

// channels_last conv pass: a warp per (n, output tile, 32 channels), lane = channel.
template <TilePass P, int K, int S, typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kBlockThreads, 1)
    cl_tile_kernel(tiled::TileArgs<scalar_t, acc_t> a, tiled::TilePlan p) {
  const WarpUnits w = warp_units();
  const ChannelMap map = a.geo.channel_map();
  for (int64_t u = w.first; u < p.units; u += w.step) {
    const tiled::Unit unit = tiled::decode_cl_unit(u, p.tiles_h, p.tiles_w, p.channel_groups);
    const int64_t c = unit.c + w.lane;
    if (c >= a.geo.C) continue;  // no collectives below: idle lanes may leave
    const LaneChannels channels = map.lane_of_input(c);
    tiled::LaneCoefs<K * K, acc_t> coefs;
    tiled::load_lane_coefs(a.table, a.geo.C, c, coefs);
    tiled::LaneAcc<P, K * K, acc_t> acc;
    tiled::cl_lane_work<P, K, S>(a, p, unit, channels, coefs, acc);
    tiled::write_partial<P, K * K>(a, p.slots, unit.slot, c, acc.partial());
  }
}

// The eval output pass (tiled/walk_eval.h): a warp per unit (block of planes
// or channels, row chunk, strip) = grid (x and the warp, y, z), each
// dimension a grid-stride loop. Lanes are independent: no barrier. index_t:
// the offsets within an image (tiled::dispatch_walk picks it).
template <bool ChannelsLast, typename index_t, int K, int S, typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kBlockThreads, 1)
    walk_eval_kernel(tiled::TileArgs<scalar_t, acc_t> a, tiled::WalkPlan p) {
  const int lane = static_cast<int>(threadIdx.x % kLanes);
  const int64_t first = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kLanes;
  const int64_t step = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t strip = blockIdx.z; strip < p.strips; strip += gridDim.z) {
    for (int64_t row_chunk = blockIdx.y; row_chunk < p.row_chunks; row_chunk += gridDim.y) {
      for (int64_t b = first; b < p.blocks; b += step) {
        tiled::walk_lane<ChannelsLast, index_t, K, S>(a, p, b, row_chunk, strip, lane);
      }
    }
  }
}

// NCHW grad_input: a warp per (n, channel, input tile); the covering dz
// region is staged in shared memory.
template <int K, int S, typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kBlockThreads, 1)
    nchw_input_grad_kernel(tiled::InputGradArgs<scalar_t, acc_t> a, tiled::InputGradPlan p) {
  SF_DYNAMIC_SHARED(smem_raw);
  const WarpUnits w = warp_units();
  acc_t* tile = warp_smem<acc_t>(smem_raw, p.smem_elems);
  for (int64_t u = w.first; u < p.units; u += w.step) {
    const tiled::Unit unit = tiled::decode_nchw_unit(u, p.tiles_h, p.tiles_w, a.geo.C);
    tiled::nchw_stage_dz<K, S>(a, p, unit, tile, w.lane, kLanes);
    tiled::Taps<K * K, acc_t> taps;
    taps.load(a.table + unit.c, a.geo.C);
    __syncwarp();
    tiled::nchw_input_grad_lane<K, S>(a, p, unit, taps, tile, w.lane, kLanes);
    __syncwarp();
  }
}

// channels_last grad_input: a warp per (n, input tile, 32 channels).
template <int K, int S, typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kBlockThreads, 1)
    cl_input_grad_kernel(tiled::InputGradArgs<scalar_t, acc_t> a, tiled::InputGradPlan p) {
  const WarpUnits w = warp_units();
  for (int64_t u = w.first; u < p.units; u += w.step) {
    const tiled::Unit unit = tiled::decode_cl_unit(u, p.tiles_h, p.tiles_w, p.channel_groups);
    const int64_t c = unit.c + w.lane;
    if (c >= a.geo.C) continue;
    tiled::Taps<K * K, acc_t> taps;
    taps.load(a.table + c, a.geo.C);
    tiled::cl_input_grad_lane<K, S>(a, p, unit, c, taps);
  }
}

// Finalize: block = kFinalChannels channels (threadIdx.x) x kFinalStrands
// strands (threadIdx.y).
__device__ __forceinline__ int64_t finalize_channel() {
  return static_cast<int64_t>(blockIdx.x) * kFinalChannels + threadIdx.x;
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kFinalChannels* kFinalStrands)
    finalize_stats_kernel(tiled::FinalizeStatsArgs<scalar_t, acc_t> a) {
  __shared__ double red_n[kFinalStrands][kFinalChannels];
  __shared__ double red_s[kFinalStrands][kFinalChannels];
  const tiled::Partials<acc_t> in = a.in;
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t c = finalize_channel();
  const bool active = c < in.C;
  double n = 0.0, s = 0.0;
  if (active) tiled::strand_count_sum(in.part, in.slots, in.C, c, ty, &n, &s);
  red_n[ty][tx] = n;
  red_s[ty][tx] = s;
  strand_tree(red_n, tx, ty);
  strand_tree(red_s, tx, ty);
  const double count = red_n[0][tx];
  const double mean = count > 0.0 ? red_s[0][tx] / count : 0.0;
  const double m2 = active ? tiled::strand_m2(in.part, in.slots, in.C, c, ty, mean) : 0.0;
  __syncthreads();  // everyone has read red_s[0] before it is overwritten
  red_s[ty][tx] = m2;
  strand_tree(red_s, tx, ty);
  if (ty == 0 && active) tiled::finish_stats(a, c, count, mean, red_s[0][tx]);
}

template <typename acc_t>
__global__ void __launch_bounds__(kFinalChannels* kFinalStrands)
    finalize_grad_stats_kernel(tiled::FinalizeGradStatsArgs<acc_t> a) {
  __shared__ double red_g[kFinalStrands][kFinalChannels];
  __shared__ double red_gz[kFinalStrands][kFinalChannels];
  const tiled::Partials<acc_t> in = a.in;
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t c = finalize_channel();
  const bool active = c < in.C;
  red_g[ty][tx] = active ? tiled::strand_sum(in.value(0), in.slots, in.C, c, ty) : 0.0;
  red_gz[ty][tx] = active ? tiled::strand_sum(in.value(1), in.slots, in.C, c, ty) : 0.0;
  strand_tree(red_g, tx, ty);
  strand_tree(red_gz, tx, ty);
  if (ty == 0 && active) tiled::finish_grad_stats(a, c, red_g[0][tx], red_gz[0][tx]);
}

// grid.y = weight tap.
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kFinalChannels* kFinalStrands)
    finalize_weight_grad_kernel(tiled::FinalizeWeightGradArgs<scalar_t, acc_t> a) {
  __shared__ double red[kFinalStrands][kFinalChannels];
  const tiled::Partials<acc_t> in = a.in;
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int t = blockIdx.y;
  const int64_t c = finalize_channel();
  const bool active = c < in.C;
  red[ty][tx] = active ? tiled::strand_sum(in.value(t), in.slots, in.C, c, ty) : 0.0;
  strand_tree(red, tx, ty);
  if (ty == 0 && active) tiled::finish_weight_grad(a, c, t, red[0][tx]);
}

}  // namespace cuda
}  // namespace shufflenet_fused
