// Grid, block and dynamic shared memory of every kernel launch, as plain host
// values: the CUDA executor (launcher.cuh) and the host runner
// (host/host_runner_test_ops.cpp) launch the kernels of kernels.cuh with the
// same shapes.
#pragma once

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>

#include "tiled/finalize.h"
#include "tiled/tile_plan.h"
#include "tiled/walk_eval.h"

namespace shufflenet_fused {
namespace cuda {

// Threads of a conv or grad_input block: kWarpsPerBlock warps, each working
// on its own units.
constexpr int kBlockThreads = tiled::kLanes * tiled::kWarpsPerBlock;
// Threads of a prep block: one per lane channel.
constexpr int kPrepThreads = 256;

struct LaunchShape {
  unsigned int grid_x, grid_y;
  unsigned int block_x, block_y;
  size_t dynamic_smem_bytes;
  unsigned int grid_z = 1;
};

inline unsigned int grid_for(int64_t units, int64_t per_block) {
  return static_cast<unsigned int>(std::min<int64_t>(tiled::div_up(units, per_block), INT_MAX));
}

inline LaunchShape prep_launch(int64_t C) { return {grid_for(C, kPrepThreads), 1, kPrepThreads, 1, 0}; }

// A warp per unit; grid-stride over units past INT_MAX blocks. The NCHW
// kernels stage their tile in smem_elems acc_t of dynamic shared memory per
// warp; the channels_last kernels use none.
template <typename acc_t>
LaunchShape warp_units_launch(int64_t units, int smem_elems, bool channels_last) {
  const size_t smem = channels_last ? 0 : static_cast<size_t>(tiled::kWarpsPerBlock) * smem_elems * sizeof(acc_t);
  return {grid_for(units, tiled::kWarpsPerBlock), 1, kBlockThreads, 1, smem};
}

// The eval output pass: grid x covers the plan's blocks (a warp each), y its
// row chunks, z its strips; each is a grid-stride loop in the kernel, so the
// limits of y and z (65535) only cap the grid.
inline LaunchShape walk_launch(const tiled::WalkPlan& p) {
  const auto capped = [](int64_t n) { return static_cast<unsigned int>(std::min<int64_t>(n, 65535)); };
  return {grid_for(p.blocks, tiled::kWarpsPerBlock), capped(p.row_chunks), kBlockThreads, 1, 0, capped(p.strips)};
}

// Finalize blocks: kFinalChannels channels x kFinalStrands strands; grid.y
// counts the values reduced separately (weight taps).
inline LaunchShape finalize_launch(int64_t C, int values = 1) {
  return {grid_for(C, tiled::kFinalChannels), static_cast<unsigned int>(values), tiled::kFinalChannels,
          tiled::kFinalStrands, 0};
}

}  // namespace cuda
}  // namespace shufflenet_fused
